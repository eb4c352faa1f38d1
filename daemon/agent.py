"""A worker: `humanstyle worker --config F` on a machine with the models. It runs the model stages named in
`worker.stages` (detect.workers detect and classify.workers classify processes, the same stage processes as the
single-machine daemon's) and one `agent` process that joins the head at `worker.head` and feeds them.

The agent holds a DEALER connection to the head's ROUTER (CURVE with `worker.secret_key` and `worker.head_key`). It
says hello with its stages and its capacity (one item per process of its first stage plus `worker.prefetch`), then
gets work by credit: a window (detect, and classify too when this worker classifies) or a window's patches (classify
only). It hands them to its local stages over ipc, exactly as a decoder would, gathers what comes back per window
(the window_done says how many patches to expect), and returns each item's records in ONE message, so a result
arrives whole or not at all. Every heartbeat it pings the head with what it holds (see daemon/scheduler.py); when
the head is silent it keeps working and reconnects, and when the head refuses its key it says so in its log and
/healthz and tries again later (the head re-reads its authorized keys, so adding the key needs no restart). A worker
whose model settings would give other patches than the head's (daemon.remote.RESULT_KEYS) stops with an error that
names each key.

A local detect or classify process that dies is restarted by the worker's supervisor, which tells the agent; the
agent hands that process's windows to the stages again (results are keyed, so a patch that arrives twice counts
once). An item that makes no progress for watch.stall_timeout_s is let go: the head notices it is no longer held
and gives it to someone else.
"""

from __future__ import annotations

import dataclasses
import logging
import os
import socket
import time
import uuid
from collections import deque
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass, field
from typing import Any

import zmq
from zmq.utils.monitor import recv_monitor_message

from humanstyle.daemon import remote
from humanstyle.daemon import remote_metrics as rm
from humanstyle.daemon.config import Settings, parse_listen
from humanstyle.daemon.fabric import Fabric, StopFlag, queued_messages
from humanstyle.daemon.keys import make_client
from humanstyle.daemon.supervisor import Child, Supervisor
from humanstyle.stages.counters import MESSAGES_REJECTED
from humanstyle.stages.records import (
    Classified,
    Patch,
    Record,
    StageRestarted,
    Window,
    WindowDone,
    is_number,
)
from humanstyle.stages.settings import StageFatal

log = logging.getLogger("humanstyle.agent")
REFUSED_BACKOFF_S = (5.0, 60.0)  # first and longest wait before trying again after the head refused this key


@dataclass
class Pending:
    """An item at the local stages: its inputs (to hand them again) and the results so far."""

    kind: str
    ids: list[str]
    inputs: list[Record]
    started: float = field(default_factory=time.monotonic)
    done: WindowDone | None = None
    results: dict[tuple[int, int], Record] = field(default_factory=dict)

    @property
    def complete(self) -> bool:
        return self.done is not None and len(self.results) >= self.done.patches


def capacity(settings: Settings) -> int:
    first = "detect" if "detect" in settings.worker.stages else "classify"
    return getattr(settings, first).workers + settings.worker.prefetch


