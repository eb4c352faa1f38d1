"""The pipeline's shape, declared once: its queues and its stages.

Everything that depends on the shape derives from the two tables below: the sockets each stage process opens and
their endpoints (daemon.runtime.stage_loop, daemon.runtime.fabric), the processes the supervisor starts on a machine
of each role and the order it stops them in (daemon.runtime.supervisor), and the diagram in the README
(`python -m humanstyle.daemon.pipeline` prints it; a test compares the two).

A new stage is its logic under stages/ (a `Handler`), one `Stage` here, and a `Queue` for each new kind of message.
"""

from __future__ import annotations

import os
from collections.abc import Callable
from dataclasses import dataclass

from humanstyle.daemon.config import Settings
from humanstyle.stages.records import (
    Classified,
    Discovered,
    Job,
    PairsAppended,
    PairVerdict,
    Patch,
    Record,
    StageRestarted,
    VideoEnd,
    Window,
    WindowDone,
)

ROLES = ("all", "coordinator", "ingest")  # ingest.role: one machine, the machine that registers, the ingest machines
MAX_REPLICAS = 64  # per-replica queues take consecutive ports: windows.0-63 at +10, patches.0-63 at +80


@dataclass(frozen=True)
class Queue:
    """A ZeroMQ queue between stages: PUSH/PULL with back-pressure, or PUB/SUB (`publish`) for notices that a
    subscriber that is away may miss. The side that exists once binds; the others connect."""

    name: str
    records: tuple[type[Record], ...]  # what it carries; its readers refuse anything else (unexpected_type)
    binder: str  # the stage that binds it
    port: int  # offset from queues.tcp_base_port with queues.transport = "tcp" (ipc: a socket file named `name`)
    per_replica: bool = False  # one socket per process of the binder (`windows.0`, `windows.1`...), each read by all
    publish: bool = False
    high_water_mark: str = "high_water_mark"  # the [queues] key that bounds it
    outside_writers: tuple[str, ...] = ()  # senders that are not stages (for the diagram)


@dataclass(frozen=True)
class Stage:
    """One kind of stage process: the stage logic it runs, how many, where, and how it stops and restarts."""

    name: str
    handler: Callable[[Settings, int], object]  # (settings, replica) -> the stage's Handler (stages.handler)
    reads: tuple[str, ...] = ()
    writes: tuple[str, ...] = ()
    processes: str = ""  # the settings key ("decode.workers") that says how many run; empty = one
    roles: tuple[str, ...] = ROLES  # the ingest.role values of the machines it runs on
    enabled: str = ""  # a settings key that must be true for it to run ("train.enabled"); empty = always
    # After a stop request keep taking input until it has been quiet this long: the writer stage drains what the
    # others finish, so it stops after them.
    drain_s: float = 0.0
    # True: the units it holds die with it (a window in a detector), so when it restarts the supervisor tells the
    # index, which redoes the videos in flight. The index redoes its own on start; the others need no notice.
    restart_redoes_videos: bool = False
    on_restart: str = ""  # what a restart of it means, in words (the diagram)
    setup: Callable[[Settings, int], None] | None = None  # process-wide settings (threads) before the handler

    @property
    def stops_last(self) -> bool:
        return self.drain_s > 0

    def count(self, settings: Settings) -> int:
        return _setting(settings, self.processes) if self.processes else 1

    def runs_on(self, settings: Settings) -> bool:
        return settings.ingest.role in self.roles and (not self.enabled or bool(_setting(settings, self.enabled)))


def _setting(settings: Settings, key: str):
    section, _, name = key.partition(".")
    return getattr(getattr(settings, section), name)


# --- the stages' logic, built in the stage's own process (imports that load torch stay there) ------------------
def _watch(settings: Settings, replica: int):
    from humanstyle.stages.watch import WatchHandler

    return WatchHandler(settings)


def _index(settings: Settings, replica: int):
    from humanstyle.stages.index.stage import IndexHandler

    return IndexHandler(settings)


def _decode(settings: Settings, replica: int):
    from humanstyle.stages.decode import DecodeHandler
    from humanstyle.stages.store.storage import open_storage

    return DecodeHandler(settings.decode, open_storage(settings))


def _detect(settings: Settings, replica: int):
    from humanstyle.stages.detect import DetectHandler, build_detector

    return DetectHandler(build_detector(settings.detect), settings.detect)


def _classify(settings: Settings, replica: int):
    from humanstyle.stages.classify import ClassifyHandler, build_estimator

    return ClassifyHandler(build_estimator(settings), settings.classify)


def _pairing(settings: Settings, replica: int):
    from humanstyle.stages.pairing.stage import PairingHandler

    return PairingHandler(settings)


def _train(settings: Settings, replica: int):
    from humanstyle.stages.train.stage import TrainHandler

    return TrainHandler(settings)


def _one_opencv_thread(settings: Settings, replica: int) -> None:
    import cv2

    cv2.setNumThreads(1)  # the decoders share the machine with the models


