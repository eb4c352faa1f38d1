"""The index stage: the writer of videos, segments and patches.

It turns discovered files into video rows split into segments (stages/store/segments.py), claims segments with a lease
and hands them to the decoders (a bounded number at a time, so a folder of 50 videos never floods memory),
receives classified patches and writes each patch file and its row (the pairing stage follows those rows:
stages/pairing/stage.py), and records the verdicts people give pairs on the web page. It decides when a segment is
finished: the decoder's `video_end` says how many windows the segment had, each window's `window_done` says how
many patches to expect, and the segment is done once all of them arrived; a video is finished with its segments.

On one machine (`ingest.role = "all"`) one index does all of it. Across machines the coordinator's index
registers and finishes videos, and each ingest machine's index claims segments and writes their patches, all
through the shared catalog.

Recovery: every write is keyed (video fingerprint; video and segment; video, frame, person), so redoing a segment
after a crash, a restarted stage, a stall or on another machine never duplicates anything.
"""

from __future__ import annotations

import logging
import socket
import time
from dataclasses import dataclass, field
from pathlib import Path

from humanstyle.stages.counters import (
    BACKLOG_SECONDS,
    ERRORS,
    FILES_REJECTED,
    LEASES_TAKEN_OVER,
    MESSAGES_REJECTED,
    PAIRS_CURATED,
    SEGMENTS,
    VIDEO_SECONDS,
    VIDEOS,
    VIDEOS_UNFINISHED,
)
from humanstyle.stages.decode import probe_video, windows_in
from humanstyle.stages.handler import Handler, Outbox, Route
from humanstyle.stages.index.results import ResultWriter
from humanstyle.stages.records import (
    Classified,
    Discovered,
    Job,
    PairVerdict,
    Record,
    StageRestarted,
    VideoEnd,
    WindowDone,
)
from humanstyle.stages.settings import PipelineSettings
from humanstyle.stages.store.catalog import UNFINISHED, Video, open_catalog
from humanstyle.stages.store.segments import Segment, Segments
from humanstyle.stages.vocabulary import LABELS

log = logging.getLogger("humanstyle.index")
MAX_ATTEMPTS = 3
# A full, read-only or vanished data folder: OSError from file writes; and the catalog's own (Catalog.errors): from
# SQLite "database or disk is full", "attempt to write a readonly database", "disk I/O error", "database is locked";
# from PostgreSQL a server that restarted or cannot be reached.
WRITE_ERRORS = (OSError,)
WRITE_RETRY_MAX_S = 10.0
CLAIM_IDLE_S = 1.0  # after a claim that found nothing
PATCH_BATCH = 32  # classified patches written per catalog transaction (bench/README.md, "Pairing stage")


@dataclass
class SegmentProgress:
    """What has arrived for one segment this machine holds, whatever the order and however often it is replayed."""

    segment: Segment
    last_activity: float = field(default_factory=time.monotonic)
    end: VideoEnd | None = None  # the decoder's video_end
    expected: dict[int, int] = field(default_factory=dict)  # window index -> patches announced
    seen: dict[int, set] = field(default_factory=dict)  # window index -> {(frame, person)}

    def on_window_done(self, window_index: int, patches: int) -> None:
        self.expected[window_index] = patches
        self.last_activity = time.monotonic()

    def on_patch(self, window_index: int, frame_index: int, person_index: int) -> None:
        self.seen.setdefault(window_index, set()).add((frame_index, person_index))
        self.last_activity = time.monotonic()

    def on_end(self, end: VideoEnd) -> None:
        self.end = end
        self.last_activity = time.monotonic()

    @property
    def windows_done(self) -> int:
        return len(self.expected)

    @property
    def complete(self) -> bool:
        # Counted, not ranged: a window the decoder had to drop leaves a gap in the indices.
        if self.end is None or len(self.expected) < self.end.windows:
            return False
        return all(len(self.seen.get(w, ())) >= n for w, n in self.expected.items())