class Agent:
    def __init__(self, settings: Settings, stop: StopFlag) -> None:
        self.settings, self.stop = settings, stop
        w = settings.worker
        self.stages = tuple(w.stages)
        self.fab = Fabric(settings, "agent", stop)
        self.max_bytes = self.fab.max_bytes
        self.to_detect = self.fab.sender("windows", ["windows.0"], bind=True) if "detect" in self.stages else None
        if "classify" in self.stages:
            self.results = [self.fab.receiver("classified", ["classified"], bind=True)]
            self.to_classify = None if self.to_detect else self.fab.sender("patches", ["patches.0"], bind=True)
        else:
            self.results = [self.fab.receiver("patches", [f"patches.{k}" for k in range(settings.detect.workers)],
                                              bind=False)]
            self.to_classify = None
        self.control = self.fab.receiver("control", ["control"], bind=True)
        self.capacity = capacity(settings)
        self.name = w.name or socket.gethostname()
        self.host = socket.gethostname()
        self.pool = ThreadPoolExecutor(max(2, os.cpu_count() or 1), thread_name_prefix="codec")
        self.unpacking: deque[tuple[Future, str, str]] = deque()
        self.packing: deque[tuple[Future, list[str], str]] = deque()
        self.pending: dict[tuple[int, int, int], Pending] = {}
        self.to_local: deque[Record] = deque()
        self.outgoing: deque[tuple[list[Any], list[str], str]] = deque()  # results packed, not sent yet
        self.codec, self.jpeg_quality = "png", 95
        self.heartbeat_s, self.timeout_s = 1.0, 10.0
        self.seen_seq = 0
        self.welcomed = False
        self.last_heard = 0.0
        self.last_hello = 0.0
        self.last_ping = 0.0
        self.retry_at: float | None = None
        self.refusals = 0
        self.connected = False
        self.dealer: zmq.Socket | None = None
        self.monitor: zmq.Socket | None = None
        self.public_key = b""
        self._connect()

    # --- the connection to the head ---------------------------------------------------------------------------------
    def _connect(self) -> None:
        w = self.settings.worker
        host, port = parse_listen(w.head, key="worker.head")
        sock = self.fab.ctx.socket(zmq.DEALER)
        sock.setsockopt(zmq.ROUTING_ID, uuid.uuid4().bytes)  # one identity per agent process and connection
        sock.setsockopt(zmq.LINGER, 0)
        sock.setsockopt(zmq.MAXMSGSIZE, 2 * self.max_bytes)
        sock.setsockopt(zmq.RECONNECT_IVL, 200)
        sock.setsockopt(zmq.RECONNECT_IVL_MAX, 5000)
        sock.setsockopt(zmq.HEARTBEAT_IVL, int(self.heartbeat_s * 1000))
        sock.setsockopt(zmq.HEARTBEAT_TIMEOUT, int(self.timeout_s * 1000))
        sock.setsockopt(zmq.SNDHWM, 64)
        # Queue nothing while there is no connection: a ping or hello from before a cut link is stale when the link
        # comes back (results wait in self.outgoing instead and go out once connected).
        sock.setsockopt(zmq.IMMEDIATE, 1)
        if w.secret_key:
            self.public_key = make_client(sock, w.secret_key, w.head_key)
        self.monitor = sock.get_monitor_socket(zmq.EVENT_HANDSHAKE_SUCCEEDED | zmq.EVENT_HANDSHAKE_FAILED_AUTH
                                               | zmq.EVENT_HANDSHAKE_FAILED_NO_DETAIL
                                               | zmq.EVENT_HANDSHAKE_FAILED_PROTOCOL | zmq.EVENT_DISCONNECTED)
        sock.connect(f"tcp://{host}:{port}")
        self.dealer = sock
        self.welcomed = False
        self._hello(time.monotonic())

    def _disconnect(self) -> None:
        if self.dealer is not None:
            self.dealer.disable_monitor()
            self.monitor.close(0)
            self.dealer.close(0)
            self.dealer = self.monitor = None

    def _send(self, frames: list[Any]) -> bool:
        if self.dealer is None:
            return False
        try:
            self.dealer.send_multipart(frames, flags=zmq.NOBLOCK, copy=False)
        except zmq.Again:
            return False
        rm.BYTES.labels("sent").inc(remote.framed_bytes(frames))
        return True

    def _held(self) -> list[str]:
        ids = [i for p in self.pending.values() for i in p.ids]
        ids += [i for _f, i, _k in self.unpacking] + [i for _f, held, _k in self.packing for i in held]
        ids += [i for _f, held, _k in self.outgoing for i in held]
        return ids

    def _free(self) -> int:
        return max(0, self.capacity - len(self.pending) - len(self.unpacking))

    def _hello(self, now: float) -> None:
        self.last_hello = now
        self._send(remote.message("hello", name=self.name, host=self.host, stages=list(self.stages),
                                  capacity=self.capacity, holding=self._held(),
                                  settings=remote.result_settings(self.settings)))

    def _on_monitor(self, now: float) -> None:
        while self.monitor is not None and self.monitor.poll(0):
            event = recv_monitor_message(self.monitor)["event"]
            if event == zmq.EVENT_HANDSHAKE_FAILED_AUTH:
                # The head does not list this worker's key; libzmq does not retry by itself after that.
                rm.REFUSED.labels("unknown_key").inc()
                self.refusals += 1
                wait = min(REFUSED_BACKOFF_S[0] * 2 ** (self.refusals - 1), REFUSED_BACKOFF_S[1])
                log.error("the head at %s refused this worker's key %s: add its public key file to the head's "
                          "head.authorized_keys folder; trying again in %.0f s", self.settings.worker.head,
                          self.public_key.decode(errors="replace"), wait)
                self._disconnect()
                self.retry_at = now + wait
                return
            if event in (zmq.EVENT_HANDSHAKE_FAILED_NO_DETAIL, zmq.EVENT_HANDSHAKE_FAILED_PROTOCOL):
                rm.REFUSED.labels("handshake").inc()
                log.warning("the handshake with the head at %s failed: is worker.head_key the head's public key, and "
                            "does the head use CURVE?", self.settings.worker.head)
            elif event == zmq.EVENT_HANDSHAKE_SUCCEEDED:
                self.refusals = 0
                if not self.welcomed:
                    self._hello(now)  # sends only once connected (IMMEDIATE): now is the moment
            elif event == zmq.EVENT_DISCONNECTED and self.welcomed:
                log.warning("lost the connection to the head; reconnecting")

    # --- the loop -----------------------------------------------------------------------------------------------------
    def run(self) -> None:
        rm.init_worker_series()
        self.fab.mark_ready()
        log.info("agent %s: joining the head at %s with %s, capacity %d", self.name, self.settings.worker.head,
                 "+".join(self.stages), self.capacity)
        try:
            while not self.stop.set:
                self.turn()
            self._send(remote.message("bye"))
            if self.dealer is not None:
                self.dealer.setsockopt(zmq.LINGER, 1000)  # let the bye out: the head redoes our items at once
        finally:
            self.pool.shutdown(wait=False, cancel_futures=True)
            self._disconnect()
            self.fab.close()

    def turn(self) -> None:
        now = time.monotonic()
        if self.dealer is None and self.retry_at is not None and now >= self.retry_at:
            self.retry_at = None
            self._connect()
        poller = zmq.Poller()
        for receiver in (*self.results, self.control):
            poller.register(receiver.sock, zmq.POLLIN)
        if self.dealer is not None:
            poller.register(self.dealer, zmq.POLLIN)
            poller.register(self.monitor, zmq.POLLIN)
        ready = dict(poller.poll(5 if (self.unpacking or self.packing or self.to_local) else 100))
        now = time.monotonic()
        if self.monitor is not None and ready.get(self.monitor):
            self._on_monitor(now)
        if self.dealer is not None and ready.get(self.dealer):
            for frames in queued_messages(self.dealer, 64):
                self.on_message(frames, now)
        for receiver in self.results:
            if ready.get(receiver.sock):
                for _ in range(256):
                    record = receiver.recv(timeout_ms=0)
                    if record is None:
                        break
                    self.on_local(record)
        if ready.get(self.control.sock):
            record = self.control.recv(timeout_ms=0)
            if isinstance(record, StageRestarted):
                self.hand_again(f"a local {record.stage} process was restarted")
        self._collect()
        self._to_local()
        self._timers(now)

    def _timers(self, now: float) -> None:
        if self.dealer is None:
            return
        if not self.welcomed and now - self.last_hello > max(1.0, self.heartbeat_s):
            self._hello(now)
        if now - self.last_ping >= self.heartbeat_s:
            self.last_ping = now
            self._send(remote.message("ping", free=self._free(), seen=self.seen_seq, holding=self._held()))
        if self.welcomed and now - self.last_heard > self.timeout_s and self.connected:
            self.connected = False
            log.warning("the head at %s has been silent for %.0f s; still trying", self.settings.worker.head,
                        self.timeout_s)
            rm.HEAD_CONNECTED.set(0)
        stall = self.settings.watch.stall_timeout_s
        for key, item in list(self.pending.items()):
            if now - item.started > stall:
                log.warning("window %s made no progress here for %.0f s: letting the head give it to another", key,
                            stall)
                del self.pending[key]

    # --- from the head --------------------------------------------------------------------------------------------
    def on_message(self, frames: list[Any], now: float) -> None:
        rm.BYTES.labels("received").inc(remote.framed_bytes(frames))
        try:
            control, records = remote.parse(frames)
        except remote.RemoteError as exc:
            MESSAGES_REJECTED.labels("agent", exc.reason).inc()
            log.warning("agent: rejected a message from the head: %s", exc)
            return
        self.last_heard = now
        op = control["op"]
        if op == "refuse":
            raise StageFatal(f"the head at {self.settings.worker.head} refused this worker: "
                             f"{str(control.get('reason'))[:2000]}. Set them as the head has them")
        if op == "welcome":
            self.welcomed, self.seen_seq = True, 0
            self.codec = control.get("codec") if control.get("codec") in remote.CODECS else "png"
            self.jpeg_quality = _number(control.get("jpeg_quality"), 95)
            self.heartbeat_s = _number(control.get("heartbeat_s"), 1.0)
            self.timeout_s = _number(control.get("timeout_s"), 10.0)
            self.connected = True
            rm.HEAD_CONNECTED.set(1)
            log.info("joined the head at %s (frames travel as %s)", self.settings.worker.head, self.codec)
        elif op == "who":
            self.welcomed = False
            if now - self.last_hello > self.heartbeat_s / 2:  # several may come at once after a cut link
                self._hello(now)
        elif op == "work":
            self.on_work(control, records)
        elif op == "ping":
            if self.welcomed and not self.connected:
                log.info("the head answers again")
                self.connected = True
                rm.HEAD_CONNECTED.set(1)
        else:
            MESSAGES_REJECTED.labels("agent", "unexpected_type").inc()

    def on_work(self, control: dict, records: list[list[Any]]) -> None:
        item_id, seq, kind = control.get("work"), control.get("seq"), control.get("kind")
        if not isinstance(item_id, str) or not isinstance(seq, int) or kind not in ("window", "patches"):
            MESSAGES_REJECTED.labels("agent", "bad_field").inc()
            return
        self.seen_seq = max(self.seen_seq, seq)
        future = self.pool.submit(lambda: [remote.unpack_record(r, self.max_bytes) for r in records])
        self.unpacking.append((future, item_id, kind))

    def _collect(self) -> None:
        while self.unpacking and self.unpacking[0][0].done():
            future, item_id, kind = self.unpacking.popleft()
            try:
                self.start_item(item_id, kind, future.result())
            except Exception as exc:  # noqa: BLE001 - the head redoes an item this worker cannot take
                MESSAGES_REJECTED.labels("agent", getattr(exc, "reason", "bad_field")).inc()
                log.warning("agent: could not take work %s: %s", item_id, exc)
        while self.packing and self.packing[0][0].done():
            future, ids, kind = self.packing.popleft()
            try:
                frames = future.result()
            except Exception:  # noqa: BLE001
                log.exception("agent: could not pack a result")
                continue
            self.outgoing.append((frames, ids, kind))
        while self.outgoing:
            frames, ids, kind = self.outgoing[0]
            if not all(self._send(remote.message("result", frames, work=i)) for i in ids):
                return  # not connected now: they go out when the connection is back
            self.outgoing.popleft()
            rm.WORKER_ITEMS.labels(kind).inc()

    def start_item(self, item_id: str, kind: str, records: list[Record]) -> None:
        expected = (Window,) if kind == "window" else (Patch, WindowDone)
        if not records or not all(isinstance(r, expected) for r in records) or (
                kind == "window" and (len(records) != 1 or self.to_detect is None)) or (
                kind == "patches" and "classify" not in self.stages):
            raise remote.RemoteError("unexpected_type", f"{kind} work this worker cannot do")
        first = records[0]
        key = (first.video_id, first.attempt, first.window_index)
        if any((r.video_id, r.attempt, r.window_index) != key for r in records):
            raise remote.RemoteError("bad_field", "records of several windows in one item")
        if key in self.pending:  # the head gave it again (it lost track of us for a moment): answer both
            self.pending[key].ids.append(item_id)
            return
        self.pending[key] = Pending(kind, [item_id], records)
        self.to_local.extend(records)

    def hand_again(self, why: str) -> None:
        if self.pending:
            log.warning("handing %d window(s) to the local stages again: %s", len(self.pending), why)
        for item in self.pending.values():
            item.started = time.monotonic()
            self.to_local.extend(item.inputs)

    def _to_local(self) -> None:
        while self.to_local:
            record = self.to_local[0]
            sender = self.to_detect if isinstance(record, Window) else self.to_classify
            if sender is None or not sender.try_send(record):
                return
            self.to_local.popleft()

    # --- from the local stages ------------------------------------------------------------------------------------
    def on_local(self, record: Record) -> None:
        if not isinstance(record, (Classified, Patch, WindowDone)):
            return  # a video_end never comes here: the head forwards it to its index itself
        key = (record.video_id, record.attempt, record.window_index)
        item = self.pending.get(key)
        if item is None:
            return  # an item given up or returned already
        if isinstance(record, WindowDone):
            item.done = record
        else:
            item.results[(record.frame_index, record.person_index)] = record
        if item.complete:
            del self.pending[key]
            records = [item.results[k] for k in sorted(item.results)] + [item.done]
            future = self.pool.submit(lambda: [remote.pack_record(r, self.codec, self.jpeg_quality)
                                               for r in records])
            self.packing.append((future, item.ids, item.kind))


