"""The head: `humanstyle run` with `head.listen` set. It runs watch, index, decode and the trainer as the single-machine
daemon does, and instead of detect and classify processes one `dispatch` process that hands windows to the workers
that joined it over the network (`humanstyle worker`, daemon/agent.py) and forwards their results to the index.

The dispatch process:
- takes windows from the decoders only while fewer than `head.max_queued_windows` wait (the decoders block beyond
  that, as they do on a slow detector), compresses their frames (daemon.remote) in a thread pool, and queues them;
- binds a ROUTER on `head.listen` (CURVE with `head.secret_key`; only keys in `head.authorized_keys` are accepted,
  refusals counted); workers say hello with their stages and capacity and get work by credit (daemon.scheduler);
- checks every result (the records belong to the item's window, one window_done, as many patches as it announces),
  forwards it to the index, and turns the patches of a worker that only detects into an item for one that
  classifies;
- sends a window_done without patches for an item it had to abandon, and each decoder's video_end straight on, so
  every video ends as it would on one machine;
- while work waits at the head for workers (none joined, or all busy), tells the index which videos are waiting
  (video_waiting on its control queue), so waiting is not taken for a stall and redone;
- writes its worker table (runtime_dir/dispatch.json) for /healthz and the per-worker series of /metrics, and the
  backlog in video seconds (queued videos by their container duration, plus what is left of those in progress).
When the dispatch process dies, the supervisor restarts it and the index redoes the videos in flight, as for a
crashed detector.
"""

from __future__ import annotations

import json
import logging
import os
import socket
import time
from collections import deque
from concurrent.futures import Future, ThreadPoolExecutor
from pathlib import Path
from typing import Any

import zmq
from zmq.utils.monitor import recv_monitor_message

from humanstyle.daemon import remote, wire
from humanstyle.daemon import remote_metrics as rm
from humanstyle.daemon.config import Settings, parse_listen
from humanstyle.daemon.fabric import Fabric, StopFlag, queued_messages, take_turns
from humanstyle.daemon.keys import AuthorizedKeys, make_server, start_authenticator
from humanstyle.daemon.paths import runtime_dir
from humanstyle.daemon.scheduler import Item, RemoteWorker, Scheduler
from humanstyle.daemon.supervisor import Supervisor
from humanstyle.stages.counters import ERRORS, MESSAGES_REJECTED
from humanstyle.stages.records import (
    Classified,
    Patch,
    Record,
    VideoEnd,
    VideoWaiting,
    Window,
    WindowDone,
    is_int,
)

log = logging.getLogger("humanstyle.head")
STATUS_FILE = "dispatch.json"
BACKLOG_EVERY_S = 2.0
PROBES_PER_ROUND = 16  # container probes per backlog refresh, so a folder of new videos never stalls the loop
MAX_OUTBOUND = 512  # records waiting for the index before the head stops handing out work


def bind_address(listen: str) -> str:
    host, port = parse_listen(listen, key="head.listen")
    host = "*" if host in ("0.0.0.0", "::", "*") else host
    return f"tcp://{host}:{port}"


def failed_window_done(item: Item) -> WindowDone:
    video_id, attempt, window_index = item.key
    return WindowDone(video_id=video_id, attempt=attempt, domain=item.domain, window_index=window_index,
                      patches=0, anchor_hit=False, frames=1, windows_expected=0)


def check_result(item: Item, records: list[Record]) -> tuple[list[Record], list[Patch], WindowDone]:
    """(classified, unclassified patches, window_done) of a result, or RemoteError when it is not this item's."""
    dones = [r for r in records if isinstance(r, WindowDone)]
    if len(dones) != 1:
        raise remote.RemoteError("bad_result", f"{len(dones)} window_done records")
    done = dones[0]
    classified = [r for r in records if isinstance(r, Classified)]
    patches = [r for r in records if type(r) is Patch]
    if len(classified) + len(patches) + 1 != len(records):
        raise remote.RemoteError("bad_result", "unexpected record types")
    if classified and patches or item.kind == "patches" and patches:
        raise remote.RemoteError("bad_result", "patches left unclassified")
    for r in records:
        if (r.video_id, r.attempt, r.window_index) != item.key:
            raise remote.RemoteError("bad_result", f"a record of another window {r.video_id}/{r.window_index}")
    keys = {(r.frame_index, r.person_index) for r in classified + patches}
    if len(keys) != done.patches or len(classified) + len(patches) != done.patches:
        raise remote.RemoteError("bad_result", f"{len(keys)} patches for {done.patches} announced")
    return classified, patches, done


