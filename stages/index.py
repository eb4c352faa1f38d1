"""The index stage: the single writer of videos and patches.

It owns the catalog's videos and patches. It turns discovered files into video rows, hands videos to the decoders
(a bounded number at a time, so a folder of 50 videos never floods memory), receives classified patches and
writes each patch file and its row (the pairing stage follows those rows: stages/pairing.py), and records the
verdicts people give pairs on the web page. It also decides when a video is finished: the decoder's `video_end`
says how many windows there were, each window's `window_done` says how many patches to expect, and the video is
done once all of them arrived.

Recovery: every write is keyed (video fingerprint; video, frame, person), so redoing a video after a crash, a
restarted stage or a stall never duplicates anything.
"""

from __future__ import annotations

import logging
import time
from dataclasses import dataclass, field

from humanstyle.stages.catalog import UNFINISHED, Video, open_catalog
from humanstyle.stages.counters import (
    ERRORS,
    FILES_REJECTED,
    MESSAGES_REJECTED,
    PAIRS_CURATED,
    VIDEO_SECONDS,
    VIDEOS,
    VIDEOS_UNFINISHED,
)
from humanstyle.stages.handler import Outbox, Route
from humanstyle.stages.records import (
    Classified,
    Discovered,
    Job,
    PairVerdict,
    Record,
    StageRestarted,
    VideoEnd,
    VideoWaiting,
    WindowDone,
)
from humanstyle.stages.results import ResultWriter
from humanstyle.stages.settings import PipelineSettings
from humanstyle.stages.vocabulary import LABELS

log = logging.getLogger("humanstyle.index")
MAX_ATTEMPTS = 3
# A full, read-only or vanished data folder: OSError from file writes; and the catalog's own (Catalog.errors): from
# SQLite "database or disk is full", "attempt to write a readonly database", "disk I/O error", "database is locked";
# from PostgreSQL a server that restarted or cannot be reached.
WRITE_ERRORS = (OSError,)
WRITE_RETRY_MAX_S = 10.0
PATCH_BATCH = 32  # classified patches written per catalog transaction (bench/README.md, "Pairing stage")


@dataclass
class VideoProgress:
    """What has arrived for one video, whatever the order and however often it is replayed."""

    video: Video
    attempt: int
    last_activity: float = field(default_factory=time.monotonic)
    end: VideoEnd | None = None  # the decoder's video_end
    expected: dict[int, int] = field(default_factory=dict)  # window index -> patches announced
    seen: dict[int, set] = field(default_factory=dict)  # window index -> {(frame, person)}
    windows_expected: int = 0  # what the container promises (0: unknown)
    shown: tuple[int, int] = (0, 0)  # the progress last written to the catalog

    def on_window_done(self, done: WindowDone) -> None:
        self.expected[done.window_index] = done.patches
        self.windows_expected = done.windows_expected
        self.last_activity = time.monotonic()

    @property
    def progress(self) -> tuple[int, int]:
        """(windows done, windows expected) for the status page."""
        return len(self.expected), self.windows_expected

    def on_patch(self, window_index: int, frame_index: int, person_index: int) -> None:
        self.seen.setdefault(window_index, set()).add((frame_index, person_index))
        self.last_activity = time.monotonic()

    def on_end(self, end: VideoEnd) -> None:
        self.end = end
        self.last_activity = time.monotonic()

    @property
    def complete(self) -> bool:
        # Counted, not ranged: a window the decoder had to drop leaves a gap in the indices.
        if self.end is None or len(self.expected) < self.end.windows:
            return False
        return all(len(self.seen.get(w, ())) >= n for w, n in self.expected.items())


