"""Detector stage. Pure patch geometry first (tested directly); the process loop is appended below it.

Patch geometry decisions
- The square is centred on the box centre; its side is the box's longest side times ``1 + 2 * margin``:
  ``margin`` is the fraction of the longest side added on EACH side (0.15 → side = 1.3 x longest side).
- Its corners are whole frame pixels (side rounded, at least 1 px), so the square box returned is exact and
  the patch is a pure scale of it: patch pixel (u, v) shows frame point (x0 + u / scale, y0 + v / scale).
- Where the square leaves the frame the patch is constant black (mask False). Reflection would invent mirrored
  limbs that the keypoint model could read as a second person; black is neutral and the mask marks it.
- Resizing: INTER_AREA when shrinking (no aliasing), INTER_LINEAR when enlarging (tiny boxes). Only the part
  of the square inside the frame is resized, so a box much larger than the frame costs no more memory than
  the frame itself; the seam is placed to within half an output pixel.
- The mask goes through the same geometry as the image (as 0/255, same interpolation, then >= 128), so mask
  and image stay aligned pixel for pixel.
- Degenerate boxes raise ValueError (non-finite, width or height <= 0, or no overlap with the frame): they are
  a caller's bug or a detector glitch, and the stage counts and skips them rather than emitting black patches.
"""

from __future__ import annotations

import logging
import math
from collections.abc import Sequence
from dataclasses import dataclass

import cv2
import numpy as np

from humanstyle.stages.counters import BOXES_SKIPPED, FRAMES_DETECTED, MODEL_CALLS, PERSONS_DETECTED
from humanstyle.stages.handler import Handler, Outbox, Route
from humanstyle.stages.records import Patch, VideoEnd, Window, WindowDone
from humanstyle.stages.settings import DetectSettings, StageFatal

log = logging.getLogger("humanstyle.detect")

DEFAULT_PATCH_SIZE = 256
DEFAULT_MARGIN = 0.15


@dataclass(frozen=True)
class SquarePatch:
    """A square person patch and where it came from.

    image: (size, size, C) same dtype as the frame. mask: (size, size) bool, or None when no mask was given.
    square: (x0, y0, x1, y1) whole frame pixels, x1 - x0 == y1 - y0; may extend beyond the frame.
    scale: patch pixels per frame pixel (size / side).
    """

    image: np.ndarray
    mask: np.ndarray | None
    square: tuple[int, int, int, int]
    scale: float

    def to_frame(self, x: float, y: float) -> tuple[float, float]:
        """Map a patch point (pixels) back to frame pixels."""
        return self.square[0] + x / self.scale, self.square[1] + y / self.scale


def square_box(box: Sequence[float], margin: float) -> tuple[int, int, int, int]:
    """The square (x0, y0, x1, y1) in whole frame pixels around ``box``; see the module docstring."""
    if len(box) != 4:
        raise ValueError(f"box must be (x1, y1, x2, y2), got {box!r}")
    x1, y1, x2, y2 = (float(v) for v in box)
    if not all(math.isfinite(v) for v in (x1, y1, x2, y2)):
        raise ValueError(f"box has non-finite coordinates: {box!r}")
    if x2 <= x1 or y2 <= y1:
        raise ValueError(f"degenerate box (width or height <= 0): {box!r}")
    if not (math.isfinite(margin) and margin >= 0):
        raise ValueError(f"margin must be a finite number >= 0, got {margin}")
    side = max(1, round(max(x2 - x1, y2 - y1) * (1.0 + 2.0 * margin)))
    x0 = math.floor((x1 + x2) / 2.0 - side / 2.0 + 0.5)
    y0 = math.floor((y1 + y2) / 2.0 - side / 2.0 + 0.5)
    return x0, y0, x0 + side, y0 + side


def box_in_patch(box: Sequence[float], square: Sequence[float], size: int) -> tuple[float, float, float, float]:
    """A frame-pixel box in the pixels of the `size`-pixel patch cut from `square` (the inverse of `to_frame`)."""
    x0, y0, x1, _ = (float(v) for v in square)
    scale = size / (x1 - x0)
    bx1, by1, bx2, by2 = (float(v) for v in box)
    return (bx1 - x0) * scale, (by1 - y0) * scale, (bx2 - x0) * scale, (by2 - y0) * scale


