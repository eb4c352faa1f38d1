"""Translate the people in a video (the `humanstyle translate-video` command and the trainer's preview).

Every frame of IN is decoded (PyAV), its people found by the daemon's detector (batched), followed by ByteTrack
(`video_tracking`), cut as square patches around their smoothed boxes, translated by a generator, pasted back
through their masks, and written with IN's timestamps, size, rotation and audio.

Decisions
- Outside the people's masks a frame is IN's decoded pixels, bit for bit: the feathered edge lies inside the mask
  (alpha rises from the mask's edge inwards), so blending never reaches a pixel the detector did not call a person.
  With a lossless codec (`--codec ffv1`) the written file shows exactly that; a lossy one re-encodes the frame.
- Temporal smoothing: inside the masks, the translation is blended with the previous OUTPUT frame warped to this
  one by optical flow computed on the INPUT frames (OpenCV's DIS), weighted by how well the warp explains the
  input (a pixel the flow cannot follow, an occlusion or a new limb, keeps this frame's translation). Flow comes
  from the input because the translation is what flickers; the recursion makes it an average along motion paths.
  What it buys and costs is measured in bench/translate_video.py.
- Frames are upright while they are worked on (a phone's display matrix applied) and turned back before encoding,
  and OUT carries IN's display matrix, so OUT shows as IN does and has IN's stored size.
- Time: each frame keeps its presentation timestamp in IN's time base, so a variable frame rate, a late start
  and the duration survive; audio packets are copied, not re-encoded.
- OUT appears whole or not at all: the file is written under a hidden temporary name beside OUT and renamed.
- A packet the decoder cannot read is skipped and counted (as ffmpeg's own tools conceal it); a file whose
  frames stop well before the duration its header promises is refused as truncated, since translating half of it
  under the full name would pass a cut file off as whole.
"""

from __future__ import annotations

import os
import time
from collections import deque
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from fractions import Fraction
from pathlib import Path

import cv2
import numpy as np
import torch

from humanstyle.models.data import to_uint8_rgb
from humanstyle.stages.decode import NotAVideo, sniff_container
from humanstyle.stages.detect import square_box, square_patch
from humanstyle.stages.translate.images import TranslateError
from humanstyle.stages.translate.tracking import BoxSmoother, make_tracker, track
from humanstyle.stages.translate.video_settings import VideoTranslateSettings

# A frame stream stopping more than this many seconds (or typical gaps, whichever is more) before the header's
# duration is a cut file; container durations are estimates to a frame or two.
TRUNCATION_SLACK_S = 0.5
TRUNCATION_SLACK_GAPS = 5
FLOW_MAX_WIDTH = 640  # flow is computed on frames shrunk to this width: DIS costs grow with pixels, people are big
CONSISTENCY_SIGMA = 12.0  # grey levels: |input - warped previous input| at which a pixel's blend weight is 1/e
GENERATOR_BATCH = 16

# OUT's suffix -> (FFmpeg muxer, default video codec)
CONTAINERS = {".mp4": ("mp4", "libx264"), ".m4v": ("mp4", "libx264"), ".mov": ("mov", "libx264"),
              ".mkv": ("matroska", "libx264"), ".avi": ("avi", "mpeg4"), ".webm": ("webm", "libvpx-vp9")}


class VideoTranslateError(TranslateError):
    """A bad input, output or checkpoint: one line for the user, exit code 2."""


@dataclass
class VideoReport:
    frames: int = 0
    persons: int = 0  # person patches translated, over all frames
    tracks: int = 0
    broken_packets: int = 0
    audio_streams: int = 0
    seconds: float = 0.0
    stage_seconds: dict[str, float] = field(default_factory=dict)
    flicker: list[float] = field(default_factory=list)  # per frame pair, when measured (see warping_error)

    @property
    def fps(self) -> float:
        return self.frames / self.seconds if self.seconds > 0 else 0.0


# ---------------------------------------------------------------------------------------------------------------
# Orientation

def upright(image: np.ndarray, rotation: int) -> np.ndarray:
    """The stored frame turned as a player shows it. `rotation` is PyAV's `frame.rotation` (the display matrix's
    counter-clockwise degrees): -90 is shown turned 90 degrees clockwise."""
    turn = {0: None, 90: cv2.ROTATE_90_COUNTERCLOCKWISE, -90: cv2.ROTATE_90_CLOCKWISE, 180: cv2.ROTATE_180,
            -180: cv2.ROTATE_180, 270: cv2.ROTATE_90_CLOCKWISE, -270: cv2.ROTATE_90_COUNTERCLOCKWISE}[rotation]
    return image if turn is None else cv2.rotate(image, turn)


