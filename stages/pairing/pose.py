"""The pose pair score: a similarity fit on the keypoints both poses show, also against the mirrored pose.

Pure numpy, no state. `prepare` turns (n, 17, 3) keypoints [x, y, confidence] into what the pose store stores per
pose: a 17-bit visibility mask and the visible keypoints as complex numbers x + iy, centred on their own centroid
and scaled to unit norm (invisible keypoints are 0). The score of two prepared poses (`score_prepared`):

1. Shared set S = keypoints both show. Coverage rule: |S| >= MIN_SHARED and |S| >= MIN_COVERAGE x |union|, else
   the pair is not comparable (score -inf): two patches must show the same body parts to pair.
2. Both poses are re-centred on the centroid of S and scaled to unit norm on S, so keypoints only one of them
   shows change neither the centre nor the scale.
3. Cosine after the best rotation (|sum conj(u_i) v_i|, a Procrustes fit without reflection): together with 2 the
   score is invariant to moving, scaling and rotating either pose in its patch.
4. The same for the mirrored first pose (x negated and the left/right keypoints swapped: what a detector reports
   on the horizontally flipped image); the score is the better of the two, `mirrored` says the mirrored one won
   (strictly). A mirrored pair shows the same pose once ONE of its two images is flipped horizontally.

The score is symmetric, and mirroring either pose gives the same result. The pose store (`stages.pairing.pose_store`)
computes the same quantity for a query against millions of stored poses through a decomposition into dot
products (see `query_tables`); this module's float64 code is the reference it must match, and the index
re-scores its candidates with it, so the similarity it reports is exactly `score_prepared`'s.
"""

from __future__ import annotations

import numpy as np

from humanstyle.stages.vocabulary import MIRROR as MIRROR_INDEX
from humanstyle.stages.vocabulary import NUM_KEYPOINTS, VISIBLE_CONFIDENCE

DEFAULT_MIN_CONFIDENCE = VISIBLE_CONFIDENCE
MIRROR = np.array(MIRROR_INDEX)  # each keypoint's left/right counterpart
MIN_SHARED = 5
MIN_COVERAGE = 0.6
# A shared set whose re-centred spread is below this share of a pose's own spread is degenerate (its points
# nearly coincide): the float32 index could not score it reliably, so neither does the reference.
MIN_SHARED_SPREAD = 1e-3
_BITS = (1 << np.arange(NUM_KEYPOINTS)).astype(np.int64)


def visible_mask(keypoints: np.ndarray, min_confidence: float = DEFAULT_MIN_CONFIDENCE) -> np.ndarray:
    """(n, 17, 3) -> (n, 17) bool: finite keypoints with confidence >= min_confidence (and > 0)."""
    kp = np.asarray(keypoints, dtype=np.float64)
    if kp.ndim != 3 or kp.shape[1:] != (NUM_KEYPOINTS, 3):
        raise ValueError(f"keypoints must have shape (n, 17, 3), got {kp.shape}")
    finite = np.isfinite(kp).all(axis=-1)
    conf = np.where(finite, kp[..., 2], 0.0)
    return finite & (conf >= min_confidence) & (conf > 0.0)


def prepare(keypoints: np.ndarray, min_confidence: float = DEFAULT_MIN_CONFIDENCE, min_keypoints: int = MIN_SHARED
            ) -> tuple[np.ndarray, np.ndarray]:
    """(n, 17, 3) -> (masks int32 (n,), z complex64 (n, 17)): own-centred, unit-norm visible keypoints.

    A pose with fewer than `min_keypoints` visible keypoints (MIN_SHARED: it could never pass the coverage rule),
    or whose keypoints all coincide, can never pair: its mask is 0 (and z is 0).
    """
    visible = visible_mask(keypoints, min_confidence)
    kp = np.asarray(keypoints, dtype=np.float64)
    z = np.where(visible, kp[..., 0] + 1j * kp[..., 1], 0.0)
    count = visible.sum(axis=1)
    z = np.where(visible, z - (z.sum(axis=1) / np.maximum(count, 1))[:, None], 0.0)
    norm = np.sqrt((np.abs(z) ** 2).sum(axis=1))
    usable = (count >= max(min_keypoints, 2)) & (norm > 1e-6)
    z = np.where(usable[:, None], z / np.where(usable, norm, 1.0)[:, None], 0.0)
    masks = np.where(usable, (visible * _BITS).sum(axis=1), 0).astype(np.int32)
    return masks, z.astype(np.complex64)