class IndexHandler(Handler):
    """Discovered files, classified patches, window and segment ends, restart notices and verdicts in; jobs out.

    Two duties, by `ingest.role`: registering (all, coordinator) turns discovered files into videos and their
    segments and finishes a video once its segments are; ingesting (all, ingest) claims segments, hands them to the
    decoders, writes what comes back and finishes each segment. Each tick claims, renews the leases it holds, redoes
    stalled segments and refreshes the gauges."""

    passes = ()

    def __init__(self, settings: PipelineSettings) -> None:
        self.settings = settings
        role = settings.ingest.role
        self.registers, self.ingests = role != "ingest", role != "coordinator"
        self.owner = settings.ingest.name or socket.gethostname()
        self.lease_s = settings.ingest.lease_s
        self.segment_windows = round(settings.ingest.segment_s / settings.decode.anchor_every_s)
        self.catalog = open_catalog(settings, role="index")
        self.segments = Segments(self.catalog)
        self.results = ResultWriter(settings, self.catalog)
        self.in_flight: dict[tuple[int, int], SegmentProgress] = {}
        self.out: Outbox | None = None
        self._every: dict[str, float] = {}
        self._idle_until = 0.0
        self.routes = {Discovered: Route(self.each(self.on_discovered)),
                       Classified: Route(self.in_transaction(self.on_result), batch=PATCH_BATCH),
                       WindowDone: Route(self.each(self.on_result)),
                       VideoEnd: Route(self.each(self.on_result)),
                       StageRestarted: Route(self.each(self.on_control)),
                       PairVerdict: Route(self.each(self.on_verdict))}

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
        # The segments this machine held before a restart go back to the claim at once (writes are idempotent);
        # videos queued before segments existed are split now.
        self.out = out
        self.guarded(lambda: self.results.recover())
        if self.ingests:
            self.guarded(lambda: self.segments.release(self.owner))
        if self.registers:
            self.guarded(self.segment_old_videos)

    def tick(self, out: Outbox) -> int:
        if self.ingests:
            self.guarded(self.dispatch)
            self.guarded(self.check_stalls)
            if self.due("renew", min(2.0, self.lease_s / 3)):
                self.guarded(self.renew)
        if self.registers:
            if self.due("finish", 1.0):
                self.guarded(self.finish_videos)
            if self.due("unsegmented", 10.0):  # a video whose registration failed halfway (storage down)
                self.guarded(self.segment_old_videos)
            if self.due("backlog", 5.0):
                self.publish_backlog()
        return 0

    def due(self, what: str, every_s: float) -> bool:
        now = time.monotonic()
        if now - self._every.get(what, 0.0) < every_s:
            return False
        self._every[what] = now
        return True

    def close(self) -> None:
        # A stopping machine gives its segments back at once rather than letting their leases run out.
        if self.ingests and self.in_flight:
            try:
                released = self.segments.release(self.owner)
                log.info("index: gave %d segment(s) back for another machine", released)
            except self.catalog.errors:
                self.catalog.rollback()
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
            count = self.register(video)
            log.info("queued video %d in %d segment%s: %s", video.id, count, "" if count == 1 else "s", found.path)

    def register(self, video: Video) -> int:
        """Split a queued video into segments by the length its container gives (one segment when it gives none:
        the decoder says what is there); with shared storage, upload it first so that every machine can read it."""
        windows = expected_windows(video.path, self.settings.decode.anchor_every_s)
        source = ""
        if not self.results.storage.is_local:
            source = video_object_name(video.fingerprint, video.path)
            if not self.results.storage.exists(source):
                self.results.storage.upload(Path(video.path), source)
        return self.segments.register(video.id, windows, self.segment_windows, source)

    def segment_old_videos(self) -> None:
        for video_id in self.segments.unsegmented():
            video = self.catalog.video(video_id)
            if video is not None:
                self.register(video)

    def publish_backlog(self) -> None:
        """Videos waiting or in progress per domain, and the seconds of video not ingested yet, as gauges (counters
        cannot show a backlog)."""
        try:
            counts = {(d, s): n for d, s, n in self.catalog.counts()["videos"]}
            backlog = self.segments.backlog_windows() * self.settings.decode.anchor_every_s
        except self.catalog.errors:  # a gauge can wait for the catalog to come back
            self.catalog.rollback()
            return
        for domain in self.settings.domains:
            for status in UNFINISHED:
                VIDEOS_UNFINISHED.labels(domain, status).set(counts.get((domain, status), 0))
        BACKLOG_SECONDS.set(backlog)

    def dispatch(self) -> None:
        """Claim segments while fewer than index.max_in_flight are held, and hand them to the decoders."""
        free = self.settings.index.max_in_flight - len(self.in_flight)
        if free <= 0 or self.out is None or time.monotonic() < self._idle_until:
            return
        claimed = self.segments.claim(self.owner, free, self.lease_s)
        # Nothing to claim: ask again in a second, not every tick (every idle machine asks the shared catalog).
        self._idle_until = 0.0 if claimed else time.monotonic() + CLAIM_IDLE_S
        for i, seg in enumerate(claimed):
            SEGMENTS.labels("claimed").inc()
            if seg.starts_video:
                VIDEOS.labels(seg.domain, "processing").inc()
            if seg.taken_over:
                LEASES_TAKEN_OVER.inc()
                log.warning("segment %d:%d: took it over, the lease of the machine holding it ran out", *seg.key)
            if seg.attempt > MAX_ATTEMPTS:
                log.error("segment %d:%d: giving up after %d attempts", *seg.key, seg.attempt - 1)
                self.segments.finish(self.owner, seg.key, "failed", "stalled", 0, 0.0)
                SEGMENTS.labels("failed").inc()
                continue
            job = Job(video_id=seg.video_id, attempt=seg.attempt, path=seg.path, source=seg.source,
                      domain=seg.domain, start_window=seg.start_window, end_window=seg.end_window)
            if not self.out.try_send(job):  # no decoder is ready: these go back, to be claimed again
                for rest in claimed[i:]:
                    self.segments.release(self.owner, rest.key, unused=True)
                self._idle_until = time.monotonic() + CLAIM_IDLE_S
                return
            self.in_flight[seg.key] = SegmentProgress(seg)
            log.info("segment %d:%d (windows %d-%s): decoding (attempt %d)", *seg.key, seg.start_window,
                     seg.end_window - 1 if seg.end_window else "end", seg.attempt)

    def renew(self) -> None:
        """Extend the leases held (with each segment's windows done, for the status page); a segment whose lease
        ran out and went to another machine is dropped here: that machine finishes it."""
        progress = {key: p.windows_done for key, p in self.in_flight.items()}
        for key in self.segments.renew(self.owner, progress, self.lease_s):
            self.in_flight.pop(key, None)
            SEGMENTS.labels("lost").inc()
            log.warning("segment %d:%d: its lease ran out and another machine took it over", *key)

    def redo(self, key: tuple[int, int], why: str) -> None:
        """Give a segment back to the claim (this machine, or another, takes it again with the next attempt)."""
        if self.in_flight.pop(key, None) is None:
            return
        log.warning("segment %d:%d: redoing (%s)", *key, why)
        self.segments.release(self.owner, key)
        SEGMENTS.labels("released").inc()

    def check_stalls(self) -> None:
        timeout = self.settings.index.stall_timeout_s
        now = time.monotonic()
        for key, progress in list(self.in_flight.items()):
            if now - progress.last_activity > timeout:
                self.redo(key, f"no progress for {timeout:.0f} s")

    def on_control(self, notice: StageRestarted) -> None:
        for key in list(self.in_flight):
            self.redo(key, f"a {notice.stage} process was restarted")

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
    def progress_of(self, video_id: int, window_index: int) -> SegmentProgress | None:
        for progress in self.in_flight.values():
            if progress.segment.video_id == video_id and progress.segment.holds(window_index):
                return progress
        return None

    def on_result(self, record: Classified | WindowDone | VideoEnd) -> None:
        # A segment's video_end names its first window: the segments of a video do not overlap.
        window = record.start_window if isinstance(record, VideoEnd) else record.window_index
        progress = self.progress_of(record.video_id, window)
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
                progress.on_window_done(record.window_index, record.patches)
        elif progress:
            progress.on_end(record)
        if progress and progress.complete:
            self.finish_segment(progress)

    def finish_segment(self, progress: SegmentProgress) -> None:
        end, seg = progress.end, progress.segment
        self.in_flight.pop(seg.key, None)
        if not self.segments.finish(self.owner, seg.key, end.status, end.reason, end.windows, end.duration_s,
                                    end.frames_read):
            log.warning("segment %d:%d: finished here, but another machine holds it now", *seg.key)
            return
        SEGMENTS.labels(end.status).inc()
        log.info("segment %d:%d %s%s: %d windows", *seg.key, end.status, f" ({end.reason})" if end.reason else "",
                 end.windows)
        if self.registers:
            self.finish_videos()

    def finish_videos(self) -> None:
        for video in self.segments.finish_videos():
            VIDEOS.labels(video.domain, video.status).inc()
            if video.status == "failed" and video.reason:
                FILES_REJECTED.labels(video.reason).inc()
            if video.seconds:
                VIDEO_SECONDS.labels(video.domain).inc(video.seconds)
            log.info("video %d %s%s: %d windows", video.id, video.status,
                     f" ({video.reason})" if video.reason else "", video.windows)


def expected_windows(path: str, anchor_every_s: float) -> int:
    """Windows the container's duration promises; 0 when it gives none or cannot be read (the decoder then finds
    out, and says why it fails)."""
    try:
        return windows_in(probe_video(path).duration_s, anchor_every_s)
    except Exception:  # not a video, unreadable: one segment, decided by the decoder
        return 0


def video_object_name(fingerprint: str, path: str) -> str:
    """A video's name in shared storage: from its content (names from the watch folder are untrusted), keeping a
    known extension so that the decoder's sniffing and FFmpeg see the same kind of file."""
    suffix = Path(path).suffix.lower()
    suffix = suffix if suffix[1:].isalnum() and len(suffix) <= 6 else ""
    return f"videos/{fingerprint[:2]}/{fingerprint}{suffix}"
