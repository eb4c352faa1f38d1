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
import time
from collections.abc import Sequence
from dataclasses import dataclass

import cv2
import numpy as np

from daemon import metrics, wire
from daemon.config import Settings
from daemon.fabric import Fabric, StopFlag, Stopping
from daemon.stage_main import StageFatal, model_threads, seed_random_init

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
# The detect stage process: windows in, person patches out.

def detect_window(detector, window: wire.Message, margin: float, patch_size: int) -> tuple[list[wire.Message], dict]:
    """Run the anchor (the window's last frame); only when it has a person, run the burst frames too.

    Returns the patch messages and the window_done fields. Pure apart from the detector call, so the one-shot
    `extract` command and the benchmark use it as the daemon does."""
    f = window.fields
    frames = window.arrays["frames"]
    anchor_dets = detector.detect([frames[-1]])[0]
    per_frame = {len(frames) - 1: anchor_dets}
    if anchor_dets and len(frames) > 1:
        for i, dets in enumerate(detector.detect(list(frames[:-1]))):
            per_frame[i] = dets
    patches = []
    for i in sorted(per_frame):
        kind = "anchor" if i == len(frames) - 1 else "burst"
        for person, det in enumerate(per_frame[i]):
            try:
                sq = square_patch(frames[i], det.box, margin, patch_size, mask=det.mask)
            except ValueError as exc:
                metrics.BOXES_SKIPPED.labels("degenerate").inc()
                log.debug("skipping box %s: %s", det.box, exc)
                continue
            patches.append(wire.make(
                "patch", arrays={"image": sq.image, "mask": sq.mask.astype(np.uint8) * 255},
                video_id=f["video_id"], attempt=f["attempt"], domain=f["domain"], window_index=f["window_index"],
                frame_index=f["frame_indices"][i], person_index=person, kind=kind, timestamp=f["timestamps"][i],
                box=[round(v, 2) for v in det.box], square=[round(float(v), 2) for v in sq.square],
                score=round(det.score, 5)))
    done = {"video_id": f["video_id"], "attempt": f["attempt"], "domain": f["domain"],
            "window_index": f["window_index"], "patches": len(patches), "anchor_hit": bool(anchor_dets),
            "frames": len(per_frame)}
    return patches, done


def failed_window(window: wire.Message) -> dict:
    """window_done fields for a window that could not be detected: no patches, so the video still completes."""
    f = window.fields
    return {"video_id": f["video_id"], "attempt": f["attempt"], "domain": f["domain"],
            "window_index": f["window_index"], "patches": 0, "anchor_hit": False, "frames": 1}


def build_detector(settings: Settings):
    from models.detection import PersonDetector
    from models.weights import WeightsError

    d = settings.detect
    try:
        seed_random_init(d.weights)
        return PersonDetector(weights=d.weights, device=d.device, score_threshold=d.score_threshold,
                              max_persons=d.max_persons, min_box_side=d.min_box_side, min_size=d.min_size,
                              max_size=d.max_size, batch_size=d.batch_size, allow_download=False,
                              proposals=d.proposals)
    except WeightsError as exc:
        raise StageFatal(str(exc)) from None


def run(settings: Settings, index: int, stop: StopFlag) -> None:
    from models.detection import set_torch_threads

    set_torch_threads(model_threads(settings, settings.detect.threads))
    detector = build_detector(settings)
    fab = Fabric(settings, "detect", stop)
    windows = fab.receiver("windows", [f"windows.{i}" for i in range(settings.decode.workers)], bind=False)
    out = fab.sender("patches", [f"patches.{index}"], bind=True)
    fab.mark_ready()
    try:
        while not stop.set:
            msg = windows.recv(200)
            if msg is None:
                continue
            if msg.type == "video_end":
                out.send(msg)  # the index needs it; it travels the same path as the results
                continue
            if msg.type != "window":
                metrics.MESSAGES_REJECTED.labels("detect", "unexpected_type").inc()
                continue
            started = time.monotonic()
            try:
                patches, done = detect_window(detector, msg, settings.detect.margin, settings.detect.patch_size)
            except Exception as exc:  # one bad window must not take the stage (and its queue) down
                log.exception("window %d of video %d failed", msg["window_index"], msg["video_id"])
                metrics.ERRORS.labels("detect", type(exc).__name__).inc()
                patches, done = [], failed_window(msg)
            record_window_metrics(done, len(patches))
            for patch in patches:
                out.send(patch)
            out.send(wire.make("window_done", **done))
            metrics.mark_work_done("detect", started)
    except Stopping as exc:
        log.warning("detect-%d: %s", index, exc)
    finally:
        fab.close()


def record_window_metrics(done: dict, persons: int) -> None:
    domain = done["domain"]
    metrics.FRAMES_DETECTED.labels(domain, "anchor").inc()
    if done["frames"] > 1:
        metrics.FRAMES_DETECTED.labels(domain, "burst").inc(done["frames"] - 1)
    metrics.PERSONS_DETECTED.labels(domain).inc(persons)
    metrics.MODEL_CALLS.labels("maskrcnn").inc(2 if done["frames"] > 1 else 1)
