"""A lock on a folder that says who holds it: an flock'd file, released by the kernel when its process dies (so a
killed holder never leaves a stale lock), holding a line about its holder for the message of whoever is refused.

Used for one daemon per data folder (`daemon.lock`: a second daemon would overwrite the first's sockets and metric
files) and one trainer per data folder (stages/train/lock.py). Locks are local: machines sharing a catalog and
storage are not seen.
"""

from __future__ import annotations

import fcntl
import os
import socket
import time
from pathlib import Path


class FolderLock:
    def __init__(self, path: Path, who: str) -> None:
        self.path = Path(path)
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
        f = open(self.path, "a+")  # noqa: SIM115 - held until release(); not inherited by child processes
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
