"""View rules on hand-made COCO keypoints in a 256 x 256 patch."""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from hypothesis.extra.numpy import arrays

from humanstyle.stages.classify import (
    FULL_BODY_BACK,
    FULL_BODY_FRONT,
    HEAD_AND_SHOULDER_BACK,
    HEAD_AND_SHOULDER_FRONT,
    LABELS,
    REJECTED,
    REJECTION_REASONS,
    VIEWS,
    classify_keypoints,
    classify_with_reason,
)

SIZE = (256, 256)
# A person facing the camera: their left side is on the image's right (larger x).
FRONT_XY = [
    (128, 40), (134, 35), (122, 35), (140, 38), (116, 38),  # nose, eyes, ears
    (155, 70), (101, 70), (165, 110), (91, 110), (168, 145), (88, 145),  # shoulders, elbows, wrists
    (145, 140), (111, 140), (147, 190), (109, 190), (148, 235), (108, 235),  # hips, knees, ankles
]  # fmt: skip
FLIP = [0, 2, 1, 4, 3, 6, 5, 8, 7, 10, 9, 12, 11, 14, 13, 16, 15]  # left <-> right


def front(conf: float = 0.9) -> np.ndarray:
    kp = np.zeros((17, 3), np.float32)
    kp[:, :2] = FRONT_XY
    kp[:, 2] = conf
    return kp


def mirrored(kp: np.ndarray) -> np.ndarray:
    out = kp.copy()
    out[:, 0] = SIZE[0] - out[:, 0]
    return out


def back() -> np.ndarray:
    kp = mirrored(front())  # seen from behind, the person's left side is on the image's left
    kp[:3, 2] = 0.1  # no face
    return kp


def test_front_full_body():
    assert classify_with_reason(front(), SIZE) == (FULL_BODY_FRONT, None)
    assert classify_keypoints(front(), SIZE) == FULL_BODY_FRONT


def test_back_full_body_with_ears_but_no_face():
    assert classify_with_reason(back(), SIZE) == (FULL_BODY_BACK, None)


def test_back_head_and_shoulders():
    kp = back()
    kp[11:, 2] = 0.0
    assert classify_with_reason(kp, SIZE) == (HEAD_AND_SHOULDER_BACK, None)


def test_a_face_drawn_on_the_back_of_a_head_does_not_overrule_the_body():
    # Real keypoint models put eyes and nose, confidently, on the back of a head (bench/views.py); the body's
    # left/right layout decides. Positions mirror, labels do not: the body is seen from behind.
    assert classify_with_reason(mirrored(front()), SIZE) == (FULL_BODY_BACK, None)
    kp = mirrored(front())
    kp[11:, 2] = 0.0
    assert classify_with_reason(kp, SIZE) == (HEAD_AND_SHOULDER_BACK, None)


def test_shoulders_and_hips_that_disagree_are_conflicting():
    kp = front()
    kp[[11, 12], 0] = kp[[12, 11], 0]  # hips laid out as seen from behind, shoulders from the front
    assert classify_with_reason(kp, SIZE) == (REJECTED, "conflicting_orientation")


def test_a_face_in_profile_over_a_front_looking_body_is_conflicting():
    # Looking over the shoulder: models often draw the body as seen from the front; the profile gives it away.
    kp = front()
    kp[1, 0], kp[2, 0] = 131, 127  # eyes close together
    assert classify_with_reason(kp, SIZE) == (REJECTED, "conflicting_orientation")
    kp = front()
    kp[0, 0] = 150  # nose well outside the eyes
    assert classify_with_reason(kp, SIZE) == (REJECTED, "conflicting_orientation")


def test_three_quarter_front_view_is_kept():
    kp = front()
    kp[5, 0], kp[6, 0] = 140, 115  # shoulders turned: width 25 against a torso of 70
    assert classify_with_reason(kp, SIZE) == (FULL_BODY_FRONT, None)


def test_a_tilted_head_on_level_shoulders_is_upright():
    kp = front()
    kp[7:, 2] = 0.0  # head and shoulders only
    kp[:5, 0] += 30  # head leaning far to one side of the shoulders
    kp[:5, 1] += 10
    assert classify_with_reason(kp, SIZE) == (HEAD_AND_SHOULDER_FRONT, None)
    kp[5, 1] += 60  # one shoulder far below the other: the body itself is tilted
    assert classify_with_reason(kp, SIZE) == (REJECTED, "not_upright")


def test_head_cut_off_by_the_top_of_the_patch_has_no_head():
    kp = front()
    kp[:, 1] -= 30  # the whole person moves up: eyes at y = 5, the top of the head is outside the patch
    assert classify_with_reason(kp, SIZE) == (REJECTED, "no_head")


def test_one_knee_below_the_confidence_cut_is_still_full_body():
    kp = front()
    kp[14, 2] = 0.2  # one knee occluded or in shadow
    assert classify_with_reason(kp, SIZE) == (FULL_BODY_FRONT, None)


def test_knees_on_the_bottom_edge_are_a_person_cut_at_the_thigh():
    kp = front()
    kp[13:15, 1] = 250  # where a model puts the knees of a person the patch cuts at the thigh
    kp[15:, 2] = 0.0
    assert classify_with_reason(kp, SIZE) == (HEAD_AND_SHOULDER_FRONT, None)


