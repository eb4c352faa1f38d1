"""Atomic file writes, shared by every layer: a reader (or a crash) sees the old file or the new one, never half
of one. The temporary file lives in the target's folder so the final rename never crosses filesystems."""

from __future__ import annotations

import os
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import BinaryIO

TEMP_SUFFIX = ".tmp"  # atomic_write's temporary files: ".<target name>.<random>.tmp" beside the target


def fsync_dir(directory: str | os.PathLike[str]) -> None:
    """Make a rename in `directory` durable."""
    fd = os.open(directory, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def atomic_write(path: str | os.PathLike[str], write: Callable[[BinaryIO], object], durable: bool = True) -> None:
    """Call `write(fh)` on a temporary file, then rename it over `path`. With `durable`, the data and the rename
    are fsynced (for files a crash must not lose, such as checkpoints and commit markers)."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=TEMP_SUFFIX)
    try:
        with os.fdopen(fd, "wb") as fh:
            write(fh)
            if durable:
                fh.flush()
                os.fsync(fh.fileno())
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    if durable:
        fsync_dir(path.parent)


def atomic_write_bytes(path: str | os.PathLike[str], data: bytes, durable: bool = True) -> None:
    atomic_write(path, lambda fh: fh.write(data), durable)


def remove_interrupted_writes(folder: str | os.PathLike[str], unchanged_for_s: float = 0.0) -> int:
    """Delete the temporary files that atomic writes under `folder` left behind when their process was killed
    before the rename; returns how many. With `unchanged_for_s` 0, only for a folder whose one writer is not
    writing at the time (its start): a temporary file may be one being filled. Otherwise only files not written to
    for that long go, which a live write (it keeps writing until its rename) never is."""
    removed = 0
    cutoff = time.time() - unchanged_for_s
    for root, _, names in os.walk(folder):
        for name in names:
            if not (name.startswith(".") and name.endswith(TEMP_SUFFIX)):
                continue
            path = Path(root, name)
            try:
                if unchanged_for_s and path.stat().st_mtime > cutoff:
                    continue
                path.unlink()
            except FileNotFoundError:  # renamed or deleted meanwhile
                continue
            removed += 1
    return removed
