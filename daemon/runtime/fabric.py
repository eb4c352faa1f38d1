"""ZeroMQ wiring shared by every stage: endpoints, sockets, validated send/receive, and the stop signal.

The queues, who binds them and what they carry are declared in daemon/pipeline.py.
Endpoints are ipc:// sockets in a private 0700 folder by default, tcp:// when `queues.transport = "tcp"`.
High-water marks make a slow consumer block its producer instead of growing memory; linger is 0 on close.
"""

from __future__ import annotations

import logging
import signal
import threading
import time
from collections.abc import Callable, Iterator
from typing import Any

import zmq

from humanstyle.daemon import pipeline
from humanstyle.daemon.config import Settings
from humanstyle.daemon.runtime import metrics, wire
from humanstyle.daemon.runtime.paths import runtime_dir
from humanstyle.stages import counters
from humanstyle.stages.handler import Stopping
from humanstyle.stages.records import Record

log = logging.getLogger(__name__)


def endpoint(settings: Settings, name: str) -> str:
    """Where socket `name` (a queue, or `windows.3`: one replica's socket of a per-replica queue) is."""
    if settings.queues.transport == "tcp":
        port = settings.queues.tcp_base_port + pipeline.port_offset(name)
        return f"tcp://{settings.queues.tcp_host}:{port}"
    return f"ipc://{runtime_dir(settings)}/{name}.sock"


class StopFlag:
    """Set by SIGTERM (the supervisor's request to drain and exit). Children ignore SIGINT: Ctrl-C reaches the
    whole process group, and the supervisor decides the order in which stages stop."""

    def __init__(self) -> None:
        self.event = threading.Event()

    def install(self, ignore_sigint: bool = True) -> StopFlag:
        signal.signal(signal.SIGTERM, lambda *_: self.event.set())
        if ignore_sigint:
            signal.signal(signal.SIGINT, signal.SIG_IGN)
        return self

    @property
    def set(self) -> bool:
        return self.event.is_set()


def queued_messages(sock: zmq.Socket, limit: int) -> Iterator[list[Any]]:
    """Up to `limit` multipart messages already waiting on `sock` (zmq.Frames, not copied); never blocks."""
    for _ in range(limit):
        try:
            yield sock.recv_multipart(zmq.NOBLOCK, copy=False)
        except zmq.Again:
            return


def take_turns(receivers: list[Receiver], has_room: Callable[[], bool]) -> Iterator[Record]:
    """Records waiting on `receivers`, one from each in turn, while `has_room()`; never blocks.

    Draining one receiver before the next would let a busy first one take all the room every time, and the others'
    senders (decoders) would wait as long as it has work.
    """
    live = list(receivers)
    while live:
        for receiver in list(live):
            if not has_room():
                return
            record = receiver.recv(timeout_ms=0)
            if record is None:  # empty, or an invalid message (counted): its turn ends until the next poll
                live.remove(receiver)
            else:
                yield record


