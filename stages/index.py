"""The index stage: the single writer of results.

It owns the catalog. It turns discovered files into video rows, hands videos to the decoders (a bounded number at
a time, so a folder of 50 videos never floods memory), receives classified patches, writes each patch file and
its row, feeds the pairing index, records pairs (catalog + pairs.csv) and announces them to the trainer. It also
decides when a video is finished: the decoder's `video_end` says how many windows there were, each window's
`window_done` says how many patches to expect, and the video is done once all of them arrived.

Recovery: every write is keyed (video fingerprint; video, frame, person; the two patches of a pair), so redoing a
video after a crash, a restarted stage or a stall never duplicates anything.
"""

from __future__ import annotations

import contextlib
import logging
import sqlite3
import time
from dataclasses import dataclass, field

import zmq

from daemon import metrics, wire
from daemon.catalog import UNFINISHED, Catalog, Video
from daemon.config import Settings
from daemon.fabric import Fabric, Receiver, Sender, StopFlag
from daemon.paths import catalog_path
from stages.pair import VIEWS as PAIRED_VIEWS
from stages.results import REJECTED, ResultWriter

log = logging.getLogger("humanstyle.index")
MAX_ATTEMPTS = 3
# A full, read-only or vanished data folder: OSError from file writes, OperationalError from SQLite ("database or
# disk is full", "attempt to write a readonly database", "disk I/O error", "database is locked").
WRITE_ERRORS = (OSError, sqlite3.OperationalError)
WRITE_RETRY_MAX_S = 10.0
KNOWN_VIEWS = (*PAIRED_VIEWS, REJECTED)


@dataclass
class VideoProgress:
    """What has arrived for one video, whatever the order and however often it is replayed."""

    video: Video
    attempt: int
    last_activity: float = field(default_factory=time.monotonic)
    end: dict | None = None  # the decoder's video_end fields
    expected: dict[int, int] = field(default_factory=dict)  # window index -> patches announced
    seen: dict[int, set] = field(default_factory=dict)  # window index -> {(frame, person)}

    def on_window_done(self, window_index: int, patches: int) -> None:
        self.expected[window_index] = patches
        self.last_activity = time.monotonic()

    def on_patch(self, window_index: int, frame_index: int, person_index: int) -> None:
        self.seen.setdefault(window_index, set()).add((frame_index, person_index))
        self.last_activity = time.monotonic()

    def on_end(self, fields: dict) -> None:
        self.end = fields
        self.last_activity = time.monotonic()

    @property
    def complete(self) -> bool:
        # Counted, not ranged: a window the decoder had to drop leaves a gap in the indices.
        if self.end is None or len(self.expected) < self.end["windows"]:
            return False
        return all(len(self.seen.get(w, ())) >= n for w, n in self.expected.items())


