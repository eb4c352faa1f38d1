"""Classifier stage. Pure view rules first (tested directly); the process loop is appended below them.

Input: 17 COCO keypoints (x, y in patch pixels, confidence in [0, 1]) of the patch's person. A keypoint counts as
*visible* when its confidence >= ``min_confidence`` and it lies inside the patch; NaN/inf anywhere make that
keypoint invisible, so the rules never see a NaN. Only confidences and geometry are used, so any keypoint model
whose scores are mapped to [0, 1] fits.

The rules were tuned on real people (tests/data/views, measured by bench/views.py; numbers in bench/README.md).
What real keypoint models do there shaped them: they draw a confident face on the back of a head, so the face
cannot decide front or back; they keep the body's left/right layout right far more often, so the body decides;
for a person looking over their shoulder they often draw the whole body as seen from the front, and only the face
(in profile) gives that away; and they put the knees of a person cut at the thigh on the patch's bottom edge.

Checks, in order (the first that fails is the rejection reason):
1. ``no_person``: no keypoints at all (the keypoint model found nobody).
2. ``too_few_keypoints``: fewer than 3 visible keypoints.
3. ``no_shoulders``: both shoulders must be visible: every class shows them, and the layout cue needs them.
4. ``no_head``: at least one of nose, eyes, ears must be visible, and the head must not touch the top of the patch
   (its topmost keypoint at least half the head-to-shoulder height below the top edge): a head cut off is not a
   usable pose.
5. ``not_upright``: with hips, the torso (shoulder midpoint → hip midpoint) points down the image within 45
   degrees of vertical; without hips (head-and-shoulder views), the shoulder line is within 45 degrees of level
   and the head is above it. A tilted head is not a tilted body; lying or upside-down bodies make the left/right
   cue meaningless.
6. ``side_view``: shoulder width below 0.25 x torso length (without hips the torso length is estimated as 2 x the
   distance from the shoulder midpoint to the mean of the visible head keypoints). Three-quarter views pass.
7. Front or back from the body's layout: facing the camera, the person's LEFT shoulder appears at the larger image
   x; the same for the hips when both are visible. An offset within 5 % of the torso length abstains. Shoulders
   and hips that disagree are ``conflicting_orientation``. Only when the body gives no layout does the face
   decide (nose and an eye, or both eyes → front; ears with no eye and no nose → back); nothing at all is
   ``ambiguous_orientation``.
8. A FRONT call needs a face turned to the camera whenever both eyes are visible: the eyes in the front order and
   at least 0.1 shoulder widths apart, and the nose (when visible) between them, give or take 25 % of their
   distance. A face in profile over a front-looking body is ``conflicting_orientation``: for mining training
   pairs a wrong view is worse than a lost patch.
9. Extent: FULL-BODY when both hips and at least one knee are visible and the lowest visible knee is at least 0.7
   torso lengths above the patch's bottom edge (there is room for the shin); otherwise HEAD-AND-SHOULDER.
"""

from __future__ import annotations

import math

import numpy as np

from humanstyle.stages.counters import MODEL_CALLS
from humanstyle.stages.detect import box_in_patch
from humanstyle.stages.handler import Handler, Outbox, Route
from humanstyle.stages.records import Classified, Patch, VideoEnd, WindowDone
from humanstyle.stages.settings import ClassifySettings, PipelineSettings, StageFatal
from humanstyle.stages.vocabulary import (
    FULL_BODY_BACK,
    FULL_BODY_FRONT,
    HEAD,
    HEAD_AND_SHOULDER_BACK,
    HEAD_AND_SHOULDER_FRONT,
    L_EAR,
    L_EYE,
    L_HIP,
    L_KNEE,
    L_SHOULDER,
    LABELS,
    NOSE,
    R_EAR,
    R_EYE,
    R_HIP,
    R_KNEE,
    R_SHOULDER,
    REJECTED,
    VIEWS,
    VISIBLE_CONFIDENCE,
)
from humanstyle.stages.vocabulary import RULE_REASONS as REJECTION_REASONS

# The entry point other code calls, with the labels and reasons it returns (defined in stages.vocabulary).
__all__ = ["FULL_BODY_BACK", "FULL_BODY_FRONT", "HEAD_AND_SHOULDER_BACK", "HEAD_AND_SHOULDER_FRONT", "LABELS",
           "REJECTED", "REJECTION_REASONS", "VIEWS", "classify_keypoints", "classify_with_reason"]

