"""Sparse, windowed decoding of one video file: per second, an anchor frame and a burst of earlier frames.

The functions and classes above the stage loop (at the end of the file) are pure of sockets, catalog and config:
they take plain arguments, so tests and one-shot tools call them directly.

Decisions
- Windows are counted in frames, not timestamps: window w covers frames [w*span, w*span + n) with
  span = round(fps * anchor_every_s) (at least 1). The window's last frame is the anchor; the burst is
  `burst_frames` earlier frames of the same window (see `plan_window`). Counting frames keeps the plan a
  pure function of (window index, span), which is what makes `start_window` restarts and the
  (fingerprint, frame index) keys deterministic. For variable-frame-rate files `fps` is the container's
  average rate, so windows average one second but a single window may cover more or less;
  `DecodedWindow.timestamps_s` always carries each frame's real presentation time.
- Tail: the frames after the last whole window form one final short window (n < span) whose anchor is the
  last frame of the clip; a clip shorter than one window is exactly one such window. A window with fewer
  than burst_frames + 1 frames takes every earlier frame as its burst (a 1-frame window has none).
- Where the clip ends is known only from the container's frame count (a hint: exact for mp4/avi,
  estimated for some containers, wrong for truncated files) because a frame can only be retrieved before
  the next grab(). So: the short tail window is planned from the hint; in the last `span` frames before
  the hinted end (and everywhere when there is no hint) every frame is also retrieved, so that if the file
  ends early the last decoded frame can still anchor the window. Such a window keeps only the planned
  burst frames that came before it. Frames beyond a hinted short window are skipped up to the next whole
  window, which then starts on the usual grid.
- Status: "partial" with reason "truncated" when more than TRUNCATION_TOLERANCE_FRAMES frames promised
  by the frame count never decoded; the window cut off by the end is dropped unless it fell in the
  retrieve-everything zone. "decode_error" when a grabbed frame could not be retrieved (that window is
  dropped, decoding goes on); "stopped" when the caller closed the decoder before the end.
- fps: the container's rate when it is in (0, MAX_TRUSTED_FPS]; otherwise the median gap between the
  presentation times of the first frames; otherwise DEFAULT_FPS. `VideoInfo.fps_source` says which.
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
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import cv2
import numpy as np

from daemon import metrics, wire
from daemon.config import DecodeSettings, Settings
from daemon.fabric import Fabric, Sender, StopFlag, Stopping

log = logging.getLogger("humanstyle.decode")

DEFAULT_FPS = 24.0
MAX_TRUSTED_FPS = 480.0  # above this a container rate is a timebase artefact (e.g. 1000 or 90000)
TRUNCATION_TOLERANCE_FRAMES = 2  # estimated frame counts (duration * fps) may be off by a frame or two
FPS_SAMPLE_FRAMES = 25

# Stable snake_case codes, meant as metric label values; initialise counters for all of them.
NOT_A_VIDEO_REASONS = ("not_found", "empty_file", "io_error", "not_a_video", "truncated", "unreadable",
                       "no_frames")
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
    fps: float  # resolved rate used for windows, always > 0
    frame_count: int  # container's count, 0 when unknown; a hint only
    width: int  # of decoded (upright) frames
    height: int
    rotation: int  # display rotation metadata in degrees (0, 90, 180, 270), already applied
    duration_s: float | None  # frame_count / fps, None when frame_count is unknown
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
    timestamps_s: tuple[float, ...]  # presentation time of each frame
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


def window_span(fps: float, anchor_every_s: float = 1.0) -> int:
    """Frames per window: fps * anchor_every_s rounded half up (23.976 -> 24, 12.5 -> 13), at least 1."""
    return max(1, math.floor(fps * anchor_every_s + 0.5))


def plan_window(
    window_index: int, span: int, burst_frames: int = 4, frame_count_in_span: int | None = None
) -> WindowPlan:
    """Which frames window `window_index` uses.

    The window starts at window_index * span and holds n = frame_count_in_span (default span) frames; its
    last frame is the anchor. The burst frames split the gap between the previous window's anchor and
    this one into burst_frames + 1 equal steps (rounded half up), so across windows all sampled frames
    are evenly spaced: span 24 -> offsets 4, 9, 13, 18 and anchor 23. With fewer than burst_frames
    earlier frames, all of them are used.
    """
    n = span if frame_count_in_span is None else frame_count_in_span
    if window_index < 0 or span < 1 or burst_frames < 0 or not 1 <= n <= span:
        raise ValueError(f"bad window: index={window_index} span={span} burst={burst_frames} n={n}")
    start = window_index * span
    if n - 1 <= burst_frames:
        offsets: list[int] = list(range(n - 1))
    else:
        b1 = burst_frames + 1
        # round(-1 + k*n/b1) half up, in integers: floor((2kn - b1) / 2b1)
        offsets = [(2 * k * n - b1) // (2 * b1) for k in range(1, burst_frames + 1)]
    return WindowPlan(start + n - 1, tuple(start + o for o in offsets))


def resolve_fps(container_fps: float, timestamps_ms: list[float]) -> tuple[float, str]:
    """(fps, source): the container rate if plausible, else one from frame timestamps, else DEFAULT_FPS."""
    if math.isfinite(container_fps) and 0 < container_fps <= MAX_TRUSTED_FPS:
        return float(container_fps), "container"
    gaps = sorted(b - a for a, b in zip(timestamps_ms, timestamps_ms[1:], strict=False) if b > a)
    if gaps:
        fps = 1000.0 / gaps[len(gaps) // 2]
        if 0 < fps <= MAX_TRUSTED_FPS:
            return fps, "timestamps"
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
    """Open the file, decode its first frame and report what decoding will use; raises NotAVideo."""
    container = sniff_container(path)
    cap = _open(path, container)
    try:
        if not cap.grab():
            raise NotAVideo("no_frames", "first frame does not decode")
        stamps = [_pos_ms(cap)]
        ok, frame = cap.retrieve()
        if not ok or frame is None or frame.size == 0:
            raise NotAVideo("no_frames", "first frame does not convert")
        container_fps = cap.get(cv2.CAP_PROP_FPS)
        if not (math.isfinite(container_fps) and 0 < container_fps <= MAX_TRUSTED_FPS):
            while len(stamps) < FPS_SAMPLE_FRAMES and cap.grab():
                stamps.append(_pos_ms(cap))
        fps, source = resolve_fps(container_fps, [s for s in stamps if s >= 0])
        count = cap.get(cv2.CAP_PROP_FRAME_COUNT)
        frame_count = int(count) if math.isfinite(count) and count > 0 else 0
        rotation = int(cap.get(cv2.CAP_PROP_ORIENTATION_META) or 0) % 360
    finally:
        cap.release()
    h, w = frame.shape[:2]
    duration = frame_count / fps if frame_count else None
    return VideoInfo(fps, frame_count, w, h, rotation, duration, source, container)


# --- decoding -------------------------------------------------------------------------------------


def _fit(frame: np.ndarray, max_side: int | None) -> np.ndarray:
    """Downsize so the longer side is max_side (INTER_AREA: averages, no aliasing); never upscale."""
    h, w = frame.shape[:2]
    if not max_side or max(h, w) <= max_side:
        return frame
    scale = max_side / max(h, w)
    size = (max(1, round(w * scale)), max(1, round(h * scale)))
    return cv2.resize(frame, size, interpolation=cv2.INTER_AREA)


class WindowDecoder:
    """Iterate to get DecodedWindow objects; afterwards `summary` holds the DecodeSummary.

    Use as a context manager (or call close()) to release the capture when stopping early; the summary of
    a decoder closed before its end is partial/"stopped".
    """

    def __init__(self, path: str | os.PathLike[str], anchor_every_s: float = 1.0, burst_frames: int = 4,
                 max_side: int | None = None, start_window: int = 0) -> None:
        if anchor_every_s <= 0 or burst_frames < 0 or start_window < 0 or (max_side or 0) < 0:
            raise ValueError("need anchor_every_s > 0, burst_frames >= 0, start_window >= 0, max_side >= 0")
        self.path = Path(path)
        self.info = probe_video(path)
        self.span = window_span(self.info.fps, anchor_every_s)
        self.burst_frames = burst_frames
        self.max_side = max_side
        self.start_window = start_window
        self.summary: DecodeSummary | None = None
        self._frames_read = 0
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

    def plan(self, window_index: int) -> WindowPlan:
        """The plan this decoder uses for a window: short only for the tail predicted by the frame count."""
        hint, start = self.info.frame_count, window_index * self.span
        n = hint - start if 0 < hint - start < self.span else None
        return plan_window(window_index, self.span, self.burst_frames, n)

    def _run(self) -> Iterator[DecodedWindow]:
        cap, span, fps, hint = self._cap, self.span, self.info.fps, self.info.frame_count
        assert cap is not None
        retrieve_all_from = max(0, hint - span) if hint > 0 else 0
        window, plan = -1, WindowPlan(-1, ())
        held: dict[int, tuple[float, np.ndarray]] = {}
        latest: tuple[int, float, np.ndarray] | None = None  # fallback anchor if the file ends early
        done_with_window = failed = False
        dropped = 0
        idx = -1
        try:
            while cap.grab():
                idx += 1
                self._frames_read += 1
                w = idx // span
                if w < self.start_window:
                    continue  # grab-only: a restart skips windows already done
                if w != window:
                    if window >= self.start_window and not done_with_window:
                        dropped += 1  # anchor never came: a failed retrieve in that window
                    window, plan, held, latest = w, self.plan(w), {}, None
                    done_with_window = failed = False
                if done_with_window or failed:
                    continue  # past a short tail window the container undercounted, or a broken window
                wanted = idx in plan.frame_indices or idx >= retrieve_all_from
                if not wanted:
                    continue
                ms = _pos_ms(cap)
                ts = ms / 1000.0 if ms >= 0 else idx / fps
                ok, frame = cap.retrieve()
                if not ok or frame is None:
                    failed = True
                    continue
                latest = (idx, ts, frame)
                if idx in plan.frame_indices:
                    held[idx] = (ts, frame)
                if idx == plan.anchor_index:
                    done_with_window = True
                    yield self._window(w, plan.frame_indices, held)
            # End of stream: the last window may lack its planned anchor.
            if window >= self.start_window and not done_with_window:
                # Only the very last decoded frame may stand in for the anchor, and only in the zone where
                # every frame is retrieved: elsewhere a cut window is dropped rather than anchored on
                # whichever burst frame happened to come last.
                if latest is not None and latest[0] == idx and idx >= retrieve_all_from and not failed:
                    held[latest[0]] = latest[1:]
                    indices = (*[i for i in plan.burst_indices if i < latest[0]], latest[0])
                    yield self._window(window, indices, held)
                else:
                    dropped += 1
        finally:
            self._release()
        if idx < 0:
            raise NotAVideo("no_frames", "no frame decoded")
        if hint > 0 and self._frames_read < hint - TRUNCATION_TOLERANCE_FRAMES:
            status, reason = "partial", "truncated"
        elif dropped:
            status, reason = "partial", "decode_error"
        else:
            status, reason = "done", None
        self.summary = DecodeSummary(status, reason, self._frames_read, self._windows, fps, dropped)

    def _window(self, w: int, indices: tuple[int, ...], held: dict[int, tuple[float, np.ndarray]]) -> DecodedWindow:
        self._windows += 1
        return DecodedWindow(
            window_index=w,
            anchor_index=indices[-1],
            frame_indices=indices,
            timestamps_s=tuple(held[i][0] for i in indices),
            frames=[_fit(held[i][1], self.max_side) for i in indices],
        )


def decode_windows(path: str | os.PathLike[str], anchor_every_s: float = 1.0, burst_frames: int = 4,
                   max_side: int | None = None, start_window: int = 0) -> WindowDecoder:
    """Probe (raising NotAVideo at once) and return a WindowDecoder: iterate it for DecodedWindow objects,
    then read `.summary`. Unused frames are only grab()bed, never retrieved or converted. max_side None or 0
    means frames keep their size.

        with decode_windows(path) as dec:
            for window in dec:
                ...
        dec.summary.status
    """
    return WindowDecoder(path, anchor_every_s, burst_frames, max_side, start_window)


# ---------------------------------------------------------------------------------------------------------------
# The decode stage process: jobs in, windows out, then the video's video_end.

def window_message(window: DecodedWindow, ids: dict) -> wire.Message:
    """The wire form of a decoded window; `ids` holds video_id, attempt and domain."""
    return wire.make("window", arrays={"frames": np.stack(window.frames)}, **ids, window_index=window.window_index,
                     anchor_index=window.anchor_index, frame_indices=list(window.frame_indices),
                     timestamps=[round(t, 4) for t in window.timestamps_s])


def decode_job(job: wire.Message, settings: DecodeSettings, out: Sender, stop: StopFlag) -> None:
    """Decode one video into window messages, then send its video_end (unless the stage is stopping: an
    unfinished video stays 'processing' and is redone on the next start). A file that cannot be decoded ends
    failed or partial with a reason; it never takes the stage down."""
    f = job.fields
    domain = f["domain"]
    ids = {"video_id": f["video_id"], "attempt": f["attempt"], "domain": domain}

    def end(status: str, reason: str, windows: int = 0, frames_read: int = 0, duration_s: float = 0.0) -> None:
        out.send(wire.make("video_end", **ids, windows=windows, frames_read=frames_read, status=status,
                           reason=reason, duration_s=round(duration_s, 3)))

    try:
        decoder = decode_windows(f["path"], settings.anchor_every_s, settings.burst_frames, settings.max_side or None,
                                 f["start_window"])
    except NotAVideo as exc:
        log.warning("video %d is not decodable: %s", f["video_id"], exc)
        return end("failed", exc.reason)
    except Exception:
        log.exception("video %d: the decoder could not open it", f["video_id"])
        metrics.ERRORS.labels("decode", "open").inc()
        return end("failed", "decode_error")
    sent = 0
    with decoder:
        tick = time.monotonic()
        try:
            for window in decoder:
                started = tick
                metrics.DECODE_SECONDS.labels(domain).inc(time.monotonic() - tick)
                out.send(window_message(window, ids))
                sent += 1
                metrics.WINDOWS_SENT.labels(domain).inc()
                metrics.FRAMES_DECODED.labels(domain).inc(len(window.frames))
                metrics.mark_work_done("decode", started)
                if stop.set:
                    return
                tick = time.monotonic()
        except Stopping:
            raise
        except Exception as exc:  # e.g. the file changed after the probe: keep what was sent, end the video
            log.exception("video %d: decoding failed after %d windows", f["video_id"], sent)
            metrics.ERRORS.labels("decode", type(exc).__name__).inc()
            return end("partial" if sent else "failed", getattr(exc, "reason", "decode_error"), windows=sent)
    summary = decoder.summary
    metrics.FRAMES_GRABBED.labels(domain).inc(summary.frames_read)
    if summary.status != "done":
        log.warning("video %d decoded partially (%s): %d windows", f["video_id"], summary.reason, summary.windows)
    end(summary.status, summary.reason or "", summary.windows, summary.frames_read,
        summary.frames_read / summary.fps_used)


def run(settings: Settings, index: int, stop: StopFlag) -> None:
    cv2.setNumThreads(1)  # the decoders share a small machine with the models
    fab = Fabric(settings, "decode", stop)
    jobs = fab.receiver("jobs", ["jobs"], bind=False)
    out = fab.sender("windows", [f"windows.{index}"], bind=True)
    fab.mark_ready()
    try:
        while not stop.set:
            job = jobs.recv(200)
            if job is None:
                continue
            if job.type != "job":
                metrics.MESSAGES_REJECTED.labels("decode", "unexpected_type").inc()
                continue
            decode_job(job, settings.decode, out, stop)
    except Stopping as exc:
        log.warning("decode-%d: %s", index, exc)
    finally:
        fab.close()