def test_mirrored_image_as_a_keypoint_model_reports_it_stays_front():
    # a model labels a mirrored frontal photo anatomically: positions mirror and left/right labels swap
    assert classify_keypoints(mirrored(front())[FLIP], SIZE) == FULL_BODY_FRONT


def test_legs_cut_off_by_the_patch_is_head_and_shoulders():
    kp = front()
    kp[13:, 1] += 100  # knees and ankles below the patch
    assert classify_with_reason(kp, SIZE) == (HEAD_AND_SHOULDER_FRONT, None)
    kp[11:13, 1] += 150  # hips too
    assert classify_with_reason(kp, SIZE) == (HEAD_AND_SHOULDER_FRONT, None)


def test_occluded_knees_is_head_and_shoulders():
    kp = front()
    kp[13:, 2] = 0.2
    assert classify_keypoints(kp, SIZE) == HEAD_AND_SHOULDER_FRONT


def test_head_and_shoulders_only():
    kp = front()
    kp[7:, 2] = 0.0
    assert classify_with_reason(kp, SIZE) == (HEAD_AND_SHOULDER_FRONT, None)


@pytest.mark.parametrize(
    ("edit", "reason"),
    [
        (lambda kp: kp.__setitem__((slice(None), 2), 0.3), "too_few_keypoints"),
        (lambda kp: kp.__setitem__((6, 2), 0.1), "no_shoulders"),
        (lambda kp: kp.__setitem__((5, 0), 400.0), "no_shoulders"),  # outside the patch
        (lambda kp: kp.__setitem__((slice(0, 5), 2), 0.0), "no_head"),
        (lambda kp: kp.__setitem__((slice(11, 13), 1), 10.0), "not_upright"),  # hips above the shoulders
        (lambda kp: kp.__setitem__((slice(5, 7), 0), (131.0, 125.0)), "side_view"),
    ],
)
def test_rejections(edit, reason):
    kp = front()
    edit(kp)
    assert classify_with_reason(kp, SIZE) == (REJECTED, reason)


def test_ambiguous_when_no_cue_votes():
    kp = front()
    kp[1:5, 2] = 0.0  # only the nose: the face cue abstains
    kp[5, :2], kp[6, :2] = (129, 60), (127, 105)  # shoulders stacked: wide enough, but no left/right offset
    kp[11, :2], kp[12, :2] = (129, 140), (127, 170)  # hips likewise, below them
    kp[0, :2] = (128, 35)
    kp[13:, 2] = 0.0
    assert classify_with_reason(kp, SIZE) == (REJECTED, "ambiguous_orientation")


def test_lying_person_is_not_upright():
    kp = front()
    kp[:, :2] = kp[:, ::-1][:, 1:]  # swap x and y: the body lies along the image's x axis
    assert classify_with_reason(kp, SIZE) == (REJECTED, "not_upright")


def test_no_person_and_nan_safety():
    assert classify_with_reason(None, SIZE) == (REJECTED, "no_person")
    kp = front()
    kp[13:15, :] = np.nan  # broken knees make those keypoints invisible, not the whole result NaN
    assert classify_keypoints(kp, SIZE) == HEAD_AND_SHOULDER_FRONT
    kp = front()
    kp[:, 2] = np.nan
    assert classify_with_reason(kp, SIZE) == (REJECTED, "too_few_keypoints")


def test_confidence_threshold_is_a_parameter():
    kp = front(conf=0.4)
    assert classify_with_reason(kp, SIZE)[1] == "too_few_keypoints"
    assert classify_with_reason(kp, SIZE, min_confidence=0.3) == (FULL_BODY_FRONT, None)


def test_bad_shapes_raise():
    with pytest.raises(ValueError):
        classify_keypoints(np.zeros((16, 3)), SIZE)
    with pytest.raises(ValueError):
        classify_keypoints(front(), (0, 256))


def test_constants():
    assert set(VIEWS) | {REJECTED} == set(LABELS) and len(LABELS) == 5
    assert len(set(REJECTION_REASONS)) == len(REJECTION_REASONS)
    assert all(r.replace("_", "").isalpha() and r.islower() for r in REJECTION_REASONS)


def check_result(label: str, reason: str | None) -> None:
    assert label in LABELS
    assert (reason is None) == (label != REJECTED)
    assert reason is None or reason in REJECTION_REASONS


@settings(max_examples=300, deadline=None)
@given(
    kp=arrays(np.float64, (17, 3), elements=st.floats(allow_nan=False, allow_infinity=False)),
    w=st.integers(1, 4096),
    h=st.integers(1, 4096),
)
def test_any_finite_array_gives_an_allowed_label(kp, w, h):
    check_result(*classify_with_reason(kp, (w, h)))


@settings(max_examples=300, deadline=None)
@given(
    xy=arrays(np.float32, (17, 2), elements=st.floats(-20, 276, width=32)),
    conf=arrays(np.float32, (17,), elements=st.floats(0, 1, width=32)),
)
def test_plausible_keypoints_give_an_allowed_label(xy, conf):
    check_result(*classify_with_reason(np.column_stack([xy, conf]), SIZE))
