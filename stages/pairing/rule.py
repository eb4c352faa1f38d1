"""Pose pairing: the side A <-> side B pairing rule over a persistent per-(domain, view) pose store.

Pure logic with plain arguments: no sockets, no SQLite, no config. The indexer process owns the catalog and
calls `PairingRule.propose_batch` / `commit_batch` (or `add` / `add_batch`) from its single writer loop.

The score (`stages.pairing.pose`, re-exported here as `pose_similarity` / `pose_match`): a similarity fit (centre,
scale, rotation) on the keypoints both poses show, against the pose and its mirror image, with a coverage rule that
keeps patches showing different body parts apart. The index (`stages.pairing.pose_store.PoseStore`) finds the best
matches exactly as that score ranks them.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from humanstyle.stages.pairing.ann import SearchSettings
from humanstyle.stages.pairing.pose import (
    DEFAULT_MIN_CONFIDENCE,
    NUM_KEYPOINTS,
    pose_match,
    pose_similarity,
    prepare,
    score_prepared,
)
from humanstyle.stages.pairing.pose_store import PoseStore, PoseStoreFormatError, first_occurrences
from humanstyle.stages.vocabulary import VIEWS

# `pose_similarity` (and `pose_match`, which also says whether the mirrored pose won) are the pairing module's entry
# points for other code: the exact score the index pairs by.
__all__ = ["PoseStoreFormatError", "Pair", "PairingRule", "pose_match", "pose_similarity"]

_SAFE_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,63}$")


@dataclass(frozen=True, slots=True)
class Pair:
    """A pose match; a_id is always the first configured domain's patch id (side A), b_id the second's.

    mirrored: the two patches show the same pose once one of them is flipped horizontally (the second domain's
    image is the one flipped downstream: training pairs and pix2pix exports).
    """

    a_id: int
    b_id: int
    view: str
    similarity: float
    mirrored: bool = False


class PairingRule:
    """One PoseStore per (domain, view) and the rule: a new patch pairs with the other domain, same view.

    Each new patch queries the other domain's index of its own view and pairs with its top_k matches whose
    similarity >= min_similarity. With mutual_best, a new patch p pairs only with its best match q, and only
    if p is also q's best among p's domain as it stands once p is added (ties: lower id wins). That is "mutual
    best at the time the later of the two arrived": pairs are never retracted, so a patch can gain a later
    mutual-best partner when a better one arrives, and an earlier pair can stop being the current mutual best.
    Results depend on arrival order (as any streaming rule must) but are deterministic for the same order. A
    patch id already present in any index is a no-op, also under another view. A pose that cannot pair (fewer
    than MIN_SHARED usable keypoints) is stored but never paired.

    Crash-safe use from the indexer: pairs = propose_batch(...); write pairs (unique on a_id, b_id);
    commit_batch(...). A crash in between replays to the same proposals; `add_batch` does both steps at once.
    An index directory of an older on-disk format raises PoseStoreFormatError (see `reset`).
    """

    def __init__(
        self,
        root: Path,
        domains: Sequence[str],
        views: Sequence[str] = VIEWS,
        *,
        min_confidence: float = DEFAULT_MIN_CONFIDENCE,
        min_similarity: float = 0.99,
        top_k: int = 3,
        mutual_best: bool = False,
        chunk_rows: int = 65536,
        durable: bool = True,
        search: SearchSettings | None = None,
    ) -> None:
        if len(domains) != 2 or domains[0] == domains[1]:
            raise ValueError("exactly two distinct domains are needed")
        for name in (*domains, *views):
            if not _SAFE_NAME.match(name):
                raise ValueError(f"unsafe domain/view name for a directory: {name!r}")
        if top_k < 1:
            raise ValueError("top_k must be >= 1")
        self.domains, self.views = tuple(domains), tuple(views)
        self.min_confidence, self.min_similarity = min_confidence, min_similarity
        self.top_k, self.mutual_best = top_k, mutual_best
        self._indexes: dict[tuple[str, str], PoseStore] = {}
        try:
            for d in self.domains:
                for v in self.views:
                    self._indexes[d, v] = PoseStore(Path(root) / d / v, chunk_rows=chunk_rows, durable=durable,
                                                     search=search)
        except BaseException:
            self.close()
            raise

    @staticmethod
    def reset(root: Path, domains: Sequence[str], views: Sequence[str] = VIEWS) -> None:
        """Delete the index files under root (all formats), e.g. to rebuild an old-format index."""
        for d in domains:
            for v in views:
                PoseStore.remove_files(Path(root) / d / v)

    def close(self) -> None:
        for index in self._indexes.values():
            index.close()

    def __enter__(self) -> PairingRule:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def store(self, domain: str, view: str) -> PoseStore:
        return self._indexes[domain, view]

    def search_method(self, domain: str, view: str) -> str:
        """How new patches of (domain, view) are looked up now: "exact" or "faiss" (PoseStore.method)."""
        return self._indexes[self._other(domain), view].method

    def _other(self, domain: str) -> str:
        if domain not in self.domains:
            raise ValueError(f"unknown domain {domain!r}")
        return self.domains[1 - self.domains.index(domain)]

    def _new(self, patch_ids: Iterable[int], domain: str, view: str, keypoints: np.ndarray
             ) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        if (domain, view) not in self._indexes:
            raise ValueError(f"unknown domain/view {domain!r}/{view!r}")
        ids = np.asarray(patch_ids, dtype=np.int64).reshape(-1)
        kp = np.asarray(keypoints, dtype=np.float64).reshape(len(ids), NUM_KEYPOINTS, 3)
        keep = first_occurrences(ids)
        for index in self._indexes.values():
            keep &= ~index.contains(ids)
        masks, z = prepare(kp[keep], self.min_confidence)
        return ids[keep], masks, z

    def propose_batch(self, patch_ids: Sequence[int] | np.ndarray, domain: str, view: str,
                      keypoints: np.ndarray) -> list[Pair]:
        """Pairs that adding these patches (one domain, one view, in order) would create; changes nothing."""
        return self._propose(*self._new(patch_ids, domain, view, keypoints), domain, view)

    def commit_batch(self, patch_ids: Sequence[int] | np.ndarray, domain: str, view: str,
                     keypoints: np.ndarray) -> int:
        """Durably record the patches; returns how many were new."""
        return self._indexes[domain, view].append(*self._new(patch_ids, domain, view, keypoints))

    def add_batch(self, patch_ids: Sequence[int] | np.ndarray, domain: str, view: str,
                  keypoints: np.ndarray) -> list[Pair]:
        """propose_batch + commit_batch; same result as adding the patches one by one in order."""
        ids, masks, z = self._new(patch_ids, domain, view, keypoints)
        pairs = self._propose(ids, masks, z, domain, view)
        self._indexes[domain, view].append(ids, masks, z)
        return pairs

    def add(self, patch_id: int, domain: str, view: str, keypoints: np.ndarray) -> list[Pair]:
        return self.add_batch([patch_id], domain, view, np.asarray(keypoints)[None])

    def _propose(self, ids: np.ndarray, masks: np.ndarray, z: np.ndarray, domain: str, view: str) -> list[Pair]:
        other = self._indexes[self._other(domain), view]
        k = 1 if self.mutual_best else self.top_k
        rows, other_rows, other_ids, sims, mirrored = other.search(masks, z, k, self.min_similarity)
        if self.mutual_best and len(rows):
            keep = self._mutual(ids, masks, z, domain, view, rows, *other.poses_at(other_rows))
            rows, other_ids, sims, mirrored = rows[keep], other_ids[keep], sims[keep], mirrored[keep]
        first = domain == self.domains[0]
        return [
            Pair(int(i if first else o), int(o if first else i), view, float(s), bool(m))
            for i, o, s, m in zip(ids[rows], other_ids, sims, mirrored, strict=True)
        ]

    def _mutual(self, ids: np.ndarray, masks: np.ndarray, z: np.ndarray, domain: str, view: str,
                rows: np.ndarray, partner_masks: np.ndarray, partner_z: np.ndarray) -> np.ndarray:
        """For each (new row, its best partner): is the new patch the partner's best once it is added?"""
        own = self._indexes[domain, view]
        best_id = np.full(len(rows), np.iinfo(np.int64).max)
        best_sim = np.full(len(rows), -np.inf)
        r, _, old_ids, old_sims, _ = own.search(partner_masks, partner_z, 1, self.min_similarity)
        best_id[r], best_sim[r] = old_ids, old_sims
        # Patches earlier in this batch (and the patch itself) are part of "its domain as it stands".
        batch_sims = score_prepared(partner_masks, partner_z, masks, z)[0]
        batch_sims[np.arange(len(ids))[None, :] > rows[:, None]] = -np.inf
        for j, (sim_row, limit) in enumerate(zip(batch_sims, rows, strict=True)):
            cand = np.flatnonzero(sim_row[: limit + 1] == sim_row[: limit + 1].max())
            cand_id = ids[cand].min()
            s = sim_row[cand[0]]
            if s > best_sim[j] or (s == best_sim[j] and cand_id < best_id[j]):
                best_sim[j], best_id[j] = s, cand_id
        return best_id == ids[rows]
