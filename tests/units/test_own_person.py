"""The keypoints kept for a patch belong to the person the patch was cut around, not to a higher-scoring neighbour."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from humanstyle.models.detection import KeypointEstimator, KeypointResult, box_iou, choose_person
from humanstyle.stages.classify import classify_patches
from humanstyle.stages.detect import box_in_patch, square_patch
from humanstyle.stages.records import Patch

OWN = (60.0, 40.0, 180.0, 250.0)  # the person the patch is centred on (patch pixels, 256 px patch)
NEIGHBOUR = (150.0, 10.0, 256.0, 256.0)  # someone beside them, reaching into the square


def test_box_iou_known_values():
    assert box_iou(np.array([[0, 0, 10, 10]]), np.array([0, 0, 10, 10]))[0] == pytest.approx(1.0)
    assert box_iou(np.array([[0, 0, 10, 10]]), np.array([5, 0, 15, 10]))[0] == pytest.approx(50 / 150)
    assert box_iou(np.array([[0, 0, 10, 10]]), np.array([20, 20, 30, 30]))[0] == 0.0


def test_choose_person_prefers_overlap_over_score():
    boxes = np.array([NEIGHBOUR, OWN])
    assert choose_person(boxes, np.array([0.99, 0.6]), OWN, 0.5) == 1
    assert choose_person(boxes, np.array([0.99, 0.6]), NEIGHBOUR, 0.5) == 0


def test_choose_person_none_when_nobody_matches_and_ties_by_score():
    boxes = np.array([NEIGHBOUR, OWN])
    far = (0.0, 0.0, 30.0, 30.0)
    assert choose_person(boxes, np.array([0.9, 0.8]), far, 0.5) is None
    assert choose_person(np.empty((0, 4)), np.empty(0), OWN, 0.5) is None
    same = np.array([OWN, OWN])
    assert choose_person(same, np.array([0.4, 0.7]), OWN, 0.5) == 1


def test_box_in_patch_inverts_the_patch_geometry():
    frame = np.zeros((480, 640, 3), np.uint8)
    box = (200.0, 100.0, 300.0, 400.0)
    sq = square_patch(frame, box, margin=0.15, size=256)
    x1, y1, x2, y2 = box_in_patch(box, sq.square, 256)
    assert sq.to_frame(x1, y1) == pytest.approx(box[:2])
    assert sq.to_frame(x2, y2) == pytest.approx(box[2:])


class TwoPeople:
    """A scripted keypoint backend: the box head 'finds' the neighbour (higher score) and the patch's own person,
    in the resized pixels torchvision's post-processing works in."""

    def __init__(self, estimator: KeypointEstimator) -> None:
        self.estimator = estimator

    def __call__(self, class_logits, box_regression, proposals, image_shapes):
        scale = self.estimator._scale
        boxes = torch.tensor([NEIGHBOUR, OWN], dtype=torch.float32) * scale
        n = len(image_shapes)
        return ([boxes.clone() for _ in range(n)], [torch.tensor([0.95, 0.7]) for _ in range(n)],
                [torch.tensor([1, 1]) for _ in range(n)])


@pytest.fixture(scope="module")
def scripted():
    torch.manual_seed(0)
    est = KeypointEstimator("none", device="cpu", box_score_threshold=0.0, batch_size=2, proposals=20)
    est._postprocess = TwoPeople(est)
    return est


def test_scripted_two_people_keeps_the_patch_owner(scripted):
    patches = [np.full((256, 256, 3), 90, np.uint8), np.full((256, 256, 3), 30, np.uint8)]
    by_score = scripted.estimate(patches)
    assert [r.box for r in by_score] == [pytest.approx(NEIGHBOUR, abs=1e-3)] * 2
    own = scripted.estimate_own(patches, [OWN, NEIGHBOUR])
    assert own[0][1] is None and own[0][0].box == pytest.approx(OWN, abs=1e-3)
    assert own[1][1] is None and own[1][0].box == pytest.approx(NEIGHBOUR, abs=1e-3)
    # Keypoints come from the chosen box: they lie inside it (Keypoint R-CNN predicts within the box).
    kp = own[0][0].keypoints
    assert (kp[:, 0] >= OWN[0] - 1).all() and (kp[:, 0] <= OWN[2] + 1).all()


