"""One trainer per data folder: `humanstyle train` beside a daemon that trains (or two daemons on one folder) would
each resume from latest.pt and overwrite the other's checkpoints, silently throwing steps away.

The trainer that holds `train/trainer.lock` (flock, released by the kernel when its process dies, so a killed
trainer never leaves a stale lock) is the one that trains; the file says who holds it, for the other's message.
The lock is local: trainers on different machines sharing a `storage.url` are not seen (one trainer per deployment
is the operator's choice there; the Kubernetes head runs none, and its config says to run one elsewhere).
"""

from __future__ import annotations

import fcntl
import os
import socket
import time
from pathlib import Path

LOCK_FILE = "trainer.lock"


class TrainerLock:
    def __init__(self, train_dir: Path, who: str) -> None:
        self.path = Path(train_dir) / LOCK_FILE
        self.who = who
        self._file = None

    @property
    def held(self) -> bool:
        return self._file is not None

    def acquire(self) -> bool:
        """Take the lock if nobody holds it; never waits. True when this process holds it (now or already)."""
        if self._file is not None:
            return True
        self.path.parent.mkdir(parents=True, exist_ok=True)
        f = open(self.path, "a+")  # noqa: SIM115 - held until release()
        try:
            fcntl.flock(f.fileno(), fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            f.close()
            return False
        f.truncate(0)
        f.write(f"{self.who}, pid {os.getpid()} on {socket.gethostname()}, since "
                f"{time.strftime('%Y-%m-%d %H:%M:%S')}\n")
        f.flush()
        self._file = f
        return True

    def holder(self) -> str:
        """Who holds the lock, as its holder wrote it ("" when unknown)."""
        try:
            return self.path.read_text().strip()
        except OSError:
            return ""

    def release(self) -> None:
        if self._file is not None:
            self._file.close()  # closing the descriptor releases the flock
            self._file = None
