"""Where the daemon keeps its private runtime files (ipc sockets, multiprocess metrics) and its data files."""

from __future__ import annotations

import hashlib
import os
import shutil
from pathlib import Path

from humanstyle.daemon.config import Settings


def runtime_dir(settings: Settings) -> Path:
    if settings.paths.runtime_dir:
        return Path(settings.paths.runtime_dir)
    # ipc:// paths are limited to ~107 bytes, so the folder lives in /tmp rather than under data_dir;
    # the tag keeps two daemons with different data folders apart.
    tag = hashlib.sha256(str(settings.paths.data_dir.resolve()).encode()).hexdigest()[:10]
    return Path("/tmp") / f"humanstyle-{os.getuid()}-{tag}"


def prepare_runtime_dir(settings: Settings) -> Path:
    path = runtime_dir(settings)
    path.mkdir(mode=0o700, parents=True, exist_ok=True)
    if path.stat().st_uid != os.getuid():
        raise PermissionError(f"runtime folder {path} belongs to another user")
    os.chmod(path, 0o700)
    return path


def prepare_metrics_dir(runtime: Path) -> Path:
    """A fresh multiprocess folder: values of a previous run must not leak into this one."""
    path = runtime / "metrics"
    shutil.rmtree(path, ignore_errors=True)
    path.mkdir(mode=0o700)
    return path
