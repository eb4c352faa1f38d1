"""The one loop every stage process runs: receive records, hand them to the stage's logic, send what it produces.

A stage is declared in daemon/pipeline.py (the queues it reads and writes, how its handler is built from the
settings); the handler is plain stage logic (the contract is in stages/handler.py). Everything else is
written once here: polling the inputs, batching, forwarding pass-through records, counting records of a type the
stage does not take (`unexpected_type`) and units that fail, the latency histogram and "last work" gauge of
/healthz, and draining on stop.
"""

from __future__ import annotations

import logging
import time
from dataclasses import dataclass, field

import zmq

from humanstyle.daemon import pipeline
from humanstyle.daemon.config import Settings
from humanstyle.daemon.pipeline import Stage
from humanstyle.daemon.runtime import metrics
from humanstyle.daemon.runtime.fabric import Fabric, Receiver, Sender, StopFlag
from humanstyle.stages import counters
from humanstyle.stages.handler import Route, Stopping
from humanstyle.stages.records import Record

log = logging.getLogger("humanstyle.stage_loop")
MAX_PER_SOCKET = 64  # records taken from one socket before the others (and the tick) get a turn
STOPPED_RECEIVER_GRACE_S = 1.0


class SocketOutbox:
    """The daemon's Outbox: each record goes to the socket that carries its type."""

    def __init__(self, stage: str, senders: dict[type[Record], Sender], stop: StopFlag) -> None:
        self._stage, self._senders, self._stop = stage, senders, stop

    @property
    def stopping(self) -> bool:
        return self._stop.set

    def _sender(self, record: Record) -> Sender:
        try:
            return self._senders[type(record)]
        except KeyError:
            raise TypeError(f"this process has no output for {record.TYPE} records") from None

    def send(self, record: Record) -> None:
        self._sender(record).send(record)

    def try_send(self, record: Record) -> bool:
        return self._sender(record).try_send(record)

    def unit_done(self, started: float) -> None:
        metrics.mark_work_done(self._stage, started)

    def pause(self, seconds: float) -> bool:
        return self._stop.event.wait(seconds)


@dataclass
class _Pending:
    route: Route | None = None
    records: list[Record] = field(default_factory=list)
    passing: list[Record] = field(default_factory=list)


class StageLoop:
    """The loop of one stage process: the sockets its `Stage` declares (daemon.pipeline) around its handler."""

    def __init__(self, stage: Stage, settings: Settings, replica: int, stop: StopFlag) -> None:
        self.stage, self.settings, self.replica, self.stop = stage, settings, replica, stop
        if stage.setup is not None:
            stage.setup(settings, replica)
        self.handler = stage.handler(settings, replica)
        self.fab = Fabric(settings, stage.name, stop)
        self.inputs: list[Receiver] = []
        accepts: list[tuple[type[Record], ...]] = []
        for name in stage.reads:
            queue, sockets = pipeline.QUEUES[name], pipeline.socket_names(settings, stage.name, name, replica)
            self.inputs.append(self.fab.subscriber(sockets[0]) if queue.publish
                               else self.fab.receiver(name, sockets, bind=queue.binder == stage.name))
            accepts.append(queue.records)
        senders: dict[type[Record], Sender] = {}
        for name in stage.writes:
            queue, sockets = pipeline.QUEUES[name], pipeline.socket_names(settings, stage.name, name, replica)
            grace = None if pipeline.receiver_drains(name) else STOPPED_RECEIVER_GRACE_S
            sender = (self.fab.publisher(sockets[0]) if queue.publish
                      else self.fab.sender(name, sockets, bind=queue.binder == stage.name, stop_grace_s=grace))
            senders.update(dict.fromkeys(queue.records, sender))
        self.outbox = SocketOutbox(stage.name, senders, stop)
        self.poller = zmq.Poller()
        for receiver in self.inputs:
            self.poller.register(receiver.sock, zmq.POLLIN)
        self._by_socket = {r.sock: (r, a) for r, a in zip(self.inputs, accepts, strict=True)}

    # --- the loop ----------------------------------------------------------------------------------------------
    def run(self) -> None:
        handler = self.handler
        try:
            handler.start(self.outbox)
            self.fab.mark_ready()
            quiet_since: float | None = None
            while True:
                if self.stop.set and not self.stage.drain_s:
                    break
                wait = handler.wait_ms()
                handled = self.receive(wait)
                if self.stop.set:
                    # Drain: keep taking results while upstream stages finish their last units, then leave.
                    now = time.monotonic()
                    quiet_since = quiet_since if handled == 0 and quiet_since else now
                    if handled == 0 and now - quiet_since > self.stage.drain_s:
                        break
                    continue
                started = time.monotonic()
                if handler.tick(self.outbox):
                    metrics.mark_work_done(self.stage.name, started)
        except Stopping as exc:
            log.warning("%s-%d: %s", self.stage.name, self.replica, exc)
        finally:
            try:
                handler.close()
            finally:
                self.fab.close()

    def receive(self, wait_ms: int) -> int:
        """Take what the inputs hold (waiting up to wait_ms for the first record); returns how many were taken."""
        if not self.inputs:
            return 0
        handled = 0
        for sock, _ in self.poller.poll(wait_ms):
            receiver, accepts = self._by_socket[sock]
            pending = _Pending()
            for _ in range(MAX_PER_SOCKET):
                if self.stop.set and not self.stage.drain_s:
                    # Stopping: take no more work (each record may be a model call of seconds); what is left in
                    # the queue is redone at the next start, as after a kill, and the process leaves in time.
                    break
                record = receiver.recv(timeout_ms=0)
                if record is None:
                    break
                handled += 1
                if not isinstance(record, accepts):
                    self.refuse(record)
                    continue
                self.take(record, pending)
            self.flush(pending)
        return handled

    def take(self, record: Record, pending: _Pending) -> None:
        handler = self.handler
        if type(record) in handler.passes:
            if pending.records:
                pending.passing.append(record)  # after the batch it arrived behind
            else:
                self.outbox.send(record)
            return
        route = handler.routes.get(type(record))
        if route is None:
            self.refuse(record)
            return
        if pending.route is not None and pending.route is not route:
            self.flush(pending)
        pending.route = route
        pending.records.append(record)
        if len(pending.records) >= route.batch:
            self.flush(pending)

    def refuse(self, record: Record) -> None:
        counters.MESSAGES_REJECTED.labels(self.stage.name, "unexpected_type").inc()
        log.warning("%s: a %s record is not for this stage", self.stage.name, record.TYPE)

    def flush(self, pending: _Pending) -> None:
        if pending.route is not None and pending.records:
            self.handle(pending.route, pending.records)
        for record in pending.passing:
            self.outbox.send(record)
        pending.route, pending.records, pending.passing = None, [], []

    def handle(self, route: Route, records: list[Record]) -> None:
        started = time.monotonic()
        try:
            route.handle(records, self.outbox)
        except Stopping:
            raise
        except Exception as exc:  # one bad unit must not take the stage (and its queue) down
            log.exception("%s: %d %s record(s) failed", self.stage.name, len(records), records[0].TYPE)
            counters.ERRORS.labels(self.stage.name, type(exc).__name__).inc()
            if route.on_error is not None:
                route.on_error(records, self.outbox)
        if not route.units_done_by_handler:
            metrics.mark_work_done(self.stage.name, started)


def run_stage(stage: str, settings: Settings, replica: int, stop: StopFlag) -> None:
    StageLoop(pipeline.STAGES[stage], settings, replica, stop).run()