def test_scripted_two_people_none_matching(scripted):
    patches = [np.full((256, 256, 3), 90, np.uint8)]
    assert scripted.estimate_own(patches, [(0.0, 0.0, 20.0, 20.0)]) == [(None, "no_matching_person")]


def test_estimate_own_checks_target_count(scripted):
    with pytest.raises(ValueError, match="target boxes"):
        scripted.estimate_own([np.zeros((64, 64, 3), np.uint8)], [])


class RecordingEstimator:
    """Returns a fixed answer per patch and records the target boxes the classifier asked for."""

    def __init__(self, answers):
        self.answers = answers
        self.targets = None

    def estimate_own(self, images, targets):
        self.targets = targets
        return self.answers


def patch_message(box, square, size=256):
    return Patch(image=np.zeros((size, size, 3), np.uint8), mask=np.zeros((size, size), np.uint8), video_id=1,
                 attempt=1, domain="movie", window_index=0, frame_index=0, person_index=0, kind="anchor",
                 timestamp=0.0, box=list(box), square=list(square), score=0.9)


def test_classify_patches_passes_the_detector_box_and_rejects_unmatched():
    frame_box, square = (200.0, 100.0, 300.0, 400.0), (55, 55, 445, 445)
    kp = np.zeros((17, 3), np.float32)
    est = RecordingEstimator([(None, "no_matching_person"), (KeypointResult(kp, 0.8, OWN), None)])
    out = classify_patches(est, [patch_message(frame_box, square), patch_message(frame_box, square)], 0.5)
    assert est.targets[0] == pytest.approx(box_in_patch(frame_box, square, 256))
    assert (out[0].view, out[0].reason) == ("REJECTED", "no_matching_person")
    assert (out[1].view, out[1].reason) == ("REJECTED", "too_few_keypoints")


def _standing(box: tuple[float, float, float, float]) -> list[list[float]]:
    """17 keypoints spread down the middle of `box`, all labelled (enough to tell two people apart)."""
    x1, y1, x2, y2 = box
    return [[(x1 + x2) / 2 + (k % 2) * 10, y1 + (y2 - y1) * k / 17, 1.0] for k in range(17)]


def test_own_person_bench_counts_a_neighbour_kept_by_score():
    """bench/own_person.py with a real model's people: the higher-scoring neighbour is what keep=1 keeps; the overlap
    choice keeps the patch's own person; a found person far from everybody annotated is nobody's."""
    from bench.own_person import is_own, real_model

    case = {"keypoints": _standing(OWN), "box": list(OWN), "size": [256, 256],
            "others": [{"box": list(NEIGHBOUR), "keypoints": _standing(NEIGHBOUR)}],
            "multipose": [{"box": list(NEIGHBOUR), "score": 0.9, "keypoints": _standing(NEIGHBOUR)},
                          {"box": list(OWN), "score": 0.5, "keypoints": _standing(OWN)}]}
    assert is_own(np.asarray(_standing(OWN)), case)
    assert not is_own(np.asarray(_standing(NEIGHBOUR)), case)
    assert not is_own(np.asarray(_standing((0.0, 0.0, 40.0, 60.0))), case)
    counts = real_model([case], 0.5)
    at = counts["0.1"]
    assert (at["by_score_own"], at["by_overlap_own"], at["by_overlap_other"], at["own_found"]) == (0, 1, 0, 1)
    assert counts["0.3"]["by_overlap_own"] == 1 and real_model([{**case, "multipose": []}], 0.5)["0.1"][
        "nobody_found"] == 1
