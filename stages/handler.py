"""What a stage's logic offers the process around it, and what it gets from it.

A stage handler is a `Handler` of `stages/` with:

- `routes`: record type -> `Route(handle, batch, on_error)`. `handle(records, outbox)` gets up to `batch` records
  of that type at once (the classifier batches patches for one model call). When it raises, the process counts
  and logs the error and calls `on_error(records, outbox)` to say what the unit becomes (a failed window, patches
  rejected as `classify_error`), so one poison input never takes the stage down.
- `passes`: record types forwarded unchanged (a `video_end` travels through the detector and the classifier to
  the index, in order with the results around it).
- hooks that do nothing unless a stage overrides them: `start(outbox)` (before the process reports ready),
  `tick(outbox) -> units of work done` (periodic work: the watcher's scan, the index's dispatch, the trainer's
  steps), `wait_ms()` (how long to wait for input before the next tick) and `close()`.

It sends what it produces through an `Outbox`: the daemon's sockets (humanstyle's stage loop), or a `ListOutbox`
in one-shot tools, benchmarks and tests, which call the same handlers without any socket.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass
from types import MappingProxyType
from typing import Any, Protocol

from humanstyle.stages.records import Record

DEFAULT_WAIT_MS = 200


class Stopping(Exception):
    """Raised by Outbox.send when the process is leaving and the receiver cannot take the record in time. Stage
    logic lets it pass: the unfinished work is redone on the next start."""


@dataclass(frozen=True)
class Route:
    handle: Callable[[list[Any], Any], None]
    batch: int = 1
    on_error: Callable[[list[Any], Any], None] | None = None
    # False: each call is one unit of work. True: the handler reports its units itself (Outbox.unit_done), as the
    # decoder does per window of a long video.
    units_done_by_handler: bool = False


class Outbox(Protocol):
    """Where stage logic puts the records it produces."""

    @property
    def stopping(self) -> bool:
        """True once the process was asked to stop: long work should end at its next unit."""

    def send(self, record: Record) -> None:
        """Deliver, waiting while the receiver is busy (back-pressure)."""

    def try_send(self, record: Record) -> bool:
        """Deliver only if the receiver can take it now."""

    def unit_done(self, started: float) -> None:
        """A unit of work that began at time.monotonic() `started` is finished (latency, /healthz)."""

    def pause(self, seconds: float) -> bool:
        """Wait up to `seconds` (a back-off); True when the process was asked to stop meanwhile."""


class Handler:
    """The base of every stage's logic (see the module docstring): no routes, nothing passed on, hooks that do
    nothing. The process around it (humanstyle's daemon/runtime/stage_loop.py) calls every hook, so a stage
    writes only what it does."""

    routes: MappingProxyType | dict = MappingProxyType({})
    passes: tuple[type[Record], ...] = ()

    def start(self, outbox: Outbox) -> None:
        """Before the process reports ready."""

    def tick(self, outbox: Outbox) -> int:
        """Periodic work between inputs; returns the units of work done (0: none)."""
        return 0

    def wait_ms(self) -> int:
        """How long to wait for input before the next tick."""
        return DEFAULT_WAIT_MS

    def close(self) -> None:
        """When the process leaves, whatever happened."""


class ListOutbox:
    """An Outbox that keeps what it is given."""

    def __init__(self) -> None:
        self.records: list[Record] = []
        self.stopping = False

    def send(self, record: Record) -> None:
        self.records.append(record)

    def try_send(self, record: Record) -> bool:
        self.records.append(record)
        return True

    def unit_done(self, started: float) -> None:
        pass

    def pause(self, seconds: float) -> bool:
        time.sleep(seconds)
        return self.stopping

    def take(self) -> list[Record]:
        out, self.records = self.records, []
        return out