class Dispatcher:
    def __init__(self, settings: Settings, stop: StopFlag) -> None:
        self.settings, self.stop = settings, stop
        h = settings.head
        self.fab = Fabric(settings, "dispatch", stop)
        self.max_bytes = self.fab.max_bytes
        self.windows = [self.fab.receiver("windows", [f"windows.{k}"], bind=False)
                        for k in range(settings.decode.workers)]
        self.to_index = self.fab.sender("classified", ["classified"], bind=False)
        self.control = self.fab.sender("control", ["control"], bind=False)
        self.scheduler = Scheduler(h.worker_timeout_s)
        self.pool = ThreadPoolExecutor(h.encode_threads or os.cpu_count() or 1, thread_name_prefix="codec")
        self.packing: deque[Future] = deque()
        self.checking: deque[tuple[Future, Item, bytes]] = deque()
        self.outbound: deque[Record] = deque()
        self.auth = None
        self.router = self._router()
        self.monitor = self.router.get_monitor_socket(zmq.EVENT_HANDSHAKE_FAILED_PROTOCOL
                                                      | zmq.EVENT_HANDSHAKE_FAILED_NO_DETAIL)
        self.status_path = status_path(settings)
        self.windows_done: dict[int, set[int]] = {}  # video id -> window indices finished (the backlog's progress)
        self.durations: dict[int, float | None] = {}
        self.backlog_s = 0.0
        self._catalog = None
        self._ticks = {"heartbeat": 0.0, "backlog": 0.0}
        self.asked: dict[bytes, float] = {}  # worker identity -> when it was last asked to say hello again

    def _router(self) -> zmq.Socket:
        h = self.settings.head
        sock = self.fab.ctx.socket(zmq.ROUTER)
        sock.setsockopt(zmq.LINGER, 0)
        sock.setsockopt(zmq.ROUTER_MANDATORY, 1)  # a send to a worker whose connection is gone fails at once
        sock.setsockopt(zmq.ROUTER_HANDOVER, 1)  # a worker that reconnects after a cut link keeps its identity
        sock.setsockopt(zmq.MAXMSGSIZE, 2 * self.max_bytes)
        ivl = int(h.heartbeat_s * 1000)
        sock.setsockopt(zmq.HEARTBEAT_IVL, ivl)
        sock.setsockopt(zmq.HEARTBEAT_TIMEOUT, int(h.worker_timeout_s * 1000))
        if h.secret_key:
            authorized = AuthorizedKeys(h.authorized_keys, self._refused)
            authorized.keys()  # read now: a bad folder shows in the log at start
            self.auth = start_authenticator(self.fab.ctx, authorized)
            make_server(sock, h.secret_key, "head.secret_key")
        sock.bind(bind_address(h.listen))
        return sock

    @staticmethod
    def _refused(key: bytes) -> None:
        rm.REFUSED.labels("unknown_key").inc()
        log.warning("refused a worker with public key %s: not in head.authorized_keys", key.decode(errors="replace"))

    # --- the loop -----------------------------------------------------------------------------------------------
    def run(self) -> None:
        rm.init_head_series()
        self.fab.mark_ready()
        log.info("dispatch: workers join on %s (%s)", self.settings.head.listen,
                 "CURVE" if self.settings.head.secret_key else "no encryption: loopback only")
        stop_at = None
        try:
            while True:
                if self.stop.set:
                    # Drain: results of work already out may still come; then leave (the index redoes the rest).
                    stop_at = stop_at or time.monotonic() + self.settings.supervisor.shutdown_timeout_s / 2
                    if time.monotonic() > stop_at or not (self.scheduler.in_flight() or self.outbound
                                                          or self.checking):
                        break
                self.turn()
        finally:
            self.close()

    def turn(self) -> None:
        poller = zmq.Poller()
        poller.register(self.router, zmq.POLLIN)
        poller.register(self.monitor, zmq.POLLIN)
        if self._room() and not self.stop.set:
            for receiver in self.windows:
                poller.register(receiver.sock, zmq.POLLIN)
        if self.outbound:
            poller.register(self.to_index.sock, zmq.POLLOUT)
        busy = self.packing or self.checking
        ready = dict(poller.poll(5 if busy else 100))
        now = time.monotonic()
        if ready.get(self.router):
            for frames in queued_messages(self.router, 256):
                self.on_message(frames, now)
        if ready.get(self.monitor):
            self._drain_monitor()
        for record in take_turns([r for r in self.windows if ready.get(r.sock)], self._room):
            self.on_upstream(record)
        self._collect()
        self._forward()
        if not self.stop.set and len(self.outbound) < MAX_OUTBOUND:
            self._dispatch(now)
        if now - self._ticks["heartbeat"] >= self.settings.head.heartbeat_s:
            self._ticks["heartbeat"] = now
            self._heartbeat(now)
        if now - self._ticks["backlog"] >= BACKLOG_EVERY_S:
            self._ticks["backlog"] = now
            self._refresh_backlog()

    def _room(self) -> bool:
        return len(self.packing) + self.scheduler.queued("window") < self.settings.head.max_queued_windows

    # --- upstream: decoders ---------------------------------------------------------------------------------------
    def on_upstream(self, record: Record) -> None:
        if isinstance(record, VideoEnd):
            self.outbound.append(record)  # the index counts windows; it needs no order with their results
        elif isinstance(record, Window):
            self.packing.append(self.pool.submit(self._pack_window, record))
        else:
            MESSAGES_REJECTED.labels("dispatch", "unexpected_type").inc()

    def _pack_window(self, window: Window) -> Item:
        h = self.settings.head
        frames = remote.pack_record(window, h.frame_codec, h.jpeg_quality)
        return Item(self.scheduler.new_id(), "window", (window.video_id, window.attempt, window.window_index),
                    [frames], remote.framed_bytes(frames), window.domain)

    def _collect(self) -> None:
        while self.packing and self.packing[0].done():
            future = self.packing.popleft()
            try:
                self.scheduler.add(future.result())
            except Exception:  # noqa: BLE001 - a frame the codec cannot take must not stop the head
                log.exception("dispatch: could not compress a window")
                ERRORS.labels("dispatch", "encode").inc()
        while self.checking and self.checking[0][0].done():
            future, item, identity = self.checking.popleft()
            self._on_checked(future, item, identity)

    # --- workers ----------------------------------------------------------------------------------------------------
    def on_message(self, frames: list[Any], now: float) -> None:
        identity, body = bytes(frames[0]), frames[1:]
        size = remote.framed_bytes(body)
        rm.BYTES.labels("received").inc(size)
        try:
            control, records = remote.parse(body)
        except remote.RemoteError as exc:
            MESSAGES_REJECTED.labels("dispatch", exc.reason).inc()
            log.warning("dispatch: rejected a message from a worker: %s", exc)
            return
        op = control["op"]
        worker = self.scheduler.workers.get(identity)
        if worker is not None:
            worker.bytes_received += size
        if op == "hello":
            self._hello(identity, control, now)
        elif op == "result":
            self._result(identity, control, records, now)
        elif op == "ping":
            if worker is None:
                self._who(identity, now)
                return
            self.scheduler.ping(identity, _int(control.get("free")), _int(control.get("seen")),
                                _ids(control.get("holding")), now)
        elif op == "bye":
            gone = self.scheduler.leave(identity)
            if gone is not None:
                log.info("worker %s (%s) left", gone.name, gone.host)
        else:
            MESSAGES_REJECTED.labels("dispatch", "unexpected_type").inc()

    def _hello(self, identity: bytes, control: dict, now: float) -> None:
        stages = control.get("stages")
        capacity = _int(control.get("capacity"))
        name, host = str(control.get("name", ""))[:64], str(control.get("host", ""))[:128]
        if not isinstance(stages, list) or not stages or not set(stages) <= {"detect", "classify"} or not (
                0 < capacity <= 1024):
            MESSAGES_REJECTED.labels("dispatch", "bad_field").inc()
            log.warning("dispatch: a hello with stages %r and capacity %r refused", stages, capacity)
            return
        settings = control.get("settings")
        differences = remote.settings_differences(settings, remote.result_settings(self.settings)) if isinstance(
            settings, dict) else ["it sent no model settings"]
        if differences:
            rm.REFUSED.labels("settings").inc()
            log.warning("refused worker %s (%s): %s", name, host, "; ".join(differences))
            self._send(identity, remote.message("refuse", reason="; ".join(differences)))
            return
        known = identity in self.scheduler.workers
        worker = self.scheduler.hello(identity, name or host, host, stages, capacity, now,
                                      _ids(control.get("holding")))
        h = self.settings.head
        self._send(identity, remote.message("welcome", codec=h.frame_codec, jpeg_quality=h.jpeg_quality,
                                            heartbeat_s=h.heartbeat_s, timeout_s=h.worker_timeout_s))
        log.info("worker %s (%s) %s: %s, capacity %d", worker.name, worker.host, "is back" if known else "joined",
                 "+".join(sorted(worker.stages)), capacity)

    def _result(self, identity: bytes, control: dict, records: list[list[Any]], now: float) -> None:
        item_id = control.get("work")
        if not isinstance(item_id, str):
            MESSAGES_REJECTED.labels("dispatch", "bad_field").inc()
            return
        if identity not in self.scheduler.workers:
            self._who(identity, now)  # its results still count
        item = self.scheduler.result(identity, item_id, now)
        if item is None:
            rm.ITEMS.labels("window", "duplicate").inc()
            return
        self.checking.append((self.pool.submit(self._check, item, records), item, identity))

    def _who(self, identity: bytes, now: float) -> None:
        """Ask a worker the head does not know (it was given up, or the head restarted) to say hello again; once per
        heartbeat, however many of its messages arrive at once."""
        if now - self.asked.get(identity, -1e9) < self.settings.head.heartbeat_s:
            return
        self.asked[identity] = now
        if len(self.asked) > 4096:
            self.asked = {k: t for k, t in self.asked.items() if now - t < 60}
        self._send(identity, remote.message("who"))

    def _check(self, item: Item, records: list[list[Any]]) -> tuple[list[Record], list[list[bytes]], WindowDone]:
        """(classified, the frames of the patches still to classify, window_done) of a result, in the pool.

        A worker that only detects sends its patches packed in the head's codec; once they have unpacked and checked
        they travel on as the worker packed them: decoding and compressing them again on the head would cost two
        image codings per patch (and a second JPEG generation) for nothing."""
        classified, patches, done = check_result(item, [remote.unpack_record(r, self.max_bytes) for r in records])
        # check_result allows patches only without classified records: then every record is a patch or the done.
        frames = [[bytes(wire.frame_buffer(f)) for f in r] for r in records] if patches else []
        return classified, frames, done

    def _on_checked(self, future: Future, item: Item, identity: bytes) -> None:
        worker = self.scheduler.workers.get(identity)
        try:
            classified, frames, done = future.result()
        except Exception as exc:  # noqa: BLE001 - nothing a worker sends may stop the head
            reason = getattr(exc, "reason", "bad_result")
            MESSAGES_REJECTED.labels("dispatch", reason).inc()
            rm.ITEMS.labels(item.kind, "bad_result").inc()
            log.warning("dispatch: a result from %s for %s was refused: %s",
                        worker.name if worker else "a worker that left", item.key, exc)
            self.scheduler.requeue(item)
            return
        if self.scheduler.complete(item.id) is None:
            rm.ITEMS.labels(item.kind, "duplicate").inc()
            return
        rm.ITEMS.labels(item.kind, "done").inc()
        if frames:
            # The worker only detects: its patches become an item for a worker that classifies.
            self.scheduler.add(Item(self.scheduler.new_id(), "patches", item.key, frames,
                                    sum(remote.framed_bytes(f) for f in frames), item.domain))
            return
        self.outbound.extend(classified)
        self.outbound.append(done)
        self.windows_done.setdefault(done.video_id, set()).add(done.window_index)

    def _dispatch(self, now: float) -> None:
        for worker, item, seq in self.scheduler.assign(now):
            msg = remote.message("work", item.frames, work=item.id, seq=seq, kind=item.kind)
            if self._send(worker.identity, msg):
                worker.bytes_sent += item.nbytes
                rm.ITEMS.labels(item.kind, "redone" if item.dispatches > 1 else "dispatched").inc()
            else:
                gone = self.scheduler.leave(worker.identity)
                if gone is not None:
                    log.warning("worker %s (%s) cannot be reached; its work goes to others", gone.name, gone.host)

    def _send(self, identity: bytes, frames: list[Any]) -> bool:
        try:
            self.router.send_multipart([identity, *frames], flags=zmq.NOBLOCK, copy=False)
        except zmq.Again:
            return False
        except zmq.ZMQError as exc:
            if exc.errno == zmq.EHOSTUNREACH:
                return False
            raise
        rm.BYTES.labels("sent").inc(remote.framed_bytes(frames))
        return True

    def _forward(self) -> None:
        while self.outbound:
            if not self.to_index.try_send(self.outbound[0]):
                return
            self.outbound.popleft()

    def _heartbeat(self, now: float) -> None:
        for worker in self.scheduler.expire(now):
            log.warning("worker %s (%s) silent for %.0f s: gone; its %s redone by others", worker.name, worker.host,
                        self.settings.head.worker_timeout_s, "work is" if worker.done else "windows are")
        for item in self.scheduler.take_abandoned():
            log.error("dispatch: window %s was handed out %d times without a result; recorded without patches",
                      item.key, item.dispatches)
            rm.ITEMS.labels(item.kind, "abandoned").inc()
            ERRORS.labels("dispatch", "abandoned").inc()
            self.outbound.append(failed_window_done(item))
        for identity in list(self.scheduler.workers):
            if not self._send(identity, remote.message("ping")):
                gone = self.scheduler.leave(identity)
                log.warning("worker %s (%s) cannot be reached: gone; its work goes to others", gone.name, gone.host)
        rm.WORKERS.set(len(self.scheduler.workers))
        rm.QUEUED.labels("window").set(self.scheduler.queued("window") + len(self.packing))
        rm.QUEUED.labels("patches").set(self.scheduler.queued("patches"))
        rm.IN_FLIGHT.set(self.scheduler.in_flight())
        self._write_status()

    def _drain_monitor(self) -> None:
        while self.monitor.poll(0):
            event = recv_monitor_message(self.monitor)
            if event["event"] in (zmq.EVENT_HANDSHAKE_FAILED_PROTOCOL, zmq.EVENT_HANDSHAKE_FAILED_NO_DETAIL):
                rm.REFUSED.labels("handshake").inc()
                log.warning("refused a connection whose handshake failed (a worker with another head's key, or "
                            "without CURVE)")

    # --- backlog and status ---------------------------------------------------------------------------------------
    def _refresh_backlog(self) -> None:
        from humanstyle.stages.catalog import UNFINISHED, catalog_exists, open_catalog
        from humanstyle.stages.decode import NotAVideo, probe_video

        try:
            if self._catalog is None:
                if not catalog_exists(self.settings):
                    return
                self._catalog = open_catalog(self.settings, readonly=True, role="head")
            videos = self._catalog.videos_with_status(*UNFINISHED)
        except Exception as exc:  # noqa: BLE001 - a busy or missing catalog only delays the figure
            log.debug("backlog: catalog not readable now (%s)", exc)
            return
        if self.scheduler.queued() or self.packing:
            # Work waits here for workers (none joined, or all busy): the videos in progress are waiting, not
            # stalled, and the index must not redo them for it.
            for video in videos:
                if video.status == "processing":
                    self.control.try_send(VideoWaiting(video_id=video.id))
        probes, total = 0, 0.0
        live = {v.id for v in videos}
        for video in videos:
            if video.id not in self.durations and probes < PROBES_PER_ROUND:
                probes += 1
                try:
                    self.durations[video.id] = probe_video(video.path).duration_s
                except (NotAVideo, OSError, Exception):  # noqa: BLE001 - unreadable: the decoder will say why
                    self.durations[video.id] = None
            duration = self.durations.get(video.id) or 0.0
            done = len(self.windows_done.get(video.id, ())) * self.settings.decode.anchor_every_s
            total += max(0.0, duration - done)
        for vid in set(self.durations) - live:
            self.durations.pop(vid, None)
            self.windows_done.pop(vid, None)
        self.backlog_s = total
        rm.BACKLOG.set(total)

    def _write_status(self) -> None:
        now_wall = time.time()
        status = {
            "as_of": now_wall, "listen": self.settings.head.listen, "backlog_video_s": round(self.backlog_s, 1),
            "queued": {"window": self.scheduler.queued("window") + len(self.packing),
                       "patches": self.scheduler.queued("patches")},
            "in_flight": self.scheduler.in_flight(),
            "workers": [worker_row(w, now_wall) for w in self.scheduler.workers.values()],
        }
        tmp = self.status_path.with_suffix(".tmp")
        tmp.write_text(json.dumps(status))
        os.replace(tmp, self.status_path)

    def close(self) -> None:
        for identity in list(self.scheduler.workers):
            self._send(identity, remote.message("who"))  # the next head (or this one restarted) hears them again
        self.pool.shutdown(wait=False, cancel_futures=True)
        if self.auth is not None:
            self.auth.stop()
        self.monitor.close(0)
        self.router.close(0)
        if self._catalog is not None:
            self._catalog.close()
        self.fab.close()


