"""A naive reference of stages.pairing.rule.PairingRule for tests: every pair scored with `pose_match`, one at a
time."""

from __future__ import annotations

from collections.abc import Iterable, Sequence

import numpy as np

from humanstyle.stages.pairing.pose import DEFAULT_MIN_CONFIDENCE
from humanstyle.stages.pairing.rule import Pair, pose_match


def brute_force_pairs(
    events: Iterable[tuple[int, str, str, np.ndarray]],
    *,
    domains: Sequence[str] = ("movie", "game"),
    min_confidence: float = DEFAULT_MIN_CONFIDENCE,
    min_similarity: float = 0.99,
    top_k: int = 1,
    mutual_best: bool = False,
) -> list[Pair]:
    """Naive reference of PairingRule over (patch_id, domain, view, keypoints) events: `pose_match` per pair."""
    seen: set[int] = set()
    stored: dict[tuple[str, str], list[tuple[int, np.ndarray]]] = {}
    pairs: list[Pair] = []
    for patch_id, domain, view, keypoints in events:
        if patch_id in seen:
            continue
        seen.add(patch_id)
        other = domains[1 - list(domains).index(domain)]
        own_list = stored.setdefault((domain, view), [])
        own_list.append((patch_id, keypoints))
        scored = [(*pose_match(keypoints, kp, min_confidence), oid, kp) for oid, kp in stored.get((other, view), [])]
        cands = sorted((c for c in scored if c[0] >= min_similarity), key=lambda c: (-c[0], c[2]))
        for sim, mirrored, oid, kp in cands[: 1 if mutual_best else top_k]:
            if mutual_best:
                back = min((-pose_match(kp, own, min_confidence)[0], pid) for pid, own in own_list)
                if back[1] != patch_id:
                    continue
            first = domain == domains[0]
            pairs.append(Pair(patch_id if first else oid, oid if first else patch_id, view, sim, mirrored))
    return pairs