def stored(image: np.ndarray, rotation: int) -> np.ndarray:
    """The inverse of `upright`."""
    return upright(image, -rotation if abs(rotation) != 180 else rotation)


def _rotation(frame) -> int:
    r = int(round(getattr(frame, "rotation", 0) or 0))
    return r if r in (0, 90, -90, 180, -180, 270, -270) else 0


# ---------------------------------------------------------------------------------------------------------------
# Flow, warping, flicker

class Flow:
    """Dense flow from the current input frame back to the previous one, at FLOW_MAX_WIDTH at most. Frames come in
    order, so the previous frame's grey image is the one made for it as the current frame one call before."""

    def __init__(self) -> None:
        self.dis = cv2.DISOpticalFlow_create(cv2.DISOPTICAL_FLOW_PRESET_FAST)
        self._last: tuple[np.ndarray, np.ndarray] | None = None  # (frame, its grey image)

    def __call__(self, current_bgr: np.ndarray, previous_bgr: np.ndarray) -> np.ndarray:
        h, w = current_bgr.shape[:2]
        scale = min(1.0, FLOW_MAX_WIDTH / w)
        size = (max(1, round(w * scale)), max(1, round(h * scale)))

        def grey(image: np.ndarray) -> np.ndarray:
            if self._last is not None and self._last[0] is image:
                return self._last[1]
            g = cv2.cvtColor(image, cv2.COLOR_BGR2GRAY)
            return cv2.resize(g, size, interpolation=cv2.INTER_AREA) if scale < 1.0 else g

        current = grey(current_bgr)
        flow = self.dis.calc(current, grey(previous_bgr), None)
        self._last = (current_bgr, current)
        if scale < 1.0:
            flow = cv2.resize(flow, (w, h), interpolation=cv2.INTER_LINEAR) / scale
        return flow


@dataclass(frozen=True)
class Region:
    """Rows y0:y1 and columns x0:x1 of a frame."""

    y0: int
    y1: int
    x0: int
    x1: int

    @property
    def slices(self) -> tuple[slice, slice]:
        return slice(self.y0, self.y1), slice(self.x0, self.x1)

    def local(self, ys: slice, xs: slice) -> tuple[slice, slice]:
        return slice(ys.start - self.y0, ys.stop - self.y0), slice(xs.start - self.x0, xs.stop - self.x0)


def flow_maps(flow: np.ndarray, region: Region) -> tuple[np.ndarray, np.ndarray]:
    """Where each pixel of `region` of the current frame was in the previous one, p + flow(p), as cv2.remap's maps;
    `flow` is the region's part of the current-to-previous flow. Made once per frame for every `warp` of it."""
    h, w = flow.shape[:2]
    gx, gy = np.meshgrid(np.arange(region.x0, region.x0 + w, dtype=np.float32),
                         np.arange(region.y0, region.y0 + h, dtype=np.float32))
    return gx + flow[..., 0], gy + flow[..., 1]


def warp(previous: np.ndarray, maps: tuple[np.ndarray, np.ndarray]) -> np.ndarray:
    """The whole `previous` frame moved onto the region `maps` was made for: out(p) = previous(p + flow(p))."""
    return cv2.remap(previous, maps[0], maps[1], cv2.INTER_LINEAR, borderMode=cv2.BORDER_REPLICATE)


def consistency(current: np.ndarray, warped_previous: np.ndarray) -> np.ndarray:
    """Per pixel, how well the flow explains the input (1: exactly; towards 0 where it cannot: occlusions)."""
    diff = np.abs(current.astype(np.float32) - warped_previous.astype(np.float32)).mean(axis=2)
    return np.exp(-diff / CONSISTENCY_SIGMA)


def warping_error(out: np.ndarray, previous_out: np.ndarray, maps: tuple[np.ndarray, np.ndarray],
                  weight: np.ndarray) -> float:
    """Mean |OUT_t - warp(OUT_t-1)| over the region `maps` was made for (`out` is that region), weighted by `weight`
    (mask x input consistency): the change between output frames that the input's own motion does not explain,
    i.e. flicker. NaN when no pixel counts."""
    total = float(weight.sum())
    if total <= 0:
        return float("nan")
    diff = np.abs(out.astype(np.float32) - warp(previous_out, maps).astype(np.float32)).mean(axis=2)
    return float((diff * weight).sum() / total)


