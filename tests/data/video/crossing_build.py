"""crossing.mp4 and crossing.json: two real people walking towards each other, one passing in front of the other,
with boxes known from the construction, for measuring how a tracker keeps identities through an occlusion.

No small public clip with two people crossing and per-frame boxes was at hand, so the clip is composited from real
footage: the person of flipping_a_pancake.mkv cut out with the MediaPipe masks of tests/data/video/people/ (two
different time spans of the clip, the second mirrored so they face each other and do not move in step), pasted at
their own scale over a person-free street frame of bikes.mp4. Each person's own frames play (arms, head and pan
move as filmed); only their place in the picture is ours: a straight walk across the street, one left to right,
the other right to left. Person 0 is pasted last, so it passes in front of person 1.

Ground truth comes from the construction, not from a detector:
    box          the tight box of the person's pasted mask (the occluded person's full box, as if seen through)
    visible      the fraction of that mask not covered by the person in front (1.0 for person 0)
    visible_box  the tight box of the uncovered part, null when nothing of the person is seen
Frames are pasted with the mask as a hard cut-out, so `visible` is exact; the edges look cut out, which a tracker
fed with boxes does not see.

Run from the repository root with the project's venv: .venv/bin/python tests/data/video/crossing_build.py
"""

from __future__ import annotations

import json
from pathlib import Path

import av
import numpy as np

VIDEO = Path(__file__).resolve().parent
SOURCE, BACKGROUND = VIDEO / "flipping_a_pancake.mkv", VIDEO / "bikes.mp4"
BACKGROUND_FRAME = 170  # the street behind the railing: no person in the shot (frames 164-177, checked by eye)
FPS = 25
FRAMES = 100  # 4 s
# Source frames of each person: 100 consecutive frames, all with a mask (the clip's gaps are at 0-12 and 282-308).
# The source is 30 fps, played at 25: motion 1.2 times slower than filmed, still a person's.
SPANS = {0: 40, 1: 140}
MIRROR = {0: False, 1: True}
# Centre x of each person's box at the first and last frame: they meet mid-street, halfway through the clip.
WALK = {0: (100.0, 540.0), 1: (540.0, 100.0)}


def decode(path: Path) -> list[np.ndarray]:
    with av.open(str(path)) as container:
        return [frame.to_ndarray(format="bgr24") for frame in container.decode(video=0)]


def load_masks(stem: str) -> dict[int, np.ndarray]:
    data = np.load(VIDEO / "people" / f"{stem}.npz")
    assert int(data["mask_scale"]) == 1
    h, w = (int(v) for v in data["shape"])
    return {int(i): np.unpackbits(data["mask"][r], count=h * w).reshape(h, w).astype(bool)
            for r, i in enumerate(data["frame_index"])}


def tight_box(mask: np.ndarray) -> list[float] | None:
    ys, xs = np.nonzero(mask)
    if len(xs) == 0:
        return None
    return [float(xs.min()), float(ys.min()), float(xs.max() + 1), float(ys.max() + 1)]


def paste(canvas_h: int, canvas_w: int, image: np.ndarray, mask: np.ndarray, centre_x: float):
    """The person's pixels and mask placed on a canvas: their box centred on centre_x, its bottom on the canvas's
    bottom (the source cuts the person at the knees, so they stand behind the lower edge of the picture)."""
    x1, y1, x2, y2 = (int(v) for v in tight_box(mask))
    crop, crop_mask = image[y1:y2, x1:x2], mask[y1:y2, x1:x2]
    left = int(round(centre_x - (x2 - x1) / 2))
    top = canvas_h - (y2 - y1)
    placed = np.zeros((canvas_h, canvas_w, 3), np.uint8)
    placed_mask = np.zeros((canvas_h, canvas_w), bool)
    # Clip at the canvas's left and right edges (the walk keeps them inside; this only guards).
    a, b = max(left, 0), min(left + crop.shape[1], canvas_w)
    placed[top:, a:b] = crop[:, a - left:b - left]
    placed_mask[top:, a:b] = crop_mask[:, a - left:b - left]
    return placed, placed_mask


def build() -> dict:
    source, masks = decode(SOURCE), load_masks("flipping_a_pancake")
    background = decode(BACKGROUND)[BACKGROUND_FRAME]
    h, w = background.shape[:2]
    truth: list[list[dict]] = []
    out_path = VIDEO / "crossing.mp4"
    with av.open(str(out_path), "w") as container:
        stream = container.add_stream("libx264", rate=FPS)
        stream.width, stream.height, stream.pix_fmt = w, h, "yuv420p"
        stream.options = {"crf": "23", "preset": "medium"}
        for t in range(FRAMES):
            canvas = background.copy()
            placed = {}
            for pid in (1, 0):  # back to front
                index = SPANS[pid] + t
                image, mask = source[index], masks[index]
                if MIRROR[pid]:
                    image, mask = image[:, ::-1], mask[:, ::-1]
                start, end = WALK[pid]
                cx = start + (end - start) * t / (FRAMES - 1)
                pixels, where = paste(h, w, image, mask, cx)
                canvas[where] = pixels[where]
                placed[pid] = where
            rows = []
            for pid in (0, 1):
                covered = np.zeros_like(placed[pid])
                if pid == 1:
                    covered = placed[0]
                seen = placed[pid] & ~covered
                rows.append({"id": pid, "box": tight_box(placed[pid]),
                             "visible": round(float(seen.sum() / placed[pid].sum()), 4),
                             "visible_box": tight_box(seen)})
            truth.append(rows)
            frame = av.VideoFrame.from_ndarray(canvas, format="bgr24")
            for packet in stream.encode(frame):
                container.mux(packet)
        for packet in stream.encode():
            container.mux(packet)
    doc = {"fps": FPS, "size": [w, h], "frames": truth,
           "made_by": "tests/data/video/crossing_build.py", "front": 0}
    (VIDEO / "crossing.json").write_text(json.dumps(doc, indent=None, separators=(",", ":")) + "\n")
    return doc


if __name__ == "__main__":
    doc = build()
    vis = [f[1]["visible"] for f in doc["frames"]]
    print(f"{len(doc['frames'])} frames, {doc['size']}; person 1 visible < 0.3 in {sum(v < 0.3 for v in vis)}, "
          f"< 1 in {sum(v < 1 for v in vis)}; {(VIDEO / 'crossing.mp4').stat().st_size} bytes")