def mirror_prepared(masks: np.ndarray, z: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """The prepared form of the horizontally mirrored poses (still own-centred and unit-norm)."""
    bits = mask_bits(masks)[:, MIRROR]
    return (bits * _BITS).sum(axis=1).astype(np.int32), -np.conj(np.asarray(z)[:, MIRROR])


def mask_bits(masks: np.ndarray) -> np.ndarray:
    """(n,) int masks -> (n, 17) bool."""
    return (np.asarray(masks, dtype=np.int64)[:, None] & _BITS) != 0


def coverage_ok(shared: np.ndarray, count_a: np.ndarray, count_b: np.ndarray, min_shared: int = MIN_SHARED,
                min_coverage: float = MIN_COVERAGE) -> np.ndarray:
    """The coverage rule on keypoint counts (any broadcastable shapes)."""
    union = count_a + count_b - shared
    return (shared >= min_shared) & (shared >= min_coverage * union)


def _oriented_scores(mq: np.ndarray, zq: np.ndarray, ms: np.ndarray, zs: np.ndarray, rule: tuple[int, float]
                     ) -> np.ndarray:
    """Score of each query pose against each stored pose in one orientation: (nq, ns) float64, -inf if invalid."""
    bq, bs = mask_bits(mq), mask_bits(ms)
    shared = bq[:, None, :] & bs[None, :, :]
    n = shared.sum(axis=-1)
    ok = coverage_ok(n, bq.sum(axis=1)[:, None], bs.sum(axis=1)[None, :], *rule)
    w = np.where(shared, zq.astype(np.complex128)[:, None, :], 0.0)
    v = np.where(shared, zs.astype(np.complex128)[None, :, :], 0.0)
    nn = np.maximum(n, 1)[..., None]
    u = np.where(shared, w - w.sum(axis=-1, keepdims=True) / nn, 0.0)
    v = np.where(shared, v - v.sum(axis=-1, keepdims=True) / nn, 0.0)
    du, dv = (np.abs(u) ** 2).sum(axis=-1), (np.abs(v) ** 2).sum(axis=-1)
    ok &= (du > MIN_SHARED_SPREAD) & (dv > MIN_SHARED_SPREAD)
    c = np.abs((np.conj(u) * v).sum(axis=-1))
    with np.errstate(divide="ignore", invalid="ignore"):
        score = c / np.sqrt(du * dv)
    return np.where(ok, score, -np.inf)


def score_prepared(mq: np.ndarray, zq: np.ndarray, ms: np.ndarray, zs: np.ndarray, *,
                   min_shared: int = MIN_SHARED, min_coverage: float = MIN_COVERAGE
                   ) -> tuple[np.ndarray, np.ndarray]:
    """(scores, mirrored) of every query against every stored pose: (nq, ns) float64 and bool.

    Inputs are prepared poses (`prepare`); a score is -inf where the coverage rule fails in both orientations.
    The rule's parameters are there for measuring it (bench/pairing_quality.py); pairing uses the defaults.
    """
    mq, ms = np.atleast_1d(mq), np.atleast_1d(ms)
    zq, zs = np.atleast_2d(zq), np.atleast_2d(zs)
    rule = (min_shared, min_coverage)
    plain = _oriented_scores(mq, zq, ms, zs, rule)
    mirrored = _oriented_scores(*mirror_prepared(mq, zq), ms, zs, rule)
    return np.maximum(plain, mirrored), mirrored > plain


def pose_match(a: np.ndarray, b: np.ndarray, min_confidence: float = DEFAULT_MIN_CONFIDENCE) -> tuple[float, bool]:
    """(score, mirrored) of two (17, 3) keypoint arrays: the exact score the pairing rule pairs by."""
    masks, z = prepare(np.stack([np.asarray(a), np.asarray(b)]), min_confidence)
    score, mirrored = score_prepared(masks[:1], z[:1], masks[1:], z[1:])
    return float(score[0, 0]), bool(mirrored[0, 0])


def pose_similarity(a: np.ndarray, b: np.ndarray, min_confidence: float = DEFAULT_MIN_CONFIDENCE) -> float:
    """Similarity in [0, 1] of two (17, 3) keypoint arrays, mirroring included; -inf when not comparable."""
    return pose_match(a, b, min_confidence)[0]