DEFAULT_MIN_CONFIDENCE = VISIBLE_CONFIDENCE
MIN_VISIBLE_KEYPOINTS = 3
MAX_TILT_DEG = 45.0  # torso from vertical (with hips), shoulder line from level (without)
SIDE_VIEW_RATIO = 0.25  # shoulder width / torso length below this → side view
SIDE_CUE_FRACTION = 0.05  # left/right offsets smaller than this x torso length abstain
HEAD_ROOM = 0.5  # the head's top keypoint must be this x the head-to-shoulder height below the patch top
MIN_EYE_SPAN = 0.1  # a face turned to the camera: eyes at least this x the shoulder width apart...
NOSE_SLACK = 0.25  # ...with the nose between them, give or take this fraction of their distance
SHIN_ROOM = 0.7  # the lowest knee of a full-body view is at least this x torso length above the patch bottom


def classify_keypoints(
    keypoints: np.ndarray | None,
    image_size: tuple[float, float],
    min_confidence: float = DEFAULT_MIN_CONFIDENCE,
) -> str:
    """The view class of a person's keypoints: one of VIEWS, or REJECTED."""
    return classify_with_reason(keypoints, image_size, min_confidence)[0]


def classify_with_reason(
    keypoints: np.ndarray | None,
    image_size: tuple[float, float],
    min_confidence: float = DEFAULT_MIN_CONFIDENCE,
) -> tuple[str, str | None]:
    """(label, reason): reason is None for a view and one of REJECTION_REASONS for REJECTED.

    keypoints: (17, 3) x, y, confidence (COCO order) or None; image_size: (width, height) of the patch.
    Raises ValueError only for a wrong shape or a non-positive image size.
    """
    if keypoints is None:
        return REJECTED, "no_person"
    kp = np.asarray(keypoints, dtype=np.float64)
    if kp.shape != (17, 3):
        raise ValueError(f"keypoints must have shape (17, 3), got {kp.shape}")
    width, height = (float(v) for v in image_size)
    if not (math.isfinite(width) and math.isfinite(height) and width > 0 and height > 0):
        raise ValueError(f"image_size must be positive (width, height), got {image_size!r}")

    with np.errstate(all="ignore"):
        return _classify(kp, width, height, float(min_confidence))


def _classify(kp: np.ndarray, width: float, height: float, min_conf: float) -> tuple[str, str | None]:
    x, y, conf = kp[:, 0], kp[:, 1], kp[:, 2]
    finite = np.isfinite(kp).all(axis=1)
    inside = (x >= 0) & (x <= width) & (y >= 0) & (y <= height)
    vis = finite & inside & (conf >= min_conf)

    if vis.sum() < MIN_VISIBLE_KEYPOINTS:
        return REJECTED, "too_few_keypoints"
    if not (vis[L_SHOULDER] and vis[R_SHOULDER]):
        return REJECTED, "no_shoulders"
    head = [i for i in HEAD if vis[i]]
    if not head:
        return REJECTED, "no_head"
    shoulder_mid = (kp[L_SHOULDER, :2] + kp[R_SHOULDER, :2]) / 2.0
    head_mid = kp[head, :2].mean(axis=0)
    if y[head].min() < HEAD_ROOM * (shoulder_mid[1] - head_mid[1]):
        return REJECTED, "no_head"

    shoulder_dx = float(x[L_SHOULDER] - x[R_SHOULDER])
    shoulder_width = float(np.hypot(shoulder_dx, y[L_SHOULDER] - y[R_SHOULDER]))
    hips = bool(vis[L_HIP] and vis[R_HIP])
    cos_tilt = math.cos(math.radians(MAX_TILT_DEG))
    if hips:
        down = (kp[L_HIP, :2] + kp[R_HIP, :2]) / 2.0 - shoulder_mid
        torso = float(np.hypot(*down))
        upright = torso > 0 and down[1] >= cos_tilt * torso
    else:
        torso = 2.0 * float(np.hypot(*(shoulder_mid - head_mid)))
        # Image y grows downwards: the head is above the shoulders when its y is smaller.
        upright = shoulder_width > 0 and abs(shoulder_dx) >= cos_tilt * shoulder_width and head_mid[1] < shoulder_mid[1]
    if not (torso > 0 and upright):
        return REJECTED, "not_upright"
    if not shoulder_width >= SIDE_VIEW_RATIO * torso:
        return REJECTED, "side_view"

    body = {_side_vote(shoulder_dx, torso)}
    if hips:
        body.add(_side_vote(float(x[L_HIP] - x[R_HIP]), torso))
    body.discard(0)
    if len(body) > 1:
        return REJECTED, "conflicting_orientation"
    cast = body or ({_face_vote(vis)} - {0})
    if not cast:
        return REJECTED, "ambiguous_orientation"
    front = cast.pop() > 0
    if front and not _faces_the_camera(kp, vis, shoulder_width):
        return REJECTED, "conflicting_orientation"

    knees = [i for i in (L_KNEE, R_KNEE) if vis[i]]
    full = hips and bool(knees) and height - max(y[i] for i in knees) >= SHIN_ROOM * torso
    if full:
        return (FULL_BODY_FRONT if front else FULL_BODY_BACK), None
    return (HEAD_AND_SHOULDER_FRONT if front else HEAD_AND_SHOULDER_BACK), None


