"""One trainer per data folder: `humanstyle train` beside a daemon that trains (or two daemons on one folder) would
each resume from latest.pt and overwrite the other's checkpoints, silently throwing steps away.

The trainer that holds `train/trainer.lock` (flock, released by the kernel when its process dies, so a killed
trainer never leaves a stale lock) is the one that trains; the file says who holds it, for the other's message.
The lock is local: trainers on different machines sharing a `storage.url` are not seen (one trainer per deployment
is the operator's choice there; the Kubernetes head runs none, and its config says to run one elsewhere).
"""

from __future__ import annotations

from pathlib import Path

from humanstyle.stages.store.folder_lock import FolderLock

LOCK_FILE = "trainer.lock"


class TrainerLock(FolderLock):
    def __init__(self, train_dir: Path, who: str) -> None:
        super().__init__(Path(train_dir) / LOCK_FILE, who)
