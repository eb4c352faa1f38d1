"""bench/pairing_quality.py's look-up across keypoint models: the same patch's pose from two sources."""

from __future__ import annotations

import numpy as np

from bench.pairing_quality import _flip, cross_model


def _pose(rng: np.random.Generator) -> list[list[float]]:
    """A full-body pose: 17 keypoints scattered over a person-sized box, all confidently seen."""
    xy = np.column_stack([rng.uniform(80, 180, 17), np.sort(rng.uniform(20, 240, 17))])
    return np.column_stack([xy, np.ones(17)]).tolist()


def _case(crop: str, person: str, source: str, kp: list) -> dict:
    return {"id": f"{crop}.{source}", "person": person, "label": "FULL-BODY-FRONT", "keypoints_from": source,
            "keypoints": kp, "size": [256, 256]}


def test_the_same_pose_from_two_sources_is_found_and_a_mirrored_one_is_flagged():
    rng = np.random.default_rng(3)
    poses = [_pose(rng) for _ in range(6)]
    cases = []
    for i, kp in enumerate(poses):
        noisy = (np.asarray(kp) + np.r_[rng.normal(0, 1.0, (17, 2)).T, np.zeros((1, 17))].T).tolist()
        cases += [_case(f"p{i}.full", f"p{i}", "annotation", kp), _case(f"p{i}.full", f"p{i}", "movenet", noisy)]
    # A third source reports the first person as on the mirrored image.
    flipped = _flip(np.asarray(poses[0]), 256.0)
    cases += [_case("p0.full", "p0", "mediapipe", flipped.tolist()), _case("p1.full", "p1", "mediapipe", poses[1])]
    result = cross_model(cases, 0.99)
    moved = result["movenet -> annotation FULL-BODY-FRONT"]
    assert (moved["queries"], moved["found"], moved["true_match_at_threshold"]) == (6, 6, 6)
    assert moved["true_match_mirrored"] == 0
    mirrored = result["mediapipe -> annotation FULL-BODY-FRONT"]
    assert mirrored["queries"] == 2 and mirrored["true_match_mirrored"] == 1
