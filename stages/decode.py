"""Sparse, windowed decoding of one video file: per second, an anchor frame and a burst of earlier frames.

The functions and classes above the stage loop (at the end of the file) are pure of sockets, catalog and config:
they take plain arguments, so tests and one-shot tools call them directly.

Decisions
- What is trusted: the presentation times of the frames that really decode. Container headers lie in practice
  (an AVI that stores each interlaced field as its own chunk claims twice the frames at twice the rate; a WebM
  written live has no duration; Matroska frame counts are estimates; phones write variable frame rates), while the
  timestamps of decoded frames are what a player shows. Times are counted from the first decoded frame.
  A timestamp OpenCV cannot give (it reports 0 for "unknown", as AVI demuxing does for the last frames) or one
  that does not advance is replaced by the previous frame's time plus the typical gap (`_Clock`).
- Windows are seconds of that time: window w holds the frames with w*T <= t < (w+1)*T (T = anchor_every_s). Its
  anchor is its last frame, so a clip gives one window per second of real time whatever its frame rate does
  (a variable-frame-rate clip too), and the last, partial second forms one short window like any other. Keys
  stay (window index, frame index) and both are a pure function of the file, so a restart with `start_window`
  (the earlier windows only grab()bed, which still yields their timestamps) redoes exactly the same windows.
- A frame must be retrieve()d before the next grab(), i.e. before it is known to be the last of its second.
  So a frame is retrieved when it is one of the window's planned burst frames, when the next frame is expected
  past the window's end (t + ANCHOR_MARGIN typical gaps >= end), or when it lies in the container's last
  second (and everywhere when the container gives no duration), where the file may end at any frame. On a
  constant-rate clip that retrieves exactly the anchor and the burst, as a frame-count grid did. If a timestamp
  jump skips past the window's end anyway, the window's last retrieved frame anchors it.
- The burst: `burst_frames` frames spread evenly between the previous anchor and this one (see `plan_window`),
  planned when the window's first frame arrives from how many frames the window should hold: the time left
  to its end (or to the container's end, for the tail) divided by the typical gap, the median of the last
  GAP_HISTORY gaps. A window that ends sooner than planned keeps the burst frames it reached.
- Frame rate (`VideoInfo.fps`, the first typical gap): the container's rate unless the first FPS_SAMPLE_FRAMES
  frames' timestamps (grabbed, not converted, during the probe: cheap) give a rate that differs from it by
  more than RATE_TOLERANCE, or the container rate is implausible (<= 0 or > MAX_TRUSTED_FPS, a timebase
  artefact); then the timestamps' rate; DEFAULT_FPS when neither exists. `VideoInfo.fps_source` says which.
- End and status: the container's duration (`VideoInfo.duration_s`: its frame count over its own rate, which
  agree even when both are doubled) is only a hint of where frames end. "partial" with reason "truncated"
  when the decoded frames end (last timestamp plus one gap) more than TRUNCATION_TOLERANCE_FRAMES typical
  gaps before it: OpenCV reports a read error exactly like the end of the file, so a file whose frames stop
  early is recognised by this, and a file without a duration can never be called truncated. A window whose
  last frame was not retrieved when the file ended is dropped. "decode_error" when a grabbed frame could not
  be retrieved (that window is dropped, decoding goes on); "stopped" when the caller closed the decoder first.
- Rotation: OpenCV's FFmpeg backend applies display-matrix rotation (CAP_PROP_ORIENTATION_AUTO, set
  explicitly here); frames, width and height are delivered upright and `rotation` reports the metadata.
- Files are sniffed before FFmpeg sees them: only known video container signatures are opened. FFmpeg
  would otherwise happily "decode" a .txt file (its tty demuxer renders text) or a JPEG photo. The path is
  passed as an absolute path with the FFmpeg backend forced, so no name is read as a URL, a protocol or
  an image-sequence pattern.
"""

from __future__ import annotations

import logging
import math
import os
import stat
import struct
import time
from collections import deque
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

import cv2
import numpy as np

