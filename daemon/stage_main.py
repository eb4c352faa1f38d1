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
    """Torch threads for a model process: the configured number, or the cores shared by the workers of one stage.

    Detect and classify wait on each other much of the time (a window's patches reach classify only once detect is
    done with it), so splitting the cores between the two stages left one core idle whenever one stage waited. The
    CLI sets OMP_WAIT_POLICY=PASSIVE for the stage processes, so threads of a waiting stage sleep instead of spinning
    and both stages can use every core: on 2 cores, 2 threads each ran the ingest benchmark's default case in 29 s
    instead of 39 s at the same CPU time (without passive waiting, 2 threads each doubled the CPU time)."""
    if configured:
        return configured
    return max(1, (os.cpu_count() or 1) // max(settings.detect.workers, settings.classify.workers))


RANDOM_INIT_SEED = 0


def seed_random_init(weights: str) -> None:
    """Seed torch before building a model with weights "none", so every process builds the SAME random model.

    torch seeds each process differently, so without this a restarted (or a second) detector or classifier is a
    different random network: the video redone after a crash gets other boxes, views and keypoints than the
    attempt it replaces, and "redone work equals undisturbed work" no longer holds for tests and benchmarks.
    Real weights are unaffected (nothing random is drawn for them)."""
    from models.weights import choice_kind

    if choice_kind(weights) == "none":
        import torch

        torch.manual_seed(RANDOM_INIT_SEED)


def die_with_parent(parent_pid: int) -> None:
    """Ask Linux to send SIGTERM when the supervisor dies, even by SIGKILL, so no stage outlives it."""
    import ctypes
    import signal

    try:
        libc = ctypes.CDLL("libc.so.6", use_errno=True)
        libc.prctl(1, int(signal.SIGTERM))  # PR_SET_PDEATHSIG
    except (OSError, AttributeError):  # not Linux/glibc: the loops' parent check below still applies
        pass
    if os.getppid() != parent_pid:  # the parent died before prctl took effect
        os.kill(os.getpid(), signal.SIGTERM)


def stage_main(stage: str, index: int, settings: Settings, parent_pid: int | None = None) -> None:
    from daemon.fabric import StopFlag

    setup_logging(settings.log.level, f"{stage}-{index}")
    stop = StopFlag().install()
    if parent_pid is not None:
        die_with_parent(parent_pid)
    module = importlib.import_module(f"stages.{stage}")
    try:
        module.run(settings, index, stop)
    except StageFatal as exc:
        log.error("%s-%d cannot start: %s", stage, index, exc)
        sys.exit(78)
    except Exception:
        log.exception("%s-%d crashed", stage, index)
        sys.exit(1)