# ---------------------------------------------------------------------------------------------------------------
# Patches in and out

def feathered_alpha(mask: np.ndarray, side: float, feather: float) -> np.ndarray:
    """Float alpha in [0, 1]: 0 outside the mask, rising linearly to 1 at `feather` x `side` pixels inside its edge
    (a distance transform: linear in the pixels, where a Gaussian blur of that width costs its kernel per pixel)."""
    inside = mask.astype(np.uint8)
    width = feather * side
    if width < 1.0 or not inside.any():
        return inside.astype(np.float32)
    distance = cv2.distanceTransform(inside, cv2.DIST_L2, 3)
    return np.minimum(distance / width, 1.0, dtype=np.float32)


def paste(patch_bgr: np.ndarray, square: tuple[int, int, int, int], shape: tuple[int, int]) -> tuple[
        np.ndarray, tuple[slice, slice]]:
    """The translated patch resized to its square's frame pixels, cut to the frame; with the frame slices it fills."""
    x0, y0, x1, y1 = square
    side = x1 - x0
    h, w = shape
    ix0, iy0, ix1, iy1 = max(x0, 0), max(y0, 0), min(x1, w), min(y1, h)
    interp = cv2.INTER_AREA if side < patch_bgr.shape[0] else cv2.INTER_CUBIC
    full = cv2.resize(patch_bgr, (side, side), interpolation=interp)
    return full[iy0 - y0:iy1 - y0, ix0 - x0:ix1 - x0], (slice(iy0, iy1), slice(ix0, ix1))


def to_input(patch_bgr: np.ndarray) -> torch.Tensor:
    """A BGR uint8 patch as the generators' input: RGB, CHW, [-1, 1] (models.data.build_transform's scaling)."""
    rgb = cv2.cvtColor(patch_bgr, cv2.COLOR_BGR2RGB)
    return torch.from_numpy(rgb).permute(2, 0, 1).float().div(127.5).sub(1.0)


def from_output(images: torch.Tensor) -> list[np.ndarray]:
    return [cv2.cvtColor(im, cv2.COLOR_RGB2BGR) for im in to_uint8_rgb(images)]


# ---------------------------------------------------------------------------------------------------------------
# The frame loop

@dataclass
class _Person:
    square: tuple[int, int, int, int]
    mask: np.ndarray  # frame-size bool
    order: float  # paint order: lower box bottom (farther away) first


