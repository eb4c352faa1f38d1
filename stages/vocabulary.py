"""The pipeline's words, each defined once: views, rejection reasons, keypoints, what "visible" means.

Everything that names a view, a reason or a keypoint (the rules, the pairing index, the catalog's queries, the
metrics' label values, the exports) takes it from here, so a new view or reason is added in one place.
"""

from __future__ import annotations

FULL_BODY_FRONT = "FULL-BODY-FRONT"
HEAD_AND_SHOULDER_FRONT = "HEAD-AND-SHOULDER-FRONT"
FULL_BODY_BACK = "FULL-BODY-BACK"
HEAD_AND_SHOULDER_BACK = "HEAD-AND-SHOULDER-BACK"
REJECTED = "REJECTED"
VIEWS: tuple[str, ...] = (FULL_BODY_FRONT, HEAD_AND_SHOULDER_FRONT, FULL_BODY_BACK, HEAD_AND_SHOULDER_BACK)
LABELS: tuple[str, ...] = (*VIEWS, REJECTED)

# Why the view rules reject a person's keypoints (stages.classify explains each).
RULE_REASONS: tuple[str, ...] = (
    "no_person",
    "too_few_keypoints",
    "no_shoulders",
    "no_head",
    "not_upright",
    "side_view",
    "conflicting_orientation",
    "ambiguous_orientation",
)
# Why the classifier stage rejects a patch before the rules see it: no found person overlaps the detector's box,
# or the keypoint model failed on it.
STAGE_REASONS: tuple[str, ...] = ("no_matching_person", "classify_error")
PATCH_REASONS: tuple[str, ...] = (*RULE_REASONS, *STAGE_REASONS)

# Why the decoder cannot decode a file at all (stages.decode.NotAVideo).
NOT_A_VIDEO_REASONS: tuple[str, ...] = (
    "not_found", "empty_file", "io_error", "not_a_video", "truncated", "unreadable", "no_frames",
)  # fmt: skip
# Why a video file ends `failed`: refused by the watcher (not_a_video, empty_file, unreadable, bad_file_name),
# by the decoder (NOT_A_VIDEO_REASONS, decode_error) or given up by the index (stalled).
FILE_REASONS: tuple[str, ...] = (*NOT_A_VIDEO_REASONS, "bad_file_name", "decode_error", "stalled")
# Why a received message is refused: the wire's checks (daemon.runtime.wire, records' check()), a record type the
# receiving queue does not carry (unexpected_type), or a record the index cannot use (unknown_video, unknown_pair).
MESSAGE_REASONS: tuple[str, ...] = (
    "empty_message", "oversized", "malformed_header", "bad_version", "unknown_type", "bad_array", "missing_field",
    "bad_field", "unexpected_type", "unknown_video", "unknown_pair",
)  # fmt: skip
# A person's judgement of a pair (the web page's curation): a bad pair leaves training and every export.
VERDICTS: tuple[str, ...] = ("good", "bad")

KEYPOINT_NAMES: tuple[str, ...] = (
    "nose", "left_eye", "right_eye", "left_ear", "right_ear", "left_shoulder", "right_shoulder",
    "left_elbow", "right_elbow", "left_wrist", "right_wrist", "left_hip", "right_hip",
    "left_knee", "right_knee", "left_ankle", "right_ankle",
)  # fmt: skip
NUM_KEYPOINTS = len(KEYPOINT_NAMES)
NOSE, L_EYE, R_EYE, L_EAR, R_EAR, L_SHOULDER, R_SHOULDER = range(7)
L_HIP, R_HIP, L_KNEE, R_KNEE, L_ANKLE, R_ANKLE = 11, 12, 13, 14, 15, 16
HEAD = (NOSE, L_EYE, R_EYE, L_EAR, R_EAR)
# Index of each keypoint's left/right counterpart: what a horizontal flip of the image does to the labels.
MIRROR = tuple(KEYPOINT_NAMES.index(n.replace("left", "@").replace("right", "left").replace("@", "right"))
               for n in KEYPOINT_NAMES)

# A keypoint counts as visible at this confidence or above (classify.min_keypoint_confidence, which pairing uses
# too, defaults to it): 0.5 is sigmoid(logit - 2) at logit 2, Detectron's cut for drawing a keypoint.
VISIBLE_CONFIDENCE = 0.5

# How the pairing stage's pose store finds a new patch's best matches (pair.search).
SEARCH_METHODS = ("auto", "exact", "faiss")
