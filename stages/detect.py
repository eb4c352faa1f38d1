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

import math
from collections.abc import Sequence
from dataclasses import dataclass

import cv2
import numpy as np

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