class Fabric:
    """The sockets of one stage process."""

    def __init__(self, settings: Settings, stage: str, stop: StopFlag | None = None) -> None:
        self.settings = settings
        self.stage = stage
        self.stop = stop or StopFlag()
        self.ctx = zmq.Context()
        self.max_bytes = int(settings.queues.max_message_mb * 1024 * 1024)
        self._sockets: list[zmq.Socket] = []

    def _socket(self, kind: int, queue: str) -> zmq.Socket:
        sock = self.ctx.socket(kind)
        sock.setsockopt(zmq.LINGER, 0)
        hwm = getattr(self.settings.queues, pipeline.QUEUES[queue].high_water_mark)
        sock.setsockopt(zmq.SNDHWM, hwm)
        sock.setsockopt(zmq.RCVHWM, hwm)
        if kind in (zmq.PULL, zmq.SUB):
            # Far larger messages are dropped by ZeroMQ before they are allocated; moderately oversized ones
            # reach decode(), which counts and logs them.
            sock.setsockopt(zmq.MAXMSGSIZE, 2 * self.max_bytes)
        self._sockets.append(sock)
        return sock

    def _attach(self, sock: zmq.Socket, names: list[str], bind: bool) -> None:
        for name in names:
            ep = endpoint(self.settings, name)
            if bind:
                sock.bind(ep)
            else:
                sock.connect(ep)

    def sender(self, queue: str, names: list[str], bind: bool, stop_grace_s: float | None = None) -> Sender:
        sock = self._socket(zmq.PUSH, queue)
        self._attach(sock, names, bind)
        return Sender(sock, queue, self, stop_grace_s)

    def receiver(self, queue: str, names: list[str], bind: bool) -> Receiver:
        sock = self._socket(zmq.PULL, queue)
        self._attach(sock, names, bind)
        return Receiver(sock, queue, self)

    def sender_to(self, queue: str, stop_grace_s: float | None = None) -> Sender:
        """A sender to `queue` for a process that is not a stage (the supervisor, the web page): it connects to
        every socket the queue's binder binds (daemon.pipeline)."""
        names = pipeline.socket_names(self.settings, self.stage, queue, 0)
        return self.sender(queue, names, bind=False, stop_grace_s=stop_grace_s)

    def publisher(self, name: str) -> Sender:
        sock = self._socket(zmq.PUB, name.partition(".")[0])
        self._attach(sock, [name], bind=True)
        return Sender(sock, None, self)

    def subscriber(self, name: str) -> Receiver:
        sock = self._socket(zmq.SUB, name.partition(".")[0])
        sock.setsockopt(zmq.SUBSCRIBE, b"")
        self._attach(sock, [name], bind=False)
        return Receiver(sock, None, self)

    def mark_ready(self) -> None:
        """Tell /healthz this process finished starting: its sockets are up and its models loaded."""
        metrics.STAGE_READY.labels(self.stage).inc()

    def close(self) -> None:
        for sock in self._sockets:
            sock.close(linger=0)
        self.ctx.term()


class Sender:
    def __init__(self, sock: zmq.Socket, queue: str | None, fabric: Fabric, stop_grace_s: float | None = None) -> None:
        self.sock, self.queue, self.fabric = sock, queue, fabric
        self.stop_grace_s = stop_grace_s  # see send()

    def try_send(self, msg: Record) -> bool:
        """Send only if the queue has room right now."""
        try:
            self.sock.send_multipart(wire.encode(msg), flags=zmq.NOBLOCK, copy=False)
        except zmq.Again:
            return False
        if self.queue:
            metrics.QUEUE_MESSAGES.labels(self.queue).inc()
        return True

    def send(self, msg: Record, grace_s: float | None = None) -> None:
        """Send, blocking while the queue is full (back-pressure). Once a stop is requested the send gives up
        after a grace by raising Stopping: `grace_s`, else the sender's `stop_grace_s` (short where the receiver
        stops too: waiting for it is waiting for nothing), else half the configured shutdown timeout (a receiver
        that drains, the index, still gets the rest). Waiting the whole timeout raced the supervisor's kill at that
        very deadline (issue 30: detect and classify killed on every Ctrl-C)."""
        frames = wire.encode(msg)
        deadline = None
        while True:
            try:
                self.sock.send_multipart(frames, flags=zmq.NOBLOCK, copy=False)
                break
            except zmq.Again:
                if self.sock.socket_type == zmq.PUB:
                    return  # PUB never blocks: a subscriber that is away misses the event
                if self.fabric.stop.set:
                    grace = grace_s if grace_s is not None else self.stop_grace_s
                    if grace is None:
                        grace = self.fabric.settings.supervisor.shutdown_timeout_s / 2
                    deadline = deadline or time.monotonic() + grace
                    if time.monotonic() > deadline:
                        raise Stopping(f"{self.queue} is full and the stage is stopping") from None
                self.sock.poll(100, zmq.POLLOUT)
        if self.queue:
            metrics.QUEUE_MESSAGES.labels(self.queue).inc()


class Receiver:
    def __init__(self, sock: zmq.Socket, queue: str | None, fabric: Fabric) -> None:
        self.sock, self.queue, self.fabric = sock, queue, fabric

    def recv(self, timeout_ms: int = 200) -> Record | None:
        """The next valid message, or None after timeout_ms. Invalid messages are counted, logged and skipped."""
        if not self.sock.poll(timeout_ms, zmq.POLLIN):
            return None
        frames = self.sock.recv_multipart(copy=False)
        if self.queue:
            metrics.QUEUE_MESSAGES.labels(self.queue).dec()
        try:
            return wire.decode(frames, self.fabric.max_bytes)
        except wire.WireError as exc:
            counters.MESSAGES_REJECTED.labels(self.fabric.stage, exc.reason).inc()
            log.warning("%s: rejected a message on %s: %s", self.fabric.stage, self.queue or "events", exc)
            return None
