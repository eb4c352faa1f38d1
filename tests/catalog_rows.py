"""Patch rows for tests that fill a catalog: the fields the pipeline records for a patch, with defaults a test
overrides where it matters to it."""

from __future__ import annotations

import numpy as np

from humanstyle.stages.store.catalog import Catalog


def patch_fields(video_id: int, domain: str, frame: int, view: str = "FULL-BODY-FRONT", **overrides) -> dict:
    fields = {"video_id": video_id, "domain": domain, "window_index": 0, "frame_index": frame, "person_index": 0,
              "kind": "anchor", "timestamp": 0.0, "box": [0, 0, 1, 1], "square": [0, 0, 1, 1], "score": 0.9,
              "view": view, "reason": "", "keypoint_score": 0.5}
    return {**fields, **overrides}


def add_patch(cat: Catalog, video_id: int, domain: str, frame: int, view: str = "FULL-BODY-FRONT", *,
              path: str | None = None, keypoints: np.ndarray | None = None, **overrides) -> int:
    """Record a patch (its file at `path`, default patches/<domain>/<view>/<frame>.png) and return its id."""
    keypoints = np.zeros((17, 3), np.float32) if keypoints is None else keypoints
    path = path or f"patches/{domain}/{view}/{frame}.png"
    return cat.add_patch(patch_fields(video_id, domain, frame, view, **overrides), keypoints, path)[0]
