"""Real people for tests of the video path, without a detector's weights: the MediaPipe Pose masks stored under
tests/data/video/people/ (how they were made, and how good they are: tests/data/video/SOURCES.md), replayed frame
by frame through the detector's own interface.

A scripted detector answers with what a real model saw in those very frames, so a test of tracking, patch cutting
or masking in `translate-video` runs on real silhouettes (hair, a pan in a hand, a misaligned edge) rather than on
rectangles, and stays deterministic and fast on CPU.

Format of <stem>.npz (np.savez_compressed), N = frames with a person, at most one person per frame:
    frame_index (N,) int32   decoded frame (PyAV, stream 0, in order) each row belongs to
    box         (N,4) float32 x1, y1, x2, y2: the mask's tight box, x2/y2 exclusive
    score       (N,) float32  mean visibility of MediaPipe's 33 landmarks, in [0, 1]
    mask        (N,ceil(h*w/8)) uint8  np.packbits of each h x w bool mask, row-major
    shape       (2,) int32    (H, W) of the frames
    frames      () int32      frames decoded in all (frames without a row have no person)
    mask_scale  () int32      the stored mask is the frame mask taken every mask_scale pixels (h = ceil(H/scale))
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from humanstyle.models.detection import PersonDetection

PEOPLE_DIR = Path(__file__).resolve().parent / "data" / "video" / "people"
PERSON_LABEL = 1  # COCO's person, as the real detector reports it


def load_people(stem: str) -> list[list[PersonDetection]]:
    """One list per decoded frame of tests/data/video/<stem>.*: the person seen there ([] when none)."""
    data = np.load(PEOPLE_DIR / f"{stem}.npz")
    height, width = (int(v) for v in data["shape"])
    scale = int(data["mask_scale"]) if "mask_scale" in data else 1
    h, w = -(-height // scale), -(-width // scale)
    per_frame: list[list[PersonDetection]] = [[] for _ in range(int(data["frames"]))]
    for row, index in enumerate(data["frame_index"]):
        mask = np.unpackbits(data["mask"][row], count=h * w).reshape(h, w).astype(bool)
        if scale > 1:
            mask = np.repeat(np.repeat(mask, scale, axis=0), scale, axis=1)[:height, :width]
        box = tuple(float(v) for v in data["box"][row])
        per_frame[int(index)].append(PersonDetection(box, float(data["score"][row]), mask, PERSON_LABEL))
    return per_frame


def people_shape(stem: str) -> tuple[int, int]:
    """(H, W) of the frames the stored people belong to."""
    return tuple(int(v) for v in np.load(PEOPLE_DIR / f"{stem}.npz")["shape"])


class ScriptedDetector:
    """Stands in for `PersonDetector`: each call answers for the next frames of the clip, in decoding order.

    It checks what it can of the frames it is handed (their size) and refuses to run past the clip's end, so a test
    whose pipeline skips, repeats or resizes frames fails loudly instead of pairing frames with another frame's
    people.
    """

    def __init__(self, per_frame: list[list[PersonDetection]]) -> None:
        self.per_frame = per_frame
        self.position = 0
        self.shape = next((d.mask.shape for dets in per_frame for d in dets), None)

    def detect(self, frames: list[np.ndarray]) -> list[list[PersonDetection]]:
        if self.position + len(frames) > len(self.per_frame):
            raise ValueError(f"asked for frames {self.position}..{self.position + len(frames) - 1}, "
                             f"the clip has {len(self.per_frame)}")
        for k, frame in enumerate(frames):
            if self.shape is not None and tuple(frame.shape[:2]) != tuple(self.shape):
                raise ValueError(f"frame {self.position + k} is {frame.shape[:2]}, the people were found in "
                                 f"{self.shape} frames")
        answer = [list(dets) for dets in self.per_frame[self.position:self.position + len(frames)]]
        self.position += len(frames)
        return answer