class IndexHandler:
    """Discovered files, classified patches, window and video ends, restart notices and verdicts in; jobs out.
    Each tick hands queued videos to the decoders, redoes stalled ones and refreshes the backlog gauge."""

    passes = ()

    def __init__(self, settings: PipelineSettings) -> None:
        self.settings = settings
        self.catalog = open_catalog(settings, role="index")
        self.results = ResultWriter(settings, self.catalog)
        self.in_flight: dict[int, VideoProgress] = {}
        self.out: Outbox | None = None
        self._backlog_at = 0.0
        self._progress_at = 0.0
        self.routes = {Discovered: Route(self.each(self.on_discovered)),
                       Classified: Route(self.in_transaction(self.on_result), batch=PATCH_BATCH),
                       WindowDone: Route(self.each(self.on_result)),
                       VideoEnd: Route(self.each(self.on_result)),
                       StageRestarted: Route(self.each(self.on_control)),
                       PairVerdict: Route(self.each(self.on_verdict)),
                       VideoWaiting: Route(self.each(self.on_waiting))}

    def each(self, handler):
        def handle(records: list, out: Outbox) -> None:
            for record in records:
                self.guarded(handler, record)
        return handle

    def in_transaction(self, handler):
        """The records of a batch written in one catalog transaction: one commit per batch, not per row. A record
        that fails for another reason than a refused write is logged and counted, and the others are kept."""
        def work(records: list) -> None:
            with self.catalog.transaction():
                for record in records:
                    try:
                        handler(record)
                    except (*WRITE_ERRORS, *self.catalog.errors):
                        raise
                    except Exception as exc:
                        ERRORS.labels("index", type(exc).__name__).inc()
                        log.exception("index: a %s record failed", record.TYPE)
            self.results.count_written()

        def handle(records: list, out: Outbox) -> None:
            self.guarded(work, records)
        return handle

    def start(self, out: Outbox) -> None:
        # Videos left 'processing' by a previous run are redone first by dispatch() (writes are idempotent).
        self.out = out
        self.guarded(lambda: self.results.recover())

    def tick(self, out: Outbox) -> int:
        self.guarded(self.dispatch)
        self.guarded(self.check_stalls)
        self.guarded(self.publish_progress)
        self.publish_backlog()
        return 0

    def close(self) -> None:
        self.catalog.close()

    def guarded(self, work, *args) -> bool:
        """Run one unit of work. When the data folder refuses a write (full, read-only, gone), keep the unit and
        retry it with back-off instead of crashing: a restarted index would replay the same write straight into a
        crash loop that stops the daemon, whereas waiting here lets upstream stages block on their full queues
        (back-pressure) until space or permission returns. Writes are keyed, so a unit that failed halfway is
        completed exactly once. Returns False when a stop request ends the wait: the unit is left to the next
        start (its video is still 'processing')."""
        delay, failed = 0.5, False
        while True:
            try:
                if failed:
                    self.results.recover()
                work(*args)
            except (*WRITE_ERRORS, *self.catalog.errors) as exc:
                self.catalog.rollback()
                self.results.written.clear()  # rolled back: written and counted again on the retry
                ERRORS.labels("index", "write_failed").inc()
                log.error("index: cannot write to %s or the catalog (%s); retrying in %.1f s",
                          self.settings.paths.data_dir, str(exc).strip(), delay)
                failed = True
                if self.out is not None and self.out.pause(delay):
                    return False
                delay = min(2 * delay, WRITE_RETRY_MAX_S)
                continue
            if failed:
                log.info("index: writes work again")
                for progress in self.in_flight.values():  # time spent waiting for the disk is not a stall
                    progress.last_activity = time.monotonic()
            return True

    # --- videos ------------------------------------------------------------------------------------------------
    def reject(self, reason: str, record: Record) -> None:
        """A well-formed record that cannot be used here: counted and logged, never fatal."""
        MESSAGES_REJECTED.labels("index", reason).inc()
        log.warning("index: rejected a %s record: %s", record.TYPE, reason)

    def on_discovered(self, found: Discovered) -> None:
        if found.domain not in self.settings.domains:
            log.warning("ignoring a file of unknown domain %r", found.domain)
            return
        status = "failed" if found.rejected else "queued"
        video, created = self.catalog.add_video(found.fingerprint, found.path, found.domain, found.size,
                                                found.mtime, status=status, reason=found.rejected)
        if not created:
            if video.path != found.path:
                # Counted where it was dropped. A copy in the other domain is not processed for it either: the same
                # footage on both sides would pair each person with themselves, which teaches a translator nothing.
                across = f" (in {found.domain}, the original in {video.domain})" if found.domain != video.domain else ""
                log.warning("%s is a copy of video %d, %s%s: not processed again", found.path, video.id, video.path,
                            across)
                VIDEOS.labels(found.domain, "duplicate").inc()
            return
        VIDEOS.labels(video.domain, status).inc()
        if found.rejected:
            FILES_REJECTED.labels(found.rejected).inc()
            log.warning("video %d (%s) failed: %s", video.id, found.path, found.rejected)
        else:
            log.info("queued video %d: %s", video.id, found.path)

    def publish_backlog(self, every_s: float = 5.0) -> None:
        """Videos waiting or in progress, per domain, as a gauge (counters cannot show a backlog)."""
        now = time.monotonic()
        if now - self._backlog_at < every_s:
            return
        self._backlog_at = now
        try:
            counts = {(d, s): n for d, s, n in self.catalog.counts()["videos"]}
        except self.catalog.errors:  # a gauge can wait for the catalog to come back
            self.catalog.rollback()
            return
        for domain in self.settings.domains:
            for status in UNFINISHED:
                VIDEOS_UNFINISHED.labels(domain, status).set(counts.get((domain, status), 0))

    def publish_progress(self, every_s: float = 2.0) -> None:
        """Each video's windows done of expected, into the catalog, for the status page and `humanstyle status`."""
        now = time.monotonic()
        if now - self._progress_at < every_s:
            return
        self._progress_at = now
        changed = [p for p in self.in_flight.values() if p.progress != p.shown]
        if not changed:
            return
        with self.catalog.transaction():
            for progress in changed:
                self.catalog.set_progress(progress.video.id, *progress.progress)
        for progress in changed:
            progress.shown = progress.progress

    def dispatch(self) -> None:
        """Hand queued videos to the decoders while fewer than watch.max_in_flight are being processed."""
        free = self.settings.watch.max_in_flight - len(self.in_flight)
        if free <= 0 or self.out is None:
            return
        redo = [v for v in self.catalog.videos_with_status("processing") if v.id not in self.in_flight]
        queued = self.catalog.videos_with_status("queued", limit=free)
        for video in (redo + queued)[:free]:
            attempt = video.attempt + 1
            job = Job(video_id=video.id, attempt=attempt, path=video.path, domain=video.domain, start_window=0)
            if not self.out.try_send(job):
                return  # no decoder is ready: try again on the next turn
            self.catalog.start_attempt(video.id, attempt)
            if video.status == "queued":
                VIDEOS.labels(video.domain, "processing").inc()
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

    def on_waiting(self, notice: VideoWaiting) -> None:
        progress = self.in_flight.get(notice.video_id)
        if progress is not None:
            progress.last_activity = time.monotonic()

    def on_control(self, notice: StageRestarted) -> None:
        for vid in list(self.in_flight):
            self.redo(vid, f"a {notice.stage} process was restarted")

    # --- curation ----------------------------------------------------------------------------------------------
    def on_verdict(self, verdict: PairVerdict) -> None:
        """A person's verdict from the web page. The catalog keeps it (numbered: Catalog.set_verdict); a bad pair
        leaves pairs.csv when the pairing stage sees the change, the trainer's datasets at its next refresh and
        every export."""
        if self.catalog.pair(verdict.pair_id) is None:
            self.reject("unknown_pair", verdict)
            return
        if self.catalog.set_verdict(verdict.pair_id, verdict.verdict):
            PAIRS_CURATED.labels(verdict.verdict).inc()
            log.info("pair %d marked %s", verdict.pair_id, verdict.verdict)

    # --- results -----------------------------------------------------------------------------------------------
    def on_result(self, record: Classified | WindowDone | VideoEnd) -> None:
        progress = self.in_flight.get(record.video_id)
        if isinstance(record, Classified):
            # Names of patch files come from the domain and the view: only known ones, and only for known videos.
            if record.domain not in self.settings.domains or record.view not in LABELS:
                self.reject("bad_field", record)
                return
            if progress is None and self.catalog.video(record.video_id) is None:
                self.reject("unknown_video", record)
                return
            self.results.write_patch(record)
            if progress:
                progress.on_patch(record.window_index, record.frame_index, record.person_index)
        elif isinstance(record, WindowDone):
            if progress:
                progress.on_window_done(record)
        elif progress:
            progress.on_end(record)
        if progress and progress.complete:
            end = progress.end
            self.finish(progress, end.status if end else "done", end.reason if end else "")

    def finish(self, progress: VideoProgress, status: str, reason: str) -> None:
        end = progress.end
        video = progress.video
        self.catalog.set_video_status(video.id, status, reason, windows=end.windows if end else None,
                                      frames_read=end.frames_read if end else None)
        self.in_flight.pop(video.id, None)
        VIDEOS.labels(video.domain, status).inc()
        if status == "failed" and reason:
            FILES_REJECTED.labels(reason).inc()
        if end and end.duration_s:
            VIDEO_SECONDS.labels(video.domain).inc(end.duration_s)
        log.info("video %d %s%s: %d windows", video.id, status, f" ({reason})" if reason else "",
                 end.windows if end else 0)