from humanstyle.stages.counters import DECODE_SECONDS, ERRORS, FRAMES_DECODED, FRAMES_GRABBED, WINDOWS_SENT
from humanstyle.stages.handler import Handler, Outbox, Route, Stopping
from humanstyle.stages.records import Job, VideoEnd, Window
from humanstyle.stages.settings import DecodeSettings
from humanstyle.stages.store.storage import Storage, StorageError
from humanstyle.stages.vocabulary import NOT_A_VIDEO_REASONS

log = logging.getLogger("humanstyle.decode")

DEFAULT_FPS = 24.0
MAX_TRUSTED_FPS = 480.0  # above this a container rate is a timebase artefact (e.g. 1000 or 90000)
RATE_TOLERANCE = 0.25  # relative difference between container and timestamp rates beyond which the header is wrong
TRUNCATION_TOLERANCE_FRAMES = 2  # estimated durations (Matroska, WebM) may be off by a frame or two
FPS_SAMPLE_FRAMES = 10  # frames whose timestamps the probe compares with the container rate (grab-only)
GAP_HISTORY = 15  # gaps in the running median that is the "typical gap"
ANCHOR_MARGIN = 1.5  # typical gaps: a frame closer than this to its window's end may be the window's last
TIME_EPS_S = 1e-4  # timestamps are milliseconds computed in floating point; boundaries compare with this slack

# Stable snake_case codes, meant as metric label values (NOT_A_VIDEO_REASONS: stages.vocabulary).
PARTIAL_REASONS = ("truncated", "decode_error", "stopped")


class NotAVideo(Exception):
    """The file cannot be decoded at all; `reason` is one of NOT_A_VIDEO_REASONS."""

    def __init__(self, reason: str, detail: str = "") -> None:
        assert reason in NOT_A_VIDEO_REASONS, reason
        super().__init__(f"{reason}: {detail}" if detail else reason)
        self.reason = reason
        self.detail = detail


@dataclass(frozen=True)
class VideoInfo:
    fps: float  # resolved rate (see the module docstring), always > 0
    frame_count: int  # container's count, 0 when unknown; a hint only
    width: int  # of decoded (upright) frames
    height: int
    rotation: int  # display rotation metadata in degrees (0, 90, 180, 270), already applied
    duration_s: float | None  # the container's duration (frame count over its own rate); None when unknown
    fps_source: str  # "container" | "timestamps" | "default"
    container: str  # sniffed family: "mp4", "avi", "matroska", ...


@dataclass(frozen=True)
class WindowPlan:
    anchor_index: int
    burst_indices: tuple[int, ...]

    @property
    def frame_indices(self) -> tuple[int, ...]:
        return (*self.burst_indices, self.anchor_index)


@dataclass
class DecodedWindow:
    window_index: int
    anchor_index: int
    frame_indices: tuple[int, ...]  # burst frames in order, anchor last
    timestamps_s: tuple[float, ...]  # presentation time of each frame, seconds since the first frame
    frames: list[np.ndarray]  # uint8 HxWx3 BGR, same order

    @property
    def anchor(self) -> np.ndarray:
        return self.frames[-1]

    @property
    def burst(self) -> list[np.ndarray]:
        return self.frames[:-1]


@dataclass(frozen=True)
class DecodeSummary:
    status: str  # "done" | "partial"
    reason: str | None  # None when done, else one of PARTIAL_REASONS
    frames_read: int  # frames grabbed, including those skipped for start_window
    windows: int  # windows yielded
    fps_used: float
    windows_dropped: int = 0  # windows lost to retrieve failures or a cut
    frames_own: int = 0  # frames grabbed from start_window on: the segment's share of the video