def _face_vote(vis: np.ndarray) -> int:
    eyes = int(vis[L_EYE]) + int(vis[R_EYE])
    if eyes == 2 or (eyes == 1 and vis[NOSE]):
        return 1
    if eyes == 0 and not vis[NOSE] and (vis[L_EAR] or vis[R_EAR]):
        return -1
    return 0


def _side_vote(left_minus_right_x: float, torso: float) -> int:
    if not math.isfinite(left_minus_right_x) or abs(left_minus_right_x) <= SIDE_CUE_FRACTION * torso:
        return 0
    return 1 if left_minus_right_x > 0 else -1


def _faces_the_camera(kp: np.ndarray, vis: np.ndarray, shoulder_width: float) -> bool:
    """False for a face in profile: eyes in the back order, close together, or with the nose outside them."""
    if not (vis[L_EYE] and vis[R_EYE]):
        return True
    span = float(kp[L_EYE, 0] - kp[R_EYE, 0])
    if span < MIN_EYE_SPAN * shoulder_width:
        return False
    if not vis[NOSE]:
        return True
    t = float(kp[NOSE, 0] - kp[R_EYE, 0]) / span
    return -NOSE_SLACK <= t <= 1.0 + NOSE_SLACK


# ---------------------------------------------------------------------------------------------------------------
# The classify stage: patches in, classified patches out (window_done and video_end pass through).

def classify_patches(estimator, patches: list[Patch], min_confidence: float) -> list[Classified]:
    """Keypoints for a batch of patches (one model call) and their view.

    The keypoints are those of the person the patch was cut around (the detector's box, mapped into the patch),
    not of whoever scores best in it: in a crowd a neighbour reaching into the square often does."""
    if not patches:
        return []
    targets = [box_in_patch(p.box, p.square, p.image.shape[1]) for p in patches]
    results = estimator.estimate_own([p.image for p in patches], targets)
    out = []
    for patch, (result, miss) in zip(patches, results, strict=True):
        h, w = patch.image.shape[:2]
        if result is None:
            out.append(rejected(patch, miss or "no_person"))
            continue
        keypoints = result.keypoints.astype(np.float32)
        view, reason = classify_with_reason(keypoints, (w, h), min_confidence)
        out.append(Classified.of(patch, keypoints=keypoints, view=view, reason=reason or "",
                                 keypoint_score=round(float(result.score), 5)))
    return out


def rejected(patch: Patch, reason: str) -> Classified:
    """A patch kept as REJECTED with `reason` and no keypoints."""
    return Classified.of(patch, keypoints=np.zeros((17, 3), np.float32), view=REJECTED, reason=reason,
                         keypoint_score=0.0)


def build_estimator(settings: PipelineSettings):
    from humanstyle.models.detection import KeypointEstimator
    from humanstyle.models.weights import WeightsError, seed_random_init

    c = settings.classify
    size = c.input_size or settings.detect.patch_size
    try:
        seed_random_init(c.weights)
        return KeypointEstimator(weights=c.weights, device=c.device, min_size=size, max_size=size,
                                 batch_size=c.batch_size, box_score_threshold=c.person_threshold,
                                 allow_download=False, upscale=size > settings.detect.patch_size,
                                 proposals=c.proposals, min_overlap=c.min_person_overlap)
    except WeightsError as exc:
        raise StageFatal(str(exc)) from None


class ClassifyHandler(Handler):
    """Patches in batches of `classify.batch_size`, each out as a classified patch."""

    passes = (WindowDone, VideoEnd)  # the index needs them; they travel the same path as the results

    def __init__(self, estimator, settings: ClassifySettings) -> None:
        self.estimator, self.min_confidence = estimator, settings.min_keypoint_confidence
        self.routes = {Patch: Route(self.classify, batch=settings.batch_size, on_error=self.failed)}

    def classify(self, patches: list[Patch], out: Outbox) -> None:
        results = classify_patches(self.estimator, patches, self.min_confidence)
        MODEL_CALLS.labels("keypointrcnn").inc()
        for item in results:
            out.send(item)

    def failed(self, patches: list[Patch], out: Outbox) -> None:
        """The patches are kept, as rejected with the reason, so their video still completes."""
        for patch in patches:
            out.send(rejected(patch, "classify_error"))