class Compositor:
    """Frames in order, people translated and pasted, smoothed over time. Shared by the command and the trainer's
    preview; `generator` maps a (B, 3, S, S) batch in [-1, 1] to the same."""

    def __init__(self, generator: Callable[[torch.Tensor], torch.Tensor], image_size: int, fps: float,
                 settings: VideoTranslateSettings, measure_flicker: bool = False) -> None:
        self.generator, self.image_size, self.settings = generator, image_size, settings
        self.tracker = make_tracker(fps, settings.score_threshold)
        self.smoother = BoxSmoother(settings.box_min_cutoff, settings.box_beta)
        self.flow = Flow()
        self.previous_in: np.ndarray | None = None
        self.previous_out: np.ndarray | None = None
        self.previous_alpha: np.ndarray | None = None
        self.measure_flicker = measure_flicker
        self.track_ids: set[int] = set()
        self.report = VideoReport()
        self._timer = {"track": 0.0, "generator": 0.0, "composite": 0.0, "flow": 0.0}

    def people(self, detections, timestamp: float) -> list[_Person]:
        start = time.perf_counter()
        boxes = np.array([d.box for d in detections], dtype=np.float32).reshape(-1, 4)
        scores = np.array([d.score for d in detections], dtype=np.float32)
        ids = track(self.tracker, boxes, scores, timestamp)
        people = []
        for det, tid in zip(detections, ids, strict=True):
            if tid < 0 and det.score < self.settings.score_threshold:
                continue  # a weak detection on no track: not somebody the daemon would call a person
            if tid >= 0:
                self.track_ids.add(int(tid))
            smooth = self.smoother(int(tid), det.box, timestamp)
            try:
                square = square_box(smooth, self.settings.margin)
            except ValueError:
                continue
            people.append(_Person(square, np.asarray(det.mask, dtype=bool), order=float(det.box[3])))
        self._timer["track"] += time.perf_counter() - start
        return sorted(people, key=lambda p: p.order)

    def translate(self, frames: list[np.ndarray], people: list[list[_Person]]) -> list[list[np.ndarray]]:
        """Every person of every frame through the generator, in batches; the patches come back per frame."""
        start = time.perf_counter()
        inputs = [to_input(square_patch(frame, p.square, margin=0.0, size=self.image_size).image)
                  for frame, ps in zip(frames, people, strict=True) for p in ps]
        outputs: list[np.ndarray] = []
        with torch.no_grad():
            for i in range(0, len(inputs), GENERATOR_BATCH):
                outputs += from_output(self.generator(torch.stack(inputs[i:i + GENERATOR_BATCH])))
        per_frame, k = [], 0
        for ps in people:
            per_frame.append(outputs[k:k + len(ps)])
            k += len(ps)
        self._timer["generator"] += time.perf_counter() - start
        return per_frame

    def composite(self, frame: np.ndarray, people: list[_Person], patches: list[np.ndarray]) -> np.ndarray:
        """The frame with its people replaced by their translations, smoothed against the previous output. The
        arithmetic runs on the box around the people only: on a 1080p frame that is most of the saving."""
        start = time.perf_counter()
        self.report.frames += 1
        self.report.persons += len(people)
        h, w = frame.shape[:2]
        pasted = [paste(patch, person.square, (h, w)) for person, patch in zip(people, patches, strict=True)]
        pasted = [(p, ys, xs, person) for (p, (ys, xs)), person in zip(pasted, people, strict=True)
                  if ys.stop > ys.start and xs.stop > xs.start]
        if not pasted:
            self.previous_in, self.previous_out, self.previous_alpha = frame, frame, None
            self._timer["composite"] += time.perf_counter() - start
            return frame
        roi = Region(min(ys.start for _, ys, _, _ in pasted), max(ys.stop for _, ys, _, _ in pasted),
                     min(xs.start for _, _, xs, _ in pasted), max(xs.stop for _, _, xs, _ in pasted))
        here = frame[roi.slices]
        translated = here.astype(np.float32)
        alpha = np.zeros(translated.shape[:2], dtype=np.float32)
        for image, ys, xs, person in pasted:
            local = roi.local(ys, xs)
            a = feathered_alpha(person.mask[ys, xs], person.square[2] - person.square[0], self.settings.feather)
            region = translated[local]
            region += a[..., None] * (image.astype(np.float32) - region)
            alpha[local] = np.maximum(alpha[local], a)
        self._timer["composite"] += time.perf_counter() - start

        maps = None
        if (self.settings.smoothing > 0 or self.measure_flicker) and self.previous_alpha is not None:
            t0 = time.perf_counter()
            maps = flow_maps(self.flow(frame, self.previous_in)[roi.slices], roi)
            self._timer["flow"] += time.perf_counter() - t0
        start = time.perf_counter()
        held = None
        if maps is not None:
            held = consistency(here, warp(self.previous_in, maps)) * warp(self.previous_alpha, maps)
        if held is not None and self.settings.smoothing > 0:
            weight = (self.settings.smoothing * held)[..., None]
            translated += weight * (warp(self.previous_out, maps).astype(np.float32) - translated)
        blended = here.astype(np.float32)
        blended += alpha[..., None] * (translated - blended)
        out = frame.copy()
        out[roi.slices] = np.where(alpha[..., None] > 0, np.clip(np.rint(blended), 0, 255), here).astype(np.uint8)
        self._timer["composite"] += time.perf_counter() - start
        if self.measure_flicker and held is not None:
            self.report.flicker.append(warping_error(out[roi.slices], self.previous_out, maps, alpha * held))
        full_alpha = np.zeros((h, w), dtype=np.float32)
        full_alpha[roi.slices] = alpha
        self.previous_in, self.previous_out, self.previous_alpha = frame, out, full_alpha
        return out

    def run(self, frames: list[np.ndarray], detections: list[list], timestamps: list[float]) -> list[np.ndarray]:
        people = [self.people(d, t) for d, t in zip(detections, timestamps, strict=True)]
        patches = self.translate(frames, people)
        return [self.composite(f, p, q) for f, p, q in zip(frames, people, patches, strict=True)]

    def finish(self) -> VideoReport:
        self.report.tracks = len(self.track_ids)
        self.report.stage_seconds = {k: round(v, 3) for k, v in self._timer.items()}
        return self.report