def plan_window(first_index: int, n: int, burst_frames: int = 4) -> WindowPlan:
    """The frames a window of n frames starting at frame `first_index` uses.

    Its last frame is the anchor. The burst frames split the gap between the previous window's anchor
    (first_index - 1) and this one into burst_frames + 1 equal steps (rounded half up), so across windows all
    sampled frames are evenly spaced: n = 24 -> offsets 4, 9, 13, 18 and anchor 23. With fewer than
    burst_frames earlier frames, all of them are used.
    """
    if first_index < 0 or n < 1 or burst_frames < 0:
        raise ValueError(f"bad window: first_index={first_index} n={n} burst={burst_frames}")
    if n - 1 <= burst_frames:
        offsets: list[int] = list(range(n - 1))
    else:
        b1 = burst_frames + 1
        # round(-1 + k*n/b1) half up, in integers: floor((2kn - b1) / 2b1)
        offsets = [(2 * k * n - b1) // (2 * b1) for k in range(1, burst_frames + 1)]
    return WindowPlan(first_index + n - 1, tuple(first_index + o for o in offsets))


def _plausible(fps: float) -> bool:
    return math.isfinite(fps) and 0 < fps <= MAX_TRUSTED_FPS


def resolve_fps(container_fps: float, timestamps_ms: list[float]) -> tuple[float, str]:
    """(fps, source): the container rate if plausible and not contradicted by the frame timestamps (more than
    RATE_TOLERANCE apart), else the timestamps' rate (from their median gap), else DEFAULT_FPS."""
    gaps = sorted(b - a for a, b in zip(timestamps_ms, timestamps_ms[1:], strict=False) if b > a)
    measured = 1000.0 / gaps[len(gaps) // 2] if gaps else 0.0
    if _plausible(container_fps) and (not _plausible(measured)
                                      or abs(measured / container_fps - 1) <= RATE_TOLERANCE):
        return float(container_fps), "container"
    if _plausible(measured):
        return measured, "timestamps"
    return DEFAULT_FPS, "default"


# --- sniffing and opening -------------------------------------------------------------------------

_BMFF_BOXES = {b"ftyp", b"moov", b"mdat", b"free", b"skip", b"wide", b"pnot"}


def sniff_container(path: str | os.PathLike[str]) -> str:
    """The container family from the file's first bytes, or NotAVideo (not_found, empty_file, io_error,
    not_a_video). Raw elementary streams, images and audio-only formats are deliberately not accepted."""
    try:
        st = os.stat(path)
        if not stat.S_ISREG(st.st_mode):  # a FIFO would block open() forever
            raise NotAVideo("not_a_video", "not a regular file")
        if st.st_size == 0:
            raise NotAVideo("empty_file")
        with open(path, "rb") as f:
            head = f.read(400)
    except FileNotFoundError as e:
        raise NotAVideo("not_found") from e
    except OSError as e:
        raise NotAVideo("io_error", type(e).__name__) from e
    if head[4:8] in _BMFF_BOXES:
        return "mp4"
    if head[:4] == b"RIFF" and head[8:12] in (b"AVI ", b"AVIX"):
        return "avi"
    if head[:4] == b"\x1a\x45\xdf\xa3":
        return "matroska"
    if head[:3] == b"FLV":
        return "flv"
    if head[:4] in (b"\x00\x00\x01\xba", b"\x00\x00\x01\xb3"):
        return "mpeg"
    if head[:8] == b"\x30\x26\xb2\x75\x8e\x66\xcf\x11":
        return "asf"
    if head[:4] == b"OggS":
        return "ogg"
    for first, stride in ((0, 188), (4, 192)):  # MPEG-TS, and M2TS with its 4-byte timecode prefix
        if len(head) > first + 2 * stride and all(head[first + i * stride] == 0x47 for i in range(3)):
            return "mpegts"
    raise NotAVideo("not_a_video", "no known video container signature")


def _mp4_runs_past_eof(path: str | os.PathLike[str]) -> bool:
    """True when the top-level box chain is well formed but its last box ends beyond the file: the
    signature of an mp4 cut short (usually the index, written last, is missing)."""
    size = os.path.getsize(path)
    with open(path, "rb") as f:
        off = 0
        while off + 8 <= size:
            f.seek(off)
            header = f.read(16)
            box_size, kind = struct.unpack(">I4s", header[:8])
            if not all(32 <= c < 127 or c == 0xA9 for c in kind):
                return False  # noise, not a cut
            if box_size == 1 and len(header) == 16:
                box_size = struct.unpack(">Q", header[8:16])[0]
            elif box_size == 0:
                return False  # "extends to end of file"
            if box_size < 8:
                return False
            off += box_size
        return off > size


def _open(path: str | os.PathLike[str], container: str) -> cv2.VideoCapture:
    # FFmpeg picks its own decoding threads (cv2.setNumThreads does not limit them): on 1080p H.264 they cost no
    # CPU per frame and nearly double the speed on 2 cores (bench/README.md), so they are left to it.
    cap = cv2.VideoCapture(os.path.abspath(path), cv2.CAP_FFMPEG)
    if not cap.isOpened():
        cap.release()
        if container == "mp4" and _mp4_runs_past_eof(path):
            raise NotAVideo("truncated", "mp4 box chain ends past end of file")
        raise NotAVideo("unreadable", f"FFmpeg cannot open this {container} file")
    cap.set(cv2.CAP_PROP_ORIENTATION_AUTO, 1)
    return cap


def _pos_ms(cap: cv2.VideoCapture) -> float:
    ms = cap.get(cv2.CAP_PROP_POS_MSEC)
    return ms if math.isfinite(ms) and ms >= 0 else -1.0


def probe_video(path: str | os.PathLike[str]) -> VideoInfo:
    """Open the file, decode its first frame and report what decoding will use; raises NotAVideo.

    The next FPS_SAMPLE_FRAMES - 1 frames are only grabbed, for their timestamps (see `resolve_fps`)."""
    container = sniff_container(path)
    cap = _open(path, container)
    try:
        if not cap.grab():
            raise NotAVideo("no_frames", "first frame does not decode")
        stamps = [_pos_ms(cap)]
        ok, frame = cap.retrieve()
        if not ok or frame is None or frame.size == 0:
            raise NotAVideo("no_frames", "first frame does not convert")
        while len(stamps) < FPS_SAMPLE_FRAMES and cap.grab():
            stamps.append(_pos_ms(cap))
        container_fps = cap.get(cv2.CAP_PROP_FPS)
        fps, source = resolve_fps(container_fps, [s for s in stamps if s >= 0])
        count = cap.get(cv2.CAP_PROP_FRAME_COUNT)
        frame_count = int(count) if math.isfinite(count) and count > 0 else 0
        rotation = int(cap.get(cv2.CAP_PROP_ORIENTATION_META) or 0) % 360
    finally:
        cap.release()
    h, w = frame.shape[:2]
    # The container's own duration: its count over its own rate (they lie together, e.g. per field, or not at all).
    duration = frame_count / (container_fps if _plausible(container_fps) else fps) if frame_count else None
    return VideoInfo(fps, frame_count, w, h, rotation, duration, source, container)


# --- decoding -------------------------------------------------------------------------------------


def windows_in(duration_s: float | None, anchor_every_s: float) -> int:
    """Windows a duration holds (the last, partial second is a window too); 0 for no duration."""
    return max(1, math.ceil(duration_s / anchor_every_s - TIME_EPS_S)) if duration_s else 0


def _fit(frame: np.ndarray, max_side: int | None) -> np.ndarray:
    """Downsize so the longer side is max_side (INTER_AREA: averages, no aliasing); never upscale."""
    h, w = frame.shape[:2]
    if not max_side or max(h, w) <= max_side:
        return frame
    scale = max_side / max(h, w)
    size = (max(1, round(w * scale)), max(1, round(h * scale)))
    return cv2.resize(frame, size, interpolation=cv2.INTER_AREA)


class _Clock:
    """Turns OpenCV's per-frame positions into increasing times (seconds since the first frame) and keeps the
    typical gap between frames: the median of the last GAP_HISTORY real gaps, 1/fps until there are any."""

    def __init__(self, fps: float) -> None:
        self.gap = 1.0 / fps
        self.last = -1.0  # time of the latest frame; -1 before the first
        self._origin = 0.0
        self._gaps: deque[float] = deque(maxlen=GAP_HISTORY)

    def stamp(self, pos_ms: float) -> float:
        if self.last < 0:
            self._origin = max(pos_ms, 0.0)
            self.last = 0.0
            return 0.0
        t = (pos_ms - self._origin) / 1000.0 if pos_ms >= 0 else -1.0
        if t > self.last:
            self._gaps.append(t - self.last)
            self.gap = sorted(self._gaps)[len(self._gaps) // 2]
        else:  # unknown (OpenCV says 0) or not advancing: assume the usual spacing
            t = self.last + self.gap
        self.last = t
        return t


@dataclass
class _Window:
    index: int
    end_s: float  # where the next window starts
    burst: frozenset[int]  # planned burst frame indices
    last_index: int = -1  # latest frame grabbed in this window
    held: dict[int, tuple[float, np.ndarray]] = field(default_factory=dict)  # retrieved burst frames
    latest: tuple[int, float, np.ndarray] | None = None  # latest retrieved frame: the anchor once the window ends
    latest_may_end: bool = False  # latest was retrieved because the window or the file was expected to end there
    failed: bool = False  # a retrieve failed: the window is dropped


class WindowDecoder:
    """Iterate to get DecodedWindow objects; afterwards `summary` holds the DecodeSummary.

    Use as a context manager (or call close()) to release the capture when stopping early; the summary of
    a decoder closed before its end is partial/"stopped".
    """

    def __init__(self, path: str | os.PathLike[str], anchor_every_s: float = 1.0, burst_frames: int = 4,
                 max_side: int | None = None, start_window: int = 0, end_window: int = 0) -> None:
        if anchor_every_s <= 0 or burst_frames < 0 or start_window < 0 or (max_side or 0) < 0 or end_window < 0:
            raise ValueError("need anchor_every_s > 0, burst_frames >= 0, start_window >= 0, max_side >= 0, "
                             "end_window >= 0")
        self.path = Path(path)
        self.info = probe_video(path)
        self.anchor_every_s = anchor_every_s
        self.burst_frames = burst_frames
        self.max_side = max_side
        self.start_window = start_window
        self.end_window = end_window  # exclusive; 0 = to the end of the file
        self.summary: DecodeSummary | None = None
        self._frames_read = 0
        self._frames_skipped = 0  # grabbed outside the segment (before start_window, at end_window)
        self._windows = 0
        self._cap: cv2.VideoCapture | None = _open(path, self.info.container)
        self._gen = self._run()

    def __iter__(self) -> Iterator[DecodedWindow]:
        return self._gen

    def __enter__(self) -> WindowDecoder:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def close(self) -> None:
        self._gen.close()
        self._release()
        if self.summary is None:
            self.summary = DecodeSummary("partial", "stopped", self._frames_read, self._windows, self.info.fps)

    def _release(self) -> None:
        if self._cap is not None:
            self._cap.release()
            self._cap = None

    @property
    def expected_windows(self) -> int | None:
        """Windows the container's duration promises (for progress bars); None when it gives none."""
        return windows_in(self.info.duration_s, self.anchor_every_s) or None

    def _start_window(self, w: int, first_index: int, t: float, gap: float) -> _Window:
        end = (w + 1) * self.anchor_every_s
        planned_end = end
        hint = self.info.duration_s
        if hint and t < hint - TIME_EPS_S:
            planned_end = min(end, hint)  # the tail: plan the burst over what the container says is left
        n = max(1, math.floor((planned_end - t) / gap + 0.5))
        plan = plan_window(first_index, n, self.burst_frames)
        return _Window(w, end, frozenset(plan.burst_indices))

    def _finish(self, win: _Window, at_end: bool) -> DecodedWindow | None:
        """The window's DecodedWindow, or None when it is dropped."""
        if win.failed or win.latest is None:
            return None
        idx, ts, frame = win.latest
        if at_end and not (idx == win.last_index and win.latest_may_end):
            return None  # the file ended where no end was expected: a cut window, not anchored on a stray burst frame
        held = {i: v for i, v in win.held.items() if i < idx}
        held[idx] = (ts, frame)
        indices = tuple(sorted(held))
        self._windows += 1
        return DecodedWindow(
            window_index=win.index,
            anchor_index=idx,
            frame_indices=indices,
            timestamps_s=tuple(held[i][0] for i in indices),
            frames=[_fit(held[i][1], self.max_side) for i in indices],
        )

    def _run(self) -> Iterator[DecodedWindow]:
        cap, period, hint = self._cap, self.anchor_every_s, self.info.duration_s
        assert cap is not None
        retrieve_all_from = max(0.0, hint - period) if hint else 0.0  # where the file may end at any frame
        clock = _Clock(self.info.fps)
        win: _Window | None = None
        dropped = 0
        cut = False
        idx = w = -1
        try:
            while cap.grab():
                idx += 1
                self._frames_read += 1
                t = clock.stamp(_pos_ms(cap))
                w = math.floor((t + TIME_EPS_S) / period)
                if w < self.start_window:
                    self._frames_skipped += 1
                    continue  # grab-only: a restart, or a later segment, skips the windows before its own
                if self.end_window and w >= self.end_window:
                    self._frames_skipped += 1  # the next segment's first frame
                    break  # the segment's last window ends here: it is finished below like any other
                if win is None or w != win.index:
                    if win is not None:
                        done = self._finish(win, at_end=False)
                        if done is None:
                            dropped += 1
                        else:
                            yield done
                    win = self._start_window(w, idx, t, clock.gap)
                win.last_index = idx
                if win.failed:
                    continue
                may_end = (t + ANCHOR_MARGIN * clock.gap >= win.end_s - TIME_EPS_S
                           or t >= retrieve_all_from - TIME_EPS_S)
                if not (may_end or idx in win.burst):
                    continue
                ok, frame = cap.retrieve()
                if not ok or frame is None:
                    win.failed = True
                    continue
                if idx in win.burst:
                    win.held[idx] = (t, frame)
                win.latest, win.latest_may_end = (idx, t, frame), may_end
            ended_early = self.end_window and w >= self.end_window  # not the file's end: nothing was cut
            if win is not None:
                done = self._finish(win, at_end=not ended_early)
                if done is None:
                    dropped += 1
                    cut = not win.failed
                else:
                    yield done
        finally:
            self._release()
        if idx < 0:
            raise NotAVideo("no_frames", "no frame decoded")
        frames_end = clock.last + clock.gap
        short = hint and hint - frames_end > TRUNCATION_TOLERANCE_FRAMES * clock.gap + TIME_EPS_S
        truncated = short and not ended_early
        if cut or truncated:
            status, reason = "partial", "truncated"
        elif dropped:
            status, reason = "partial", "decode_error"
        else:
            status, reason = "done", None
        self.summary = DecodeSummary(status, reason, self._frames_read, self._windows, self.info.fps, dropped,
                                     self._frames_read - self._frames_skipped)


def decode_windows(path: str | os.PathLike[str], anchor_every_s: float = 1.0, burst_frames: int = 4,
                   max_side: int | None = None, start_window: int = 0, end_window: int = 0) -> WindowDecoder:
    """Probe (raising NotAVideo at once) and return a WindowDecoder: iterate it for DecodedWindow objects,
    then read `.summary`. Unused frames are only grab()bed, never retrieved or converted. max_side None or 0
    means frames keep their size.

        with decode_windows(path) as dec:
            for window in dec:
                ...
        dec.summary.status
    """
    return WindowDecoder(path, anchor_every_s, burst_frames, max_side, start_window, end_window)


# ---------------------------------------------------------------------------------------------------------------
# The decode stage: jobs in, windows out, then the video's video_end.

def window_record(window: DecodedWindow, video: dict) -> Window:
    """The record of a decoded window; `video` holds video_id, attempt and domain."""
    return Window(**video, frames=np.stack(window.frames), window_index=window.window_index,
                  anchor_index=window.anchor_index, frame_indices=list(window.frame_indices),
                  timestamps=[round(t, 4) for t in window.timestamps_s])


class DecodeHandler(Handler):
    """Jobs in; each video's windows, then its video_end, out."""

    passes = ()

    def __init__(self, settings: DecodeSettings, storage: Storage | None = None) -> None:
        self.settings = settings
        self.storage = storage  # where a job's `source` is read from (a local copy, downloaded once)
        # Each window is a unit of work (latency, /healthz's "last work"), not each video: a long video must not
        # look like a stalled decoder.
        self.routes = {Job: Route(self.decode, units_done_by_handler=True)}

    def decode(self, jobs: list[Job], out: Outbox) -> None:
        for job in jobs:
            decode_job(job, self.settings, out, self.storage)


def local_copy(job: Job, storage: Storage | None, tries: int = 3) -> str:
    """The file to decode: the job's path, or its storage object's local copy (downloaded once per machine; a
    failed download is tried again with back-off, then raises StorageError)."""
    if not job.source:
        return job.path
    if storage is None:
        raise StorageError(f"video {job.video_id} is in storage ({job.source}) but this decoder has none")
    for attempt in range(tries):
        try:
            return str(storage.fetch([job.source])[0])
        except OSError as exc:
            if attempt == tries - 1:
                raise StorageError(f"cannot download {storage.uri(job.source)}: {exc}") from None
            log.warning("video %d: download failed (%s), trying again", job.video_id, exc)
            time.sleep(2 ** attempt)
    raise AssertionError("unreachable")


def decode_job(job: Job, settings: DecodeSettings, out: Outbox, storage: Storage | None = None) -> None:
    """Decode one video into windows, then send its video_end (unless the stage is stopping: an unfinished video
    stays 'processing' and is redone on the next start). A file that cannot be decoded ends failed or partial with
    a reason; it never takes the stage down."""
    video = {"video_id": job.video_id, "attempt": job.attempt, "domain": job.domain}
    domain = job.domain

    def end(status: str, reason: str, windows: int = 0, frames_read: int = 0, duration_s: float = 0.0) -> None:
        out.send(VideoEnd(**video, start_window=job.start_window, windows=windows, frames_read=frames_read,
                          status=status, reason=reason, duration_s=round(duration_s, 3)))

    try:
        path = local_copy(job, storage)
    except StorageError as exc:
        log.error("video %d: %s", job.video_id, exc)
        ERRORS.labels("decode", "storage").inc()
        return end("failed", "unreadable")
    try:
        decoder = decode_windows(path, settings.anchor_every_s, settings.burst_frames, settings.max_side or None,
                                 job.start_window, job.end_window)
    except NotAVideo as exc:
        log.warning("video %d is not decodable: %s", job.video_id, exc)
        return end("failed", exc.reason)
    except Exception:
        log.exception("video %d: the decoder could not open it", job.video_id)
        ERRORS.labels("decode", "open").inc()
        return end("failed", "decode_error")
    sent = 0
    with decoder:
        tick = time.monotonic()
        try:
            for window in decoder:
                started = tick
                DECODE_SECONDS.labels(domain).inc(time.monotonic() - tick)
                out.send(window_record(window, video))
                sent += 1
                WINDOWS_SENT.labels(domain).inc()
                FRAMES_DECODED.labels(domain).inc(len(window.frames))
                out.unit_done(started)
                if out.stopping:
                    return
                tick = time.monotonic()
        except Stopping:
            raise
        except Exception as exc:  # e.g. the file changed after the probe: keep what was sent, end the video
            log.exception("video %d: decoding failed after %d windows", job.video_id, sent)
            ERRORS.labels("decode", type(exc).__name__).inc()
            return end("partial" if sent else "failed", getattr(exc, "reason", "decode_error"), windows=sent)
    summary = decoder.summary
    FRAMES_GRABBED.labels(domain).inc(summary.frames_read)
    if summary.status != "done":
        log.warning("video %d decoded partially (%s): %d windows", job.video_id, summary.reason, summary.windows)
    end(summary.status, summary.reason or "", summary.windows, summary.frames_own,
        summary.frames_own / summary.fps_used)