def model_threads(settings: Settings, configured: int) -> int:
    """Torch threads for a model process: the configured number, or all the cores shared by the processes of one
    stage. Detect and classify wait on each other much of the time (a window's patches reach classify only once
    detect is done with it), so splitting the cores between the two stages leaves one core idle whenever one stage
    waits. The CLI sets OMP_WAIT_POLICY=PASSIVE for the stage processes, so threads of a waiting stage sleep instead
    of spinning and both stages can use every core (measured in bench/README.md, "What made it fast")."""
    if configured:
        return configured
    return max(1, (os.cpu_count() or 1) // max(settings.detect.workers, settings.classify.workers))


def _torch_threads_for(section: str) -> Callable[[Settings, int], None]:
    def setup(settings: Settings, replica: int) -> None:
        from humanstyle.models.detection import set_torch_threads

        set_torch_threads(model_threads(settings, getattr(settings, section).threads))

    return setup


QUEUES = {q.name: q for q in (
    Queue("discovered", (Discovered,), binder="index", port=0),
    Queue("jobs", (Job,), binder="index", port=1),
    Queue("windows", (Window, VideoEnd), binder="decode", port=10, per_replica=True,
          # A window carries several full frames (~14 MB at 720p): with the general mark a fast decoder parked a
          # whole video's windows in the detector's memory; a couple queued keep the detector busy just as well.
          high_water_mark="window_high_water_mark"),
    Queue("patches", (Patch, WindowDone, VideoEnd), binder="detect", port=80, per_replica=True),
    Queue("classified", (Classified, WindowDone, VideoEnd), binder="index", port=2),
    Queue("events", (PairsAppended,), binder="pairing", port=3, publish=True),
    Queue("control", (StageRestarted, PairVerdict), binder="index", port=4,
          outside_writers=("supervisor", "web page")),
)}

STAGES = {s.name: s for s in (
    Stage("watch", _watch, writes=("discovered",), roles=("all", "coordinator"), on_restart="rescans the folder"),
    Stage("index", _index, reads=("discovered", "classified", "control"), writes=("jobs",), drain_s=1.0,
          on_restart="redoes the videos in flight"),
    Stage("decode", _decode, reads=("jobs",), writes=("windows",), processes="decode.workers",
          roles=("all", "ingest"), restart_redoes_videos=True,
          on_restart="the index redoes the videos in flight", setup=_one_opencv_thread),
    Stage("detect", _detect, reads=("windows",), writes=("patches",), processes="detect.workers",
          roles=("all", "ingest"), restart_redoes_videos=True,
          on_restart="the index redoes the videos in flight", setup=_torch_threads_for("detect")),
    Stage("classify", _classify, reads=("patches",), writes=("classified",), processes="classify.workers",
          roles=("all", "ingest"), restart_redoes_videos=True,
          on_restart="the index redoes the videos in flight", setup=_torch_threads_for("classify")),
    # No input queue: it follows the catalog's unpaired patches (stages/pairing/stage.py).
    Stage("pairing", _pairing, writes=("events",), roles=("all", "coordinator"),
          on_restart="goes on from the catalog"),
    Stage("train", _train, reads=("events",), roles=("all", "coordinator"), enabled="train.enabled",
          on_restart="resumes from its last checkpoint"),
)}


def plan(settings: Settings) -> list[tuple[str, int]]:
    """The stage processes of this machine, (stage, replica), those that stop last first: they bind the queues
    the others connect to."""
    stages = sorted(STAGES.values(), key=lambda s: not s.stops_last)
    return [(s.name, r) for s in stages if s.runs_on(settings) for r in range(s.count(settings))]


def socket_names(settings: Settings, stage: str, queue: str, replica: int) -> list[str]:
    """The sockets of `queue` that a process of `stage` binds (its own) or connects to (all of the binder's)."""
    q = QUEUES[queue]
    if not q.per_replica:
        return [q.name]
    if q.binder == stage:
        return [f"{q.name}.{replica}"]
    return [f"{q.name}.{k}" for k in range(STAGES[q.binder].count(settings))]


def port_offset(name: str) -> int:
    """A socket's port above queues.tcp_base_port: `jobs`, or `windows.3` (the queue's port + the replica)."""
    queue, _, replica = name.partition(".")
    return QUEUES[queue].port + (int(replica) if replica else 0)


def readers(queue: str) -> list[Stage]:
    return [s for s in STAGES.values() if queue in s.reads]


def writers(queue: str) -> list[str]:
    return [s.name for s in STAGES.values() if queue in s.writes] + list(QUEUES[queue].outside_writers)


def receiver_drains(queue: str) -> bool:
    """Whether what reads `queue` keeps reading after a stop request (so a sender may wait for it)."""
    return any(s.stops_last for s in readers(queue))


def diagram() -> str:
    """The queues and stages as the README shows them."""
    lines = ["queue          from                    to               carries"]
    for q in QUEUES.values():
        name = f"{q.name}.<i>" if q.per_replica else q.name
        sources = [f"{w} (binds)" if w == q.binder else w for w in writers(q.name)]
        targets = [f"{s.name} (binds)" if s.name == q.binder else s.name for s in readers(q.name)]
        arrow = "PUB->SUB" if q.publish else "PUSH->PULL"
        lines.append(f"{name:<14} {', '.join(sources):<23} {', '.join(targets):<16} "
                     f"{', '.join(r.TYPE for r in q.records)}  ({arrow})")
    lines += ["", "stage      processes          on machines             stops   a restart"]
    for s in STAGES.values():
        count = s.processes or "1"
        if s.enabled:
            count += f" if {s.enabled}"
        roles = "every role" if s.roles == ROLES else " and ".join(s.roles)
        lines.append(f"{s.name:<10} {count:<18} {roles:<23} {'last' if s.stops_last else 'first':<7} {s.on_restart}")
    return "\n".join(lines)


if __name__ == "__main__":
    print(diagram())