def worker_row(w: RemoteWorker, now_wall: float) -> dict[str, Any]:
    return {"name": w.name, "host": w.host, "id": w.identity.hex()[:8], "stages": sorted(w.stages),
            "capacity": w.capacity, "windows_in_flight": len(w.in_flight), "windows_done": w.done,
            "last_seen": round(w.last_seen_wall, 3), "last_seen_s_ago": round(now_wall - w.last_seen_wall, 2),
            "joined": round(w.joined_at, 3), "bytes_sent": w.bytes_sent, "bytes_received": w.bytes_received}


def _int(value: Any) -> int:
    return value if is_int(value) else 0


def _ids(value: Any) -> list[str]:
    return [v for v in value if isinstance(v, str)][:4096] if isinstance(value, list) else []


def run_dispatch(settings: Settings, index: int, stop: StopFlag) -> None:
    Dispatcher(settings, stop).run()


# --- the head's supervisor: its plan, /healthz and per-worker series ----------------------------------------------
def status_path(settings: Settings) -> Path:
    return runtime_dir(settings) / STATUS_FILE


def read_status(settings: Settings) -> dict[str, Any] | None:
    """The dispatch process's latest status, or None when there is none or it is stale (a dispatcher that stopped
    writing for several heartbeats)."""
    try:
        status = json.loads(status_path(settings).read_text())
    except (OSError, ValueError):
        return None
    if time.time() - status.get("as_of", 0) > max(10.0, 5 * settings.head.heartbeat_s):
        return None
    return status