def square_patch(
    frame: np.ndarray,
    box: Sequence[float],
    margin: float = DEFAULT_MARGIN,
    size: int = DEFAULT_PATCH_SIZE,
    mask: np.ndarray | None = None,
) -> SquarePatch:
    """Cut the square around ``box`` (x1, y1, x2, y2 in frame pixels) out of ``frame``, resized to ``size``.

    ``frame`` is HxW or HxWxC; ``mask`` (optional) is HxW bool/uint8 in the same pixels. Raises ValueError for
    degenerate boxes and boxes that do not overlap the frame.
    """
    if frame.ndim not in (2, 3) or frame.shape[0] < 1 or frame.shape[1] < 1:
        raise ValueError(f"frame must be HxW or HxWxC, got shape {frame.shape}")
    if mask is not None and mask.shape[:2] != frame.shape[:2]:
        raise ValueError(f"mask shape {mask.shape} does not match frame {frame.shape[:2]}")
    if size < 1:
        raise ValueError(f"size must be >= 1, got {size}")
    h, w = frame.shape[:2]
    sq = square_box(box, margin)
    x0, y0, x1, y1 = sq
    side = x1 - x0
    scale = size / side
    ix0, iy0, ix1, iy1 = max(x0, 0), max(y0, 0), min(x1, w), min(y1, h)
    bx1, by1, bx2, by2 = (float(v) for v in box)
    if bx2 <= 0 or by2 <= 0 or bx1 >= w or by1 >= h:
        raise ValueError(f"box {tuple(box)} does not overlap the {w}x{h} frame")

    # Output span of the in-frame part; rounding places the seam to within half an output pixel.
    ox0, oy0 = round((ix0 - x0) * scale), round((iy0 - y0) * scale)
    ox1, oy1 = round((ix1 - x0) * scale), round((iy1 - y0) * scale)
    interp = cv2.INTER_AREA if scale < 1.0 else cv2.INTER_LINEAR

    def place(src: np.ndarray) -> np.ndarray:
        out = np.zeros((size, size) + src.shape[2:], dtype=src.dtype)
        if ox1 > ox0 and oy1 > oy0:
            crop = np.ascontiguousarray(src[iy0:iy1, ix0:ix1])
            resized = cv2.resize(crop, (ox1 - ox0, oy1 - oy0), interpolation=interp)
            out[oy0:oy1, ox0:ox1] = resized.reshape((oy1 - oy0, ox1 - ox0) + src.shape[2:])
        return out

    image = place(frame)
    patch_mask = None
    if mask is not None:
        patch_mask = place(np.where(mask.astype(bool), np.uint8(255), np.uint8(0))) >= 128
    return SquarePatch(image=image, mask=patch_mask, square=sq, scale=scale)


# ---------------------------------------------------------------------------------------------------------------
# The detect stage: windows in, person patches out.

def detect_window(detector, window: Window, margin: float, patch_size: int) -> tuple[list[Patch], WindowDone]:
    """Run the anchor (the window's last frame); only when it has a person, run the burst frames too.

    Returns the patches and the window's WindowDone. Pure apart from the detector call, so the one-shot `extract`
    command and the benchmark use it as the daemon does."""
    frames = window.frames
    anchor_dets = detector.detect([frames[-1]])[0]
    per_frame = {len(frames) - 1: anchor_dets}
    if anchor_dets and len(frames) > 1:
        for i, dets in enumerate(detector.detect(list(frames[:-1]))):
            per_frame[i] = dets
    video = {"video_id": window.video_id, "attempt": window.attempt, "domain": window.domain}
    patches = []
    for i in sorted(per_frame):
        kind = "anchor" if i == len(frames) - 1 else "burst"
        for person, det in enumerate(per_frame[i]):
            try:
                sq = square_patch(frames[i], det.box, margin, patch_size, mask=det.mask)
            except ValueError as exc:
                BOXES_SKIPPED.labels("degenerate").inc()
                log.debug("skipping box %s: %s", det.box, exc)
                continue
            patches.append(Patch(
                **video, window_index=window.window_index, frame_index=window.frame_indices[i],
                person_index=person, kind=kind, timestamp=window.timestamps[i],
                box=[round(v, 2) for v in det.box], square=[round(float(v), 2) for v in sq.square],
                score=round(det.score, 5), image=sq.image, mask=sq.mask.astype(np.uint8) * 255))
    done = WindowDone(**video, window_index=window.window_index, patches=len(patches), anchor_hit=bool(anchor_dets),
                      frames=len(per_frame))
    return patches, done


def failed_window(window: Window) -> WindowDone:
    """The WindowDone of a window that could not be detected: no patches, so the video still completes."""
    return WindowDone(video_id=window.video_id, attempt=window.attempt, domain=window.domain,
                      window_index=window.window_index, patches=0, anchor_hit=False, frames=1)


def build_detector(settings: DetectSettings):
    from humanstyle.models.detection import PersonDetector
    from humanstyle.models.weights import WeightsError, seed_random_init

    try:
        seed_random_init(settings.weights)
        return PersonDetector(weights=settings.weights, device=settings.device,
                              score_threshold=settings.score_threshold, max_persons=settings.max_persons,
                              min_box_side=settings.min_box_side, min_size=settings.min_size,
                              max_size=settings.max_size, batch_size=settings.batch_size, allow_download=False,
                              proposals=settings.proposals)
    except WeightsError as exc:
        raise StageFatal(str(exc)) from None


class DetectHandler(Handler):
    """Windows in; each window's patches, then its WindowDone, out."""

    passes = (VideoEnd,)  # the index needs it; it travels the same path as the results

    def __init__(self, detector, settings: DetectSettings) -> None:
        self.detector, self.margin, self.patch_size = detector, settings.margin, settings.patch_size
        self.routes = {Window: Route(self.detect, on_error=self.failed)}

    def detect(self, windows: list[Window], out: Outbox) -> None:
        for window in windows:
            patches, done = detect_window(self.detector, window, self.margin, self.patch_size)
            record_window_metrics(done)
            for patch in patches:
                out.send(patch)
            out.send(done)

    def failed(self, windows: list[Window], out: Outbox) -> None:
        for window in windows:
            done = failed_window(window)
            record_window_metrics(done)
            out.send(done)


def record_window_metrics(done: WindowDone) -> None:
    FRAMES_DETECTED.labels(done.domain, "anchor").inc()
    if done.frames > 1:
        FRAMES_DETECTED.labels(done.domain, "burst").inc(done.frames - 1)
    PERSONS_DETECTED.labels(done.domain).inc(done.patches)
    MODEL_CALLS.labels("maskrcnn").inc(2 if done.frames > 1 else 1)