# ---------------------------------------------------------------------------------------------------------------
# Containers

def _open_input(path: Path):
    import av

    try:
        sniff_container(path)
    except NotAVideo as exc:
        detail = f" ({exc.args[1]})" if len(exc.args) > 1 else ""
        raise VideoTranslateError(f"{path}: not a video file: {exc.args[0]}{detail}") from None
    try:
        container = av.open(os.path.abspath(path), metadata_errors="ignore")
    except (av.error.FFmpegError, OSError) as exc:
        raise VideoTranslateError(f"{path}: cannot open the video: {exc}") from None
    if not container.streams.video:
        container.close()
        raise VideoTranslateError(f"{path}: holds no video stream")
    return container


def _header_duration(container, stream) -> float | None:
    """The longest duration the header promises, in seconds (None: it promises none)."""
    candidates = []
    if stream.duration and stream.time_base:
        candidates.append(float(stream.duration * stream.time_base))
    if stream.frames and stream.average_rate:
        candidates.append(stream.frames / float(stream.average_rate))
    if container.duration:
        candidates.append(container.duration / 1e6)
    return max(candidates) if candidates else None


def _scan(path: Path) -> tuple[int, float]:
    """(video packets, end of the last one in seconds) from the container alone, without decoding: a cut file is
    recognised before any work, and the progress bar knows its total."""
    import av

    count, end = 0, 0.0
    with av.open(os.path.abspath(path), metadata_errors="ignore") as container:
        stream = container.streams.video[0]
        for packet in container.demux(stream):
            stamp = packet.pts if packet.pts is not None else packet.dts
            if stamp is None or packet.size == 0:
                continue
            count += 1
            end = max(end, float((stamp + (packet.duration or 0)) * stream.time_base))
    return count, end


def _pick_codec(out: Path, codec: str | None) -> str:
    import av

    name = codec or CONTAINERS.get(out.suffix.lower(), (None, None))[1]
    if name is None:
        raise VideoTranslateError(f"{out}: unknown video container {out.suffix!r} (use one of "
                                  f"{', '.join(CONTAINERS)})")
    if name not in av.codecs_available:
        if codec is None and "mpeg4" in av.codecs_available:
            return "mpeg4"
        raise VideoTranslateError(f"codec {name!r} is not in this PyAV build")
    return name


class _Writer:
    """OUT under a temporary name: video encoded from frames with IN's timestamps, audio copied packet by packet."""

    def __init__(self, tmp: Path, fmt: str, in_video, in_audio: list, codec: str, crf: int, rotation: int,
                 size: tuple[int, int]) -> None:
        import av

        try:
            # faststart: the index before the data, so a browser plays an mp4 preview while it downloads
            options = {"movflags": "+faststart"} if fmt in ("mp4", "mov") else {}
            self.container = av.open(str(tmp), "w", format=fmt, options=options)
        except (av.error.FFmpegError, OSError) as exc:
            raise VideoTranslateError(f"cannot write {tmp.parent}: {exc}") from None
        rate = in_video.average_rate or in_video.guessed_rate or Fraction(30)
        stream = self.container.add_stream(codec, rate=rate)
        stream.width, stream.height = size
        if codec == "ffv1":
            stream.pix_fmt = "bgr0"
        else:
            stream.pix_fmt = "yuv420p" if size[0] % 2 == 0 and size[1] % 2 == 0 else "yuv444p"
        # IN's time base, so every timestamp survives; MPEG-4 part 2 allows no denominator above 65535 (an MPEG-TS
        # input's 1/90000), and there milliseconds do.
        self.in_base = in_video.time_base
        base = in_video.time_base if codec != "mpeg4" or in_video.time_base.denominator <= 65535 else Fraction(1, 1000)
        stream.time_base = base
        stream.codec_context.time_base = base
        if codec in ("libx264", "libvpx-vp9"):
            stream.options = {"crf": str(crf)}
            if codec == "libvpx-vp9":
                stream.options.update({"b": "0", "deadline": "good", "cpu-used": "4"})
        if rotation:
            stream.set_display_rotation(rotation)
        self.video = stream
        self.audio = {}
        for a in in_audio:
            try:
                self.audio[a.index] = self.container.add_stream_from_template(a)
            except (av.error.FFmpegError, ValueError) as exc:
                raise VideoTranslateError(f"the {fmt} container cannot hold IN's {a.codec_context.name} audio "
                                          f"({exc}); write a .mkv") from None

    def frame(self, image: np.ndarray, pts: int) -> None:
        import av

        frame = av.VideoFrame.from_ndarray(np.ascontiguousarray(image), format="bgr24")
        base = self.video.codec_context.time_base
        frame.pts = pts if base == self.in_base else round(pts * self.in_base / base)
        frame.time_base = base
        self.container.mux(self.video.encode(frame))

    def packet(self, packet) -> None:
        out = self.audio.get(packet.stream.index)
        if out is None or packet.dts is None:
            return  # the demuxer's empty flush packet
        packet.stream = out
        self.container.mux(packet)

    def close(self) -> None:
        self.container.mux(self.video.encode(None))
        self.container.close()

    def abandon(self) -> None:
        try:
            self.container.close()
        except Exception:  # noqa: BLE001 - a half-written file is deleted next; its trailer does not matter
            pass


