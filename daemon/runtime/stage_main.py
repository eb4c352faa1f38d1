"""Entry point of every stage process (spawned by the supervisor)."""

from __future__ import annotations

import faulthandler
import logging
import os
import signal
import sys
import threading
import time

from humanstyle.daemon.config import Settings
from humanstyle.daemon.runtime.logs import setup_logging
from humanstyle.stages.process.parent import die_with_parent
from humanstyle.stages.settings import StageFatal

log = logging.getLogger("humanstyle.stage")
ORPHAN_MARGIN_S = 5.0  # a full queue gives up shutdown_timeout_s after a stop request: let such a drain end itself


def watch_parent(parent_pid: int, stop, grace_s: float, name: str, poll_s: float = 1.0) -> threading.Thread:
    """The backstop to die_with_parent (which does nothing off Linux/glibc): once this process is orphaned it stops
    as on SIGTERM, and if it is still running `grace_s` later it prints its stacks and exits hard. A stage left behind
    would hold the data folder's locks and sockets against the next daemon; exiting mid-unit loses nothing, as a
    kill -9 of any stage does not."""
    def run() -> None:
        while os.getppid() == parent_pid:
            time.sleep(poll_s)
        stop.event.set()
        time.sleep(grace_s)
        log.error("%s: still running %.0f s after its supervisor died; exiting (its stacks follow)", name, grace_s)
        faulthandler.dump_traceback(all_threads=True)
        os._exit(1)

    thread = threading.Thread(target=run, name="parent-watch", daemon=True)
    thread.start()
    return thread


def stage_main(stage: str, replica: int, settings: Settings, parent_pid: int | None = None) -> None:
    from humanstyle.daemon.runtime.fabric import StopFlag

    setup_logging(settings.log.level, f"{stage}-{replica}")
    # `kill -USR1 <pid>` prints every thread's stack to the log: how to see where a stuck stage waits.
    faulthandler.register(signal.SIGUSR1, all_threads=True)
    stop = StopFlag().install()
    if parent_pid is not None:
        die_with_parent(parent_pid)
        # The drain time the supervisor would have given it, and a margin for a drain that ends on its own then.
        watch_parent(parent_pid, stop, settings.supervisor.shutdown_timeout_s + ORPHAN_MARGIN_S, f"{stage}-{replica}")
    from humanstyle.daemon.runtime.stage_loop import run_stage

    try:
        run_stage(stage, settings, replica, stop)
    except StageFatal as exc:
        log.error("%s-%d cannot start: %s", stage, replica, exc)
        sys.exit(78)
    except Exception:
        log.exception("%s-%d crashed", stage, replica)
        sys.exit(1)
