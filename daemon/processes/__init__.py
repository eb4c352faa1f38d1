"""One module per stage process: which sockets it reads and writes, and how its handler is built from the settings.

The loop around the handler is daemon.worker's, the same for every stage; `SPEC` in each module is all that
differs. A new stage adds its logic under stages/ (a handler, see stages/handler.py), a module here, and its name
in daemon.supervisor's plan.
"""

from __future__ import annotations

import os

from humanstyle.daemon.config import Settings


def model_threads(settings: Settings, configured: int) -> int:
    """Torch threads for a model process: the configured number, or all the cores shared by the workers of one stage.

    Detect and classify wait on each other much of the time (a window's patches reach classify only once detect is
    done with it), so splitting the cores between the two stages leaves one core idle whenever one stage waits. The
    CLI sets OMP_WAIT_POLICY=PASSIVE for the stage processes, so threads of a waiting stage sleep instead of spinning
    and both stages can use every core (measured in bench/README.md, "What made it fast")."""
    if configured:
        return configured
    return max(1, (os.cpu_count() or 1) // max(settings.detect.workers, settings.classify.workers))


def torch_threads_for(section: str):
    """A ProcessSpec setup that pins torch's threads for a model stage before its model is built."""

    def setup(settings: Settings, index: int) -> None:
        from humanstyle.models.detection import set_torch_threads

        set_torch_threads(model_threads(settings, getattr(settings, section).threads))

    return setup
