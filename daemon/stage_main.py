"""Entry point of every stage process (spawned by the supervisor)."""

from __future__ import annotations

import faulthandler
import importlib
import logging
import os
import signal
import sys

from humanstyle.daemon.config import Settings
from humanstyle.daemon.logs import setup_logging
from humanstyle.stages.settings import StageFatal

log = logging.getLogger("humanstyle.stage")


def die_with_parent(parent_pid: int) -> None:
    """Ask Linux to send SIGTERM when the supervisor dies, even by SIGKILL, so no stage outlives it."""
    import ctypes

    try:
        libc = ctypes.CDLL("libc.so.6", use_errno=True)
        libc.prctl(1, int(signal.SIGTERM))  # PR_SET_PDEATHSIG
    except (OSError, AttributeError):  # not Linux/glibc: the loops' parent check below still applies
        pass
    if os.getppid() != parent_pid:  # the parent died before prctl took effect
        os.kill(os.getpid(), signal.SIGTERM)


def stage_main(stage: str, index: int, settings: Settings, parent_pid: int | None = None) -> None:
    from humanstyle.daemon.fabric import StopFlag

    setup_logging(settings.log.level, f"{stage}-{index}")
    # `kill -USR1 <pid>` prints every thread's stack to the log: how to see where a stuck stage waits.
    faulthandler.register(signal.SIGUSR1, all_threads=True)
    stop = StopFlag().install()
    if parent_pid is not None:
        die_with_parent(parent_pid)
    from humanstyle.daemon.worker import run_process

    spec = importlib.import_module(f"humanstyle.daemon.processes.{stage}").SPEC
    try:
        run_process(spec, settings, index, stop)
    except StageFatal as exc:
        log.error("%s-%d cannot start: %s", stage, index, exc)
        sys.exit(78)
    except Exception:
        log.exception("%s-%d crashed", stage, index)
        sys.exit(1)