def _number(value: Any, default: float) -> Any:
    return value if is_number(value) and value > 0 else default


def run_agent(settings: Settings, index: int, stop: StopFlag) -> None:
    Agent(settings, stop).run()


# --- the worker's supervisor --------------------------------------------------------------------------------------
def worker_settings(settings: Settings) -> Settings:
    """The settings the worker's processes run with: the agent stands where the decoder (and, for a worker that only
    classifies, the detector) would be, so the stage processes find their queues where they always do."""
    decode = dataclasses.replace(settings.decode, workers=1)
    detect = settings.detect
    if "detect" not in settings.worker.stages:
        detect = dataclasses.replace(detect, workers=1)
    return dataclasses.replace(settings, decode=decode, detect=detect)


def plan_worker(settings: Settings) -> list[Child]:
    children = [Child("agent", 0)]
    for stage in ("detect", "classify"):
        if stage in settings.worker.stages:
            children += [Child(stage, i) for i in range(getattr(settings, stage).workers)]
    return children


class WorkerSupervisor(Supervisor):
    LAST_STAGES = ("agent",)  # it returns what the model stages finish while they stop

    def __init__(self, settings: Settings) -> None:
        plan = plan_worker(settings)
        super().__init__(worker_settings(settings))
        self.children = plan

    def prepare_folders(self) -> None:
        pass  # a worker keeps no data: the head writes everything

    def health(self, samples: list | None = None) -> dict:
        from humanstyle.daemon.metrics_server import process_samples

        samples = process_samples() if samples is None else samples
        data = super().health(samples)
        connected, refused = 0.0, 0.0
        for sample in samples:
            if sample.name == "humanstyle_worker_head_connected":
                connected = max(connected, sample.value)
            elif sample.name == "humanstyle_remote_refused_total":
                refused += sample.value
        data["head"] = {"address": self.settings.worker.head, "connected": bool(connected), "refused": int(refused)}
        return data
