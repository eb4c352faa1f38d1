"""A child process's tie to the process that started it (a stage to its supervisor, a training follower to its
trainer stage): it must not outlive it."""

from __future__ import annotations

import os
import signal


def die_with_parent(parent_pid: int) -> None:
    """Ask Linux to send SIGTERM when the parent dies, even by SIGKILL, so this process does not outlive it."""
    import ctypes

    try:
        libc = ctypes.CDLL("libc.so.6", use_errno=True)
        libc.prctl(1, int(signal.SIGTERM))  # PR_SET_PDEATHSIG
    except (OSError, AttributeError):  # not Linux/glibc
        pass
    if os.getppid() != parent_pid:  # the parent died before prctl took effect
        os.kill(os.getpid(), signal.SIGTERM)
