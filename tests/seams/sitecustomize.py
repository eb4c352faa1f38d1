"""Test seam: plausible poses from a random-init keypoint model, in every process of a daemon under test.

End-to-end tests run the real daemon with `weights = "none"`: real architectures, random weights. Random keypoints
are random geometry, and the view rules (tuned on real people) reject nearly all of them, so without this seam a
test daemon would mine no views and no pairs and the pair, trainer and recovery tests would prove nothing.

With HUMANSTYLE_TEST_POSES=1 in the environment and this folder on PYTHONPATH (tests/harness.py does both), every
Python process of the daemon, stage processes spawned later included, replaces the keypoints of each person the
real Keypoint R-CNN found with a canonical pose drawn in that person's box. Which pose (front or back, full body or
head and shoulders, or a side view the rules reject) is a pure function of the patch's pixels, so the same frames
always give the same views: redone work equals undisturbed work, and the same clip in both domains pairs. The model
itself still runs (its cost, its batching, and whether it finds anybody are real). Nothing here is imported by the
product.
"""

from __future__ import annotations

import hashlib
import importlib.abc
import importlib.util
import os
import sys

TARGET = "humanstyle.models.detection"

# A person facing the camera in a unit box: their left side on the image's right (larger x).
FRONT = [
    (0.50, 0.08), (0.55, 0.05), (0.45, 0.05), (0.60, 0.07), (0.40, 0.07),  # nose, eyes, ears
    (0.72, 0.22), (0.28, 0.22), (0.80, 0.40), (0.20, 0.40), (0.82, 0.55), (0.18, 0.55),  # shoulders, elbows, wrists
    (0.64, 0.52), (0.36, 0.52), (0.65, 0.74), (0.35, 0.74), (0.66, 0.97), (0.34, 0.97),  # hips, knees, ankles
]  # fmt: skip
POSES = ("full-front", "hs-front", "full-back", "hs-back", "side")


def canonical_pose(kind: str, box, patch_height: float):
    import numpy as np

    x1, y1, x2, y2 = (float(v) for v in box)
    unit = np.array(FRONT, dtype=np.float32)
    conf = np.full(17, 0.95, dtype=np.float32)
    if kind.endswith("back"):
        unit[:, 0] = 1.0 - unit[:, 0]  # seen from behind: positions mirror, labels stay
        conf[:3] = 0.05  # no face
    if kind == "side":
        unit[5:, 0] = 0.5 + (unit[5:, 0] - 0.5) * 0.1  # shoulders and hips seen edge-on
    kp = np.zeros((17, 3), dtype=np.float32)
    kp[:, 0] = x1 + unit[:, 0] * (x2 - x1)
    kp[:, 1] = y1 + unit[:, 1] * (y2 - y1)
    kp[:, 2] = conf
    hidden = conf < 0.5
    if kind.startswith("hs"):
        hidden[11:] = True  # hips and legs not shown
    elif kind.startswith("full"):
        kp[13:, 1] = np.minimum(kp[13:, 1], patch_height * 0.55)  # room for the shin below the knee
    kp[hidden, :2] = -1.0  # outside the patch: invisible whatever confidence cut a test configures
    return kp


def pose_for(patch) -> str:
    digest = hashlib.sha256(patch.tobytes()).digest()
    return POSES[digest[0] % len(POSES)]


def install(module) -> None:
    estimator = module.KeypointEstimator
    real = estimator.estimate_own

    def estimate_own(self, patches, targets):
        out = []
        found = real(self, patches, targets)
        for i, (patch, (result, reason)) in enumerate(zip(patches, found, strict=True)):
            if result is not None:
                # Drawn in the detector's box (the person the patch was cut around); random-init boxes are noise.
                box = targets[i] if targets is not None else result.box
                kp = canonical_pose(pose_for(patch), box, patch.shape[0])
                result = module.KeypointResult(kp, result.score, result.box)
            out.append((result, reason))
        return out

    estimator.estimate_own = estimate_own


class _PatchOnImport(importlib.abc.MetaPathFinder, importlib.abc.Loader):
    def find_spec(self, name, path, target=None):
        if name != TARGET:
            return None
        sys.meta_path.remove(self)
        try:
            spec = importlib.util.find_spec(name)
        finally:
            sys.meta_path.insert(0, self)
        if spec is None or spec.loader is None:
            return None
        self._loader = spec.loader
        spec.loader = self
        return spec

    def create_module(self, spec):
        return self._loader.create_module(spec)

    def exec_module(self, module):
        self._loader.exec_module(module)
        install(module)


if os.environ.get("HUMANSTYLE_TEST_POSES") == "1":
    sys.meta_path.insert(0, _PatchOnImport())
