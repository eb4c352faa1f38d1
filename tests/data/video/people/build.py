"""Real person masks for three real clips, so that tests and benches of the video path can run a "detector" that
answers with what is really in the frames, without torchvision weights (which CI has not got).

MediaPipe Pose's legacy solution carries its model inside the wheel and runs offline, on CPU, in seconds per clip;
its segmentation mask is the person's silhouette, which is what the patch step cuts. It is run in tracking mode
(static_image_mode=False), as a video is meant to be read, and keeps at most one person per frame: both clips with
a usable person hold one.

Run with its own interpreter (MediaPipe pins numpy<2 and protobuf<5, which the project's venv does not):

    python3 -m venv /work/venvs/mediapipe
    /work/venvs/mediapipe/bin/pip install mediapipe==0.10.21 'numpy<2' 'protobuf<5' av
    /work/venvs/mediapipe/bin/python tests/data/video/people/build.py [stem ...]

Frames are decoded exactly as the tests decode them (PyAV, `to_ndarray(format="bgr24")`, every frame of stream 0
in order), so frame i of the file here is frame i there. Format of <stem>.npz: see tests/video_people.py.
"""

from __future__ import annotations

import sys
from pathlib import Path

import av
import mediapipe as mp
import numpy as np

HERE = Path(__file__).resolve().parent
VIDEO = HERE.parent
# bikes.mp4 was tried and left out: it is a montage of short shots, and MediaPipe, which looks for one person,
# marks a road marking, a bollard and a parked bicycle as people in shots with none (scores 0.43-0.74, as high as
# its real cyclists'), while the man in the suit gets a mask on his hand only. A fixture that lies is worse than none.
CLIPS = {"eye_makeup": "eye_makeup.avi", "flipping_a_pancake": "flipping_a_pancake.mkv"}
MASK_THRESHOLD = 0.5  # MediaPipe's own threshold in its examples: the mask is a probability
MASK_SCALE = 1  # stored mask = full resolution; 2 would halve each side (the npz says which)


def frames(path: Path):
    with av.open(str(path)) as container:
        for frame in container.decode(video=0):
            yield frame.to_ndarray(format="bgr24")


def build(stem: str) -> dict:
    index, boxes, scores, masks = [], [], [], []
    shape = None
    count = 0
    with mp.solutions.pose.Pose(static_image_mode=False, model_complexity=1, enable_segmentation=True) as pose:
        for i, bgr in enumerate(frames(VIDEO / CLIPS[stem])):
            count += 1
            shape = bgr.shape[:2]
            result = pose.process(np.ascontiguousarray(bgr[:, :, ::-1]))
            if result.pose_landmarks is None or result.segmentation_mask is None:
                continue
            mask = result.segmentation_mask >= MASK_THRESHOLD
            if not mask.any():
                continue
            ys, xs = np.nonzero(mask)
            index.append(i)
            boxes.append((xs.min(), ys.min(), xs.max() + 1, ys.max() + 1))
            vis = np.mean([lm.visibility for lm in result.pose_landmarks.landmark])
            scores.append(float(np.clip(vis, 0.0, 1.0)))
            masks.append(mask[::MASK_SCALE, ::MASK_SCALE])
    n = len(index)
    h, w = shape
    stored = np.zeros((n, (h + MASK_SCALE - 1) // MASK_SCALE, (w + MASK_SCALE - 1) // MASK_SCALE), bool)
    for j, m in enumerate(masks):
        stored[j] = m
    out = {
        "frame_index": np.asarray(index, np.int32),
        "box": np.asarray(boxes, np.float32).reshape(n, 4),
        "score": np.asarray(scores, np.float32),
        "mask": np.packbits(stored.reshape(n, -1), axis=1),
        "shape": np.asarray((h, w), np.int32),
        "frames": np.int32(count),
        "mask_scale": np.int32(MASK_SCALE),
    }
    np.savez_compressed(HERE / f"{stem}.npz", **out)
    return {"frames": count, "detections": n}


if __name__ == "__main__":
    for stem in sys.argv[1:] or list(CLIPS):
        print(stem, build(stem), f"{(HERE / f'{stem}.npz').stat().st_size} bytes", flush=True)