class WorkerTableCollector:
    """Per-worker series from the dispatch process's worker table, at each scrape: only the workers connected now."""

    def __init__(self, settings: Settings) -> None:
        self.settings = settings

    def collect(self):
        from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily

        status = read_status(self.settings) or {}
        labels = ["worker", "host"]
        seen = GaugeMetricFamily("humanstyle_remote_worker_last_seen_timestamp_seconds",
                                 "Unix time the head last heard from a connected worker", labels=labels)
        flight = GaugeMetricFamily("humanstyle_remote_worker_windows_in_flight",
                                   "Items a connected worker holds", labels=labels)
        done = CounterMetricFamily("humanstyle_remote_worker_windows_done",
                                   "Items a connected worker returned since it joined", labels=labels)
        for w in status.get("workers", []):
            values = [f"{w['name']}/{w['id']}", w["host"]]
            seen.add_metric(values, w["last_seen"])
            flight.add_metric(values, w["windows_in_flight"])
            done.add_metric(values, w["windows_done"])
        return [seen, flight, done]


class HeadSupervisor(Supervisor):
    """The daemon with workers on other machines in place of its own detect and classify processes."""

    def __init__(self, settings: Settings) -> None:
        super().__init__(settings)  # plan_children gives a head its dispatcher in place of the model stages
        from humanstyle.daemon import metrics_server

        metrics_server.EXTRA_COLLECTORS.append(WorkerTableCollector(settings))

    def health(self, samples: list | None = None) -> dict:
        data = super().health(samples)
        status = read_status(self.settings)
        data["head"] = {"listen": self.settings.head.listen, "host": socket.gethostname()}
        if status is None:
            data["workers"], data["backlog_video_s"] = [], None
        else:
            data["workers"] = status["workers"]
            data["backlog_video_s"] = status["backlog_video_s"]
            data["queued"] = status["queued"]
        return data