class IndexStage:
    def __init__(self, settings: Settings, fab: Fabric) -> None:
        self.settings = settings
        self.fab = fab
        self.catalog = Catalog(catalog_path(settings))
        self.results = ResultWriter(settings, self.catalog)
        self.in_flight: dict[int, VideoProgress] = {}
        self.stop: StopFlag | None = None
        self._backlog_at = 0.0
        self.discovered: Receiver = fab.receiver("discovered", ["discovered"], bind=True)
        self.classified: Receiver = fab.receiver("classified", ["classified"], bind=True)
        self.control: Receiver = fab.receiver("control", ["control"], bind=True)
        self.jobs: Sender = fab.sender("jobs", ["jobs"], bind=True)
        self.events: Sender = fab.publisher("events")
        self.poller = zmq.Poller()
        for r in (self.discovered, self.classified, self.control):
            self.poller.register(r.sock, zmq.POLLIN)
        self.handlers = {self.discovered.sock: (self.discovered, self.on_discovered),
                         self.classified.sock: (self.classified, self.on_result),
                         self.control.sock: (self.control, self.on_control)}

    # --- the loop ----------------------------------------------------------------------------------------------
    def run(self, stop: StopFlag) -> None:
        self.stop = stop
        # Videos left 'processing' by a previous run are redone first by dispatch() (writes are idempotent).
        self.guarded(lambda: self.results.recover())
        self.fab.mark_ready()
        quiet_since = None
        while True:
            handled = self.step(timeout_ms=200)
            if stop.set:
                # Drain: keep taking results while upstream stages finish their last units, then leave.
                quiet_since = quiet_since if handled == 0 and quiet_since else time.monotonic()
                if handled == 0 and time.monotonic() - quiet_since > 1.0:
                    break
                continue
            self.guarded(self.dispatch)
            self.guarded(self.check_stalls)
            self.publish_backlog()

    def step(self, timeout_ms: int) -> int:
        handled = 0
        for sock, _ in self.poller.poll(timeout_ms):
            receiver, handler = self.handlers[sock]
            while (msg := receiver.recv(timeout_ms=0)) is not None:
                started = time.monotonic()
                self.guarded(handler, msg)
                metrics.mark_work_done("index", started)
                handled += 1
                if handled % 64 == 0:
                    break
        return handled

    def guarded(self, work, *args) -> bool:
        """Run one unit of work. When the data folder refuses a write (full, read-only, gone), keep the unit and
        retry it with back-off instead of crashing: a restarted index would replay the same write straight into a
        crash loop that stops the daemon, whereas waiting here lets upstream stages block on their full queues
        (back-pressure) until space or permission returns. Before each retry the result writer is rebuilt as at a
        restart (pairing index reloaded from disk, unindexed patches replayed, pairs.csv rewritten from the
        catalog), so a unit that failed halfway is completed exactly once. Returns False when a stop request
        ends the wait: the unit is left to the next start (its video is still 'processing')."""
        delay, failed = 0.5, False
        while True:
            try:
                if failed:
                    self.results.pairing.close()
                    self.results = ResultWriter(self.settings, self.catalog)
                    self.results.recover()
                work(*args)
            except WRITE_ERRORS as exc:
                if self.catalog.db.in_transaction:
                    with contextlib.suppress(sqlite3.Error):
                        self.catalog.db.execute("ROLLBACK")
                metrics.ERRORS.labels("index", "write_failed").inc()
                log.error("index: cannot write to %s (%s); retrying in %.1f s", self.settings.paths.data_dir, exc,
                          delay)
                failed = True
                if self.stop is not None and self.stop.event.wait(delay):
                    return False
                delay = min(2 * delay, WRITE_RETRY_MAX_S)
                continue
            if failed:
                log.info("index: writes work again")
                for progress in self.in_flight.values():  # time spent waiting for the disk is not a stall
                    progress.last_activity = time.monotonic()
            return True

    # --- videos ------------------------------------------------------------------------------------------------
    def reject(self, reason: str, msg: wire.Message) -> None:
        """A well-formed message that cannot be used here: counted and logged, never fatal."""
        metrics.MESSAGES_REJECTED.labels("index", reason).inc()
        log.warning("index: rejected a %s message: %s", msg.type, reason)

    def on_discovered(self, msg: wire.Message) -> None:
        if msg.type != "discovered":
            self.reject("unexpected_type", msg)
            return
        f = msg.fields
        if f["domain"] not in self.settings.domains:
            log.warning("ignoring a file of unknown domain %r", f["domain"])
            return
        status = "failed" if f["rejected"] else "queued"
        video, created = self.catalog.add_video(f["fingerprint"], f["path"], f["domain"], f["size"], f["mtime"],
                                                status=status, reason=f["rejected"])
        if not created:
            if video.path != f["path"]:
                log.info("%s is a copy of video %d (%s): not processed again", f["path"], video.id, video.path)
                metrics.VIDEOS.labels(video.domain, "duplicate").inc()
            return
        metrics.VIDEOS.labels(video.domain, status).inc()
        if f["rejected"]:
            metrics.FILES_REJECTED.labels(f["rejected"]).inc()
            log.warning("video %d (%s) failed: %s", video.id, f["path"], f["rejected"])
        else:
            log.info("queued video %d: %s", video.id, f["path"])

    def publish_backlog(self, every_s: float = 5.0) -> None:
        """Videos waiting or in progress, per domain, as a gauge (counters cannot show a backlog)."""
        now = time.monotonic()
        if now - self._backlog_at < every_s:
            return
        self._backlog_at = now
        counts = {(d, s): n for d, s, n in self.catalog.counts()["videos"]}
        for domain in self.settings.domains:
            for status in UNFINISHED:
                metrics.VIDEOS_UNFINISHED.labels(domain, status).set(counts.get((domain, status), 0))

    def dispatch(self) -> None:
        """Hand queued videos to the decoders while fewer than watch.max_in_flight are being processed."""
        free = self.settings.watch.max_in_flight - len(self.in_flight)
        if free <= 0:
            return
        redo = [v for v in self.catalog.videos_with_status("processing") if v.id not in self.in_flight]
        queued = self.catalog.videos_with_status("queued", limit=free)
        for video in (redo + queued)[:free]:
            attempt = video.attempt + 1
            job = wire.make("job", video_id=video.id, attempt=attempt, path=video.path, domain=video.domain,
                            start_window=0)
            if not self.jobs.try_send(job):
                return  # no decoder is ready: try again on the next turn
            self.catalog.set_video_status(video.id, "processing", attempt=attempt)
            if video.status == "queued":
                metrics.VIDEOS.labels(video.domain, "processing").inc()
            self.in_flight[video.id] = VideoProgress(video, attempt)
            log.info("video %d: decoding (attempt %d)", video.id, attempt)

    def redo(self, video_id: int, why: str) -> None:
        progress = self.in_flight.pop(video_id, None)
        if progress is None:
            return
        if progress.attempt >= MAX_ATTEMPTS:
            log.error("video %d: giving up after %d attempts (%s)", video_id, progress.attempt, why)
            self.finish(progress, "failed", "stalled")
            return
        log.warning("video %d: redoing (%s)", video_id, why)
        # status stays 'processing': dispatch() picks it up again before new videos

    def check_stalls(self) -> None:
        timeout = self.settings.watch.stall_timeout_s
        now = time.monotonic()
        for vid, progress in list(self.in_flight.items()):
            if now - progress.last_activity > timeout:
                self.redo(vid, f"no progress for {timeout:.0f} s")

    def on_control(self, msg: wire.Message) -> None:
        if msg.type != "stage_restarted":
            self.reject("unexpected_type", msg)
            return
        for vid in list(self.in_flight):
            self.redo(vid, f"a {msg['stage']} process was restarted")

    # --- results -----------------------------------------------------------------------------------------------
    def on_result(self, msg: wire.Message) -> None:
        f = msg.fields
        progress = self.in_flight.get(f["video_id"])
        if msg.type == "classified":
            # Names of patch files come from the domain and the view: only known ones, and only for known videos.
            if f["domain"] not in self.settings.domains or f["view"] not in KNOWN_VIEWS:
                self.reject("bad_field", msg)
                return
            if progress is None and self.catalog.video(f["video_id"]) is None:
                self.reject("unknown_video", msg)
                return
            self.results.write_patch(msg)
            if progress:
                progress.on_patch(f["window_index"], f["frame_index"], f["person_index"])
        elif msg.type == "window_done":
            if progress:
                progress.on_window_done(f["window_index"], f["patches"])
        elif msg.type == "video_end":
            if progress:
                progress.on_end(f)
        else:
            self.reject("unexpected_type", msg)
            return
        new_pairs = self.results.flush_pairs()
        if new_pairs:
            self.events.send(wire.make("pairs_appended", count=new_pairs, total=self.catalog.pair_count()))
        if progress and progress.complete:
            end = progress.end or {}
            self.finish(progress, end.get("status", "done"), end.get("reason", ""))

    def finish(self, progress: VideoProgress, status: str, reason: str) -> None:
        end = progress.end or {}
        video = progress.video
        self.catalog.set_video_status(video.id, status, reason, windows=end.get("windows"),
                                      frames_read=end.get("frames_read"))
        self.in_flight.pop(video.id, None)
        metrics.VIDEOS.labels(video.domain, status).inc()
        if status == "failed" and reason:
            metrics.FILES_REJECTED.labels(reason).inc()
        if end.get("duration_s"):
            metrics.VIDEO_SECONDS.labels(video.domain).inc(end["duration_s"])
        log.info("video %d %s%s: %d windows", video.id, status, f" ({reason})" if reason else "",
                 end.get("windows", 0))


def run(settings: Settings, index: int, stop: StopFlag) -> None:
    fab = Fabric(settings, "index", stop)
    try:
        IndexStage(settings, fab).run(stop)
    finally:
        fab.close()