class _BestEffortClock:
    """A rising timestamp per decoded frame, chosen as libavcodec's best-effort timestamp is: the presentation time
    unless it has gone backwards more often than the decoding time (an AVI of MPEG-4 with packed B-frames hands
    out 1, 2, 4, 3, 5 as pts over a clean dts). A frame with neither follows at the typical gap (the median of the
    last ones); one that does not rise, one tick after the last (the switch from pts to dts meets a used time)."""

    def __init__(self) -> None:
        self.faulty_pts = self.faulty_dts = 0
        self.last_pts = self.last_dts = self.last = None
        self.gaps: deque[int] = deque(maxlen=15)

    def __call__(self, pts: int | None, dts: int | None) -> int:
        if dts is not None:
            self.faulty_dts += self.last_dts is not None and dts <= self.last_dts
            self.last_dts = dts
        if pts is not None:
            self.faulty_pts += self.last_pts is not None and pts <= self.last_pts
            self.last_pts = pts
        chosen = pts if pts is not None and (self.faulty_pts <= self.faulty_dts or dts is None) else dts
        if self.last is not None:
            if chosen is None:
                chosen = self.last + (int(np.median(self.gaps)) if self.gaps else 1)
            elif chosen <= self.last:
                chosen = self.last + 1
            self.gaps.append(chosen - self.last)
        self.last = chosen if chosen is not None else 0
        return self.last


def _frames(container, stream, audio: list, writer_packet: Callable, report: VideoReport) -> Iterator:
    """IN's decoded frames in order as (frame, pts); audio packets go to `writer_packet` as they come."""
    import av

    clock = _BestEffortClock()
    for packet in container.demux(stream, *audio):
        if packet.stream.type == "audio":
            writer_packet(packet)
            continue
        try:
            decoded = packet.decode()
        except av.error.InvalidDataError:
            report.broken_packets += 1
            continue
        for frame in decoded:
            pts = clock(frame.pts, frame.dts)
            yield frame, pts


def build_tracking_detector(detect, video: VideoTranslateSettings):
    """The daemon's detector keeping weaker people than the daemon does (down to `video.track_threshold`): they go
    to the tracker's second stage only."""
    from dataclasses import replace

    from humanstyle.stages.detect import build_detector

    return build_detector(replace(detect, score_threshold=video.track_threshold))


