"""tests/data/views/keypoint_rcnn.py: the daemon's Keypoint R-CNN as one more keypoint source of the view dev set.
The real run needs pretrained weights (not here); this checks the plumbing with the real architecture."""

from __future__ import annotations

import importlib.util
import json
from pathlib import Path

import numpy as np
import pytest

from humanstyle.models.detection import KeypointEstimator
from humanstyle.models.weights import seed_random_init

SCRIPT = Path(__file__).resolve().parents[1] / "data" / "views" / "keypoint_rcnn.py"


@pytest.fixture(scope="module")
def script():
    spec = importlib.util.spec_from_file_location("views_keypoint_rcnn", SCRIPT)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_each_patch_gets_a_case_with_the_own_persons_keypoints_or_the_reason(script):
    doc = json.loads((SCRIPT.parent / "cases.json").read_text())
    base = [c for c in doc["cases"] if c["keypoints_from"] == "mediapipe"][:2]
    patches = {c["id"].rsplit(".", 1)[0]: np.random.default_rng(i).integers(0, 255, (256, 256, 3), dtype=np.uint8)
               for i, c in enumerate(base)}
    # Random weights (seeded, as the daemon seeds them) find boxes anywhere: overlap 0 keeps one, the daemon's 0.5
    # finds none of them the patch's person, a score threshold of 1 finds nobody.
    seed_random_init("none")
    estimators = {None: KeypointEstimator("none", device="cpu", box_score_threshold=0.0, proposals=20, min_overlap=0.0),
                  "no_matching_person": KeypointEstimator("none", device="cpu", box_score_threshold=0.0, proposals=20),
                  "no_person": KeypointEstimator("none", device="cpu", box_score_threshold=1.0)}
    for missing, estimator in estimators.items():
        cases = script.keypoint_rcnn_cases(doc["cases"], patches, estimator)
        assert [c["id"] for c in cases] == [f"{k}.keypoint_rcnn" for k in patches]
        for case, source in zip(cases, base, strict=True):
            assert case["keypoints_from"] == "keypoint_rcnn"
            assert (case["label"], case["box"], case["person"]) == (source["label"], source["box"], source["person"])
            assert case.get("keypoints_missing") == missing
            if missing:
                assert case["keypoints"] is None
            else:
                assert len(case["keypoints"]) == 17 and all(0.0 <= p[2] <= 1.0 for p in case["keypoints"])


def test_random_weights_are_refused_before_anything_is_read(script, tmp_path):
    cases = tmp_path / "cases.json"
    with pytest.raises(SystemExit, match="random weights"):
        script.main(["--super-gradients", str(tmp_path), "--cvpr19", str(tmp_path), "--litehrnet", str(tmp_path),
                     "--weights", "none", "--cases", str(cases)])
    assert not cases.exists()


def test_missing_pretrained_weights_stop_with_the_daemons_message(script, tmp_path, monkeypatch):
    monkeypatch.setenv("TORCH_HOME", str(tmp_path / "empty-cache"))
    with pytest.raises(SystemExit, match="not in the torch hub cache|does not exist|cannot"):
        script.main(["--super-gradients", str(tmp_path), "--cvpr19", str(tmp_path), "--litehrnet", str(tmp_path),
                     "--weights", "DEFAULT", "--cases", str(tmp_path / "cases.json")])
