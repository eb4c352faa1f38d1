"""Entry point of every stage process (spawned by the supervisor)."""

from __future__ import annotations

import importlib
import logging
import os
import sys

from daemon.config import Settings
from daemon.logs import setup_logging

log = logging.getLogger("humanstyle.stage")


class StageFatal(Exception):
    """The stage cannot work with this configuration (missing weights, bad folder): do not restart it."""


def model_threads(settings: Settings, configured: int) -> int:
    """Torch threads for a model process: the configured number, or the cores shared by all model processes."""
    if configured:
        return configured
    model_procs = settings.detect.workers + settings.classify.workers
    return max(1, (os.cpu_count() or 1) // model_procs)


def stage_main(stage: str, index: int, settings: Settings) -> None:
    from daemon.fabric import StopFlag

    setup_logging(settings.log.level, f"{stage}-{index}")
    stop = StopFlag().install()
    module = importlib.import_module(f"stages.{stage}")
    try:
        module.run(settings, index, stop)
    except StageFatal as exc:
        log.error("%s-%d cannot start: %s", stage, index, exc)
        sys.exit(78)
    except Exception:
        log.exception("%s-%d crashed", stage, index)
        sys.exit(1)