def translate_video(inp: Path, out: Path, generator: Callable[[torch.Tensor], torch.Tensor], image_size: int,
                    detector, settings: VideoTranslateSettings | None = None, progress: bool = True,
                    max_seconds: float | None = None, measure_flicker: bool = False, start_s: float = 0.0,
                    audio: bool = True) -> VideoReport:
    """Translate the people of IN into OUT (see the module docstring); VideoTranslateError on bad input.

    `max_seconds`: only that much of IN (from `start_s`, counted from its first frame). With `start_s` > 0 the
    frames before it are decoded and dropped and OUT starts at time 0 (the trainer's previews); `audio` False
    leaves IN's audio out."""
    import av
    from tqdm import tqdm

    settings = settings or VideoTranslateSettings()
    inp, out = Path(inp), Path(out)
    if out.resolve() == inp.resolve():
        raise VideoTranslateError("OUT must not be IN")
    if not out.parent.is_dir():
        raise VideoTranslateError(f"{out.parent}: no such directory")
    if not os.access(out.parent, os.W_OK):
        raise VideoTranslateError(f"{out.parent}: not writable")
    codec = _pick_codec(out, settings.codec)
    container = _open_input(inp)
    started = time.perf_counter()
    tmp = out.with_name(f".{out.stem}.partial-{os.getpid()}{out.suffix}")
    try:
        video = container.streams.video[0]
        video.thread_type = "AUTO"
        streams_audio = list(container.streams.audio) if audio and start_s <= 0 else []
        fps = float(video.average_rate or video.guessed_rate or 30)
        total, end = _scan(inp)
        promised = _header_duration(container, video)
        if max_seconds is None and start_s <= 0 and promised is not None and total > 1 and \
                end < promised - max(TRUNCATION_SLACK_S, TRUNCATION_SLACK_GAPS / fps):
            raise VideoTranslateError(f"{inp}: truncated: its frames stop at {end:.2f} s of the "
                                      f"{promised:.2f} s its header promises")
        try:
            compositor = Compositor(generator, image_size, fps, settings, measure_flicker)
        except ImportError as exc:
            raise VideoTranslateError(str(exc)) from None
        writer: _Writer | None = None
        early_audio: list = []  # audio packets demuxed before the first video frame fixed OUT's form
        batch: list[tuple] = []
        first_pts = None

        def first_s() -> float:
            return float(first_pts * video.time_base) if first_pts is not None else 0.0

        bar = tqdm(total=total, unit="frame", desc=inp.name, disable=not progress, dynamic_ncols=True)

        def audio_packet(packet) -> None:
            if max_seconds is not None and packet.pts is not None and packet.time_base is not None and \
                    float(packet.pts * packet.time_base) >= max_seconds + first_s():
                return  # past the part asked for
            if writer is None:
                early_audio.append(packet)
            else:
                writer.packet(packet)

        def flush() -> None:
            if not batch:
                return
            frames = [upright(f.to_ndarray(format="bgr24"), r) for f, _, r, _ in batch]
            detections = detector.detect(frames)
            outputs = compositor.run(frames, detections, [t for _, _, _, t in batch])
            for (_, pts, rotation, _), image in zip(batch, outputs, strict=True):
                writer.frame(stored(image, rotation), pts)
            bar.update(len(batch))
            batch.clear()

        try:
            shift = None  # subtracted from every pts written: 0, or the first kept frame's pts after a start_s
            for frame, pts in _frames(container, video, streams_audio, audio_packet, compositor.report):
                if first_pts is None:
                    first_pts = pts
                timestamp = float((pts - first_pts) * video.time_base)
                if timestamp < start_s:
                    continue
                if max_seconds is not None and timestamp >= start_s + max_seconds:
                    break
                if writer is None:
                    muxer = CONTAINERS.get(out.suffix.lower(), ("mp4",))[0]  # an unknown suffix with --codec: mp4
                    writer = _Writer(tmp, muxer, video, streams_audio, codec, settings.crf, _rotation(frame),
                                     (frame.width, frame.height))
                    for packet in early_audio:
                        writer.packet(packet)
                    shift = pts if start_s > 0 else 0
                pts -= shift
                batch.append((frame, pts, _rotation(frame), timestamp))
                if len(batch) >= settings.batch_size:
                    flush()
            flush()
            if writer is None:
                raise VideoTranslateError(f"{inp}: no frame could be decoded")
            writer.close()
        except av.error.FFmpegError as exc:  # an encoder or muxer refusing what it is given
            if writer is not None:
                writer.abandon()
            hint = "; a .mkv holds any audio codec" if streams_audio and out.suffix.lower() != ".mkv" else ""
            raise VideoTranslateError(f"cannot write {out.name} ({codec}): {exc}{hint}") from None
        except BaseException:
            if writer is not None:
                writer.abandon()
            raise
        finally:
            bar.close()
        os.replace(tmp, out)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise
    finally:
        container.close()
    report = compositor.finish()
    report.audio_streams = len(streams_audio)
    report.seconds = time.perf_counter() - started
    return report

