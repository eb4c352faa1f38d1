"""Pose pairing: keypoint features, a persistent per-(domain, view) index, and the movie<->game pairing rule.

Pure logic with plain arguments: no sockets, no SQLite, no config. The indexer process owns the catalog and
calls `PairingIndex.propose_batch` / `commit_batch` (or `add` / `add_batch`) from its single writer loop.

Feature (see `keypoint_features`): keypoints are centred on the torso (midpoint of mid-shoulders and mid-hips;
the mid-shoulders when the hips are not visible, as in head-and-shoulder views), divided by a body scale
(torso length, else shoulder width), weighted by sqrt(confidence), and L2-normalised so cosine = dot product.
Missing keypoints (confidence < min_confidence) are zeroed. That deliberately makes the cosine of two vectors
with different missing sets lower than the cosine on their shared keypoints: the dot product only sums the
shared keypoints but each norm still carries the keypoints only one side has, so a patch showing legs never
scores 1 against one that hides them. For pix2pix that is the point: a pair should show the same body parts.
The alternative (re-normalising on the shared set) lets two patches that share two keypoints score 1.
"""

from __future__ import annotations

import fcntl
import json
import logging
import os
import re
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from humanstyle.models.files import atomic_write_bytes, fsync_dir

log = logging.getLogger(__name__)

DOMAINS: tuple[str, str] = ("movie", "game")
VIEWS: tuple[str, ...] = (
    "FULL-BODY-FRONT",
    "HEAD-AND-SHOULDER-FRONT",
    "FULL-BODY-BACK",
    "HEAD-AND-SHOULDER-BACK",
)
NUM_KEYPOINTS = 17
FEATURE_DIM = 2 * NUM_KEYPOINTS
DEFAULT_MIN_CONFIDENCE = 0.3
L_SHOULDER, R_SHOULDER, L_HIP, R_HIP = 5, 6, 11, 12
_SAFE_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,63}$")


# ----------------------------------------------------------------------------------------------- features
def keypoint_features(keypoints: np.ndarray, min_confidence: float = DEFAULT_MIN_CONFIDENCE) -> np.ndarray:
    """(n, 17, 3) [x, y, conf] -> (n, 34) float32 unit vectors; zeros if < 2 usable keypoints."""
    kp = np.asarray(keypoints, dtype=np.float64)
    if kp.ndim != 3 or kp.shape[1:] != (NUM_KEYPOINTS, 3):
        raise ValueError(f"keypoints must have shape (n, 17, 3), got {kp.shape}")
    xy, conf = kp[..., :2], kp[..., 2]
    finite = np.isfinite(xy).all(axis=-1) & np.isfinite(conf)
    conf = np.where(finite, np.clip(conf, 0.0, 1.0), 0.0)
    visible = finite & (conf >= min_confidence) & (conf > 0.0)
    xy = np.where(visible[..., None], xy, 0.0)

    def midpoint(a: int, b: int) -> tuple[np.ndarray, np.ndarray]:
        return (xy[:, a] + xy[:, b]) / 2.0, visible[:, a] & visible[:, b]

    shoulders, has_shoulders = midpoint(L_SHOULDER, R_SHOULDER)
    hips, has_hips = midpoint(L_HIP, R_HIP)
    count = visible.sum(axis=1)
    centroid = xy.sum(axis=1) / np.maximum(count, 1)[:, None]
    torso = has_shoulders & has_hips
    centre = np.where(
        torso[:, None], (shoulders + hips) / 2.0,
        np.where(has_shoulders[:, None], shoulders, np.where(has_hips[:, None], hips, centroid)),
    )
    rel = (xy - centre[:, None, :]) * visible[..., None]
    # The final L2 normalisation makes the cosine scale-invariant; the body scale only keeps the unnormalised
    # values in body units (torso lengths) so the fallbacks below never divide by ~0.
    shoulder_width = np.linalg.norm(xy[:, L_SHOULDER] - xy[:, R_SHOULDER], axis=1)
    spread = np.sqrt((rel**2).sum(axis=(1, 2)) / np.maximum(count, 1))
    scale = np.where(torso, np.linalg.norm(shoulders - hips, axis=1),
                     np.where(has_shoulders, shoulder_width, spread))
    scale = np.where(scale > 1e-6, scale, np.where(spread > 1e-6, spread, 1.0))
    vec = (rel / scale[:, None, None] * np.sqrt(conf)[..., None] * visible[..., None]).reshape(len(kp), FEATURE_DIM)
    norm = np.linalg.norm(vec, axis=1, keepdims=True)
    usable = (count >= 2)[:, None] & (norm > 1e-9)
    return np.where(usable, vec / np.where(norm > 1e-9, norm, 1.0), 0.0).astype(np.float32)


def keypoint_feature(keypoints: np.ndarray, min_confidence: float = DEFAULT_MIN_CONFIDENCE) -> np.ndarray:
    """(17, 3) [x, y, conf in [0, 1]] -> (34,) float32 unit vector (zeros if the pose is unusable)."""
    return keypoint_features(np.asarray(keypoints)[None], min_confidence)[0]


def pose_similarity(a: np.ndarray, b: np.ndarray, min_confidence: float = DEFAULT_MIN_CONFIDENCE) -> float:
    """Reference cosine of two (17, 3) keypoint arrays, in [-1, 1]; 0 if either pose is unusable."""
    fa, fb = keypoint_features(np.stack([a, b]), min_confidence)
    return float(np.dot(fa.astype(np.float64), fb.astype(np.float64)))


# ----------------------------------------------------------------------------------------------- id set
class _IdSet:
    """Membership for up to millions of int64 ids: a sorted array plus a small Python set of recent ids.

    A plain set of 1M ints costs ~60 MB; this costs 8 MB per 1M, merging the recent set in (timsort on two
    sorted runs, linear) once it reaches 64k ids.
    """

    def __init__(self) -> None:
        self._sorted = np.empty(0, dtype=np.int64)
        self._recent: set[int] = set()

    def contains(self, ids: np.ndarray) -> np.ndarray:
        ids = np.asarray(ids, dtype=np.int64)
        hit = np.zeros(len(ids), dtype=bool)
        if len(self._sorted):
            pos = np.minimum(np.searchsorted(self._sorted, ids), len(self._sorted) - 1)
            hit = self._sorted[pos] == ids
        if self._recent:
            hit |= np.fromiter((int(i) in self._recent for i in ids), dtype=bool, count=len(ids))
        return hit

    def add(self, ids: np.ndarray) -> None:
        if len(ids) > 4096 or len(self._recent) + len(ids) > 65536:
            recent = np.fromiter(self._recent, dtype=np.int64, count=len(self._recent))
            merged = np.concatenate([self._sorted, np.sort(np.concatenate([recent, ids]))])
            self._sorted = np.sort(merged, kind="stable")
            self._recent.clear()
        else:
            self._recent.update(int(i) for i in ids)


def _first_occurrences(ids: np.ndarray) -> np.ndarray:
    keep = np.zeros(len(ids), dtype=bool)
    keep[np.unique(ids, return_index=True)[1]] = True
    return keep


def _top_k(rows: np.ndarray, ids: np.ndarray, sims: np.ndarray, k: int) -> np.ndarray:
    """Indices of the best k candidates per query row, ordered by (row, similarity desc, id asc)."""
    order = np.lexsort((ids, -sims, rows))
    sorted_rows = rows[order]
    rank = np.arange(len(order)) - np.searchsorted(sorted_rows, sorted_rows, side="left")
    return order[rank < k]


# ----------------------------------------------------------------------------------------------- index
class KeypointIndex:
    """Persistent, append-only feature index for one (domain, view); single writer (enforced with flock).

    Layout of `directory`:
      meta.json            {"format": 1, "dim": D, "chunk_rows": R}; written once
      committed            decimal row count N, replaced atomically (temp + fsync + rename + dir fsync)
      chunk-000000.rec ... records <i8 id, <f4[D] feature>, R per chunk, appended with pwrite + fsync
      lock                 flock'd while open
    Data is fsynced before `committed` is replaced, so bytes past N*record (a torn append) are ignored and
    truncated on reopen; a chunk shorter than N says committed data was lost, and the index keeps the intact
    prefix (the caller re-adds what `ids()` lacks). float32, not float16: numpy has no float16 matmul, so a
    float16 store made a 1-patch query against 1M rows ~5x slower (59 vs 11 ms here) to save 68 MB/1M rows.
    """

    def __init__(self, directory: Path, dim: int, *, chunk_rows: int = 65536, durable: bool = True) -> None:
        if dim <= 0 or chunk_rows <= 0:
            raise ValueError("dim and chunk_rows must be positive")
        self.directory = Path(directory)
        self.directory.mkdir(parents=True, exist_ok=True)
        self.dim, self.durable = dim, durable
        self._lock = open(self.directory / "lock", "a+b")  # noqa: SIM115 - held for the object's lifetime
        try:
            fcntl.flock(self._lock.fileno(), fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            self._lock.close()
            raise RuntimeError(f"{self.directory} is open by another writer") from None
        self.chunk_rows = self._load_meta(chunk_rows)
        self._record = np.dtype([("id", "<i8"), ("feature", "<f4", (dim,))])
        self._ids: list[np.ndarray] = []
        self._features: list[np.ndarray] = []
        self._idset = _IdSet()
        self._rows = 0
        self._recover()

    # -- lifecycle
    def close(self) -> None:
        if not self._lock.closed:
            self._lock.close()

    def __enter__(self) -> KeypointIndex:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def __len__(self) -> int:
        return self._rows

    def _load_meta(self, chunk_rows: int) -> int:
        path = self.directory / "meta.json"
        if path.exists():
            meta = json.loads(path.read_text())
            if meta.get("format") != 1 or meta.get("dim") != self.dim:
                raise ValueError(f"{path}: format/dim {meta} does not match dim={self.dim}")
            return int(meta["chunk_rows"])
        atomic_write_bytes(path, json.dumps({"format": 1, "dim": self.dim, "chunk_rows": chunk_rows}).encode())
        return chunk_rows

    def _chunk_path(self, chunk: int) -> Path:
        return self.directory / f"chunk-{chunk:06d}.rec"

    def _recover(self) -> None:
        committed_path = self.directory / "committed"
        committed = int(committed_path.read_text()) if committed_path.exists() else 0
        chunk = 0
        while self._rows < committed and self._chunk_path(chunk).exists():
            path = self._chunk_path(chunk)
            take = min(path.stat().st_size // self._record.itemsize, self.chunk_rows, committed - self._rows)
            if take <= 0:
                break
            records = np.fromfile(path, dtype=self._record, count=take)
            ids, features = self._new_chunk()
            ids[:take], features[:take] = records["id"], records["feature"]
            self._idset.add(ids[:take])
            self._rows += take
            chunk += 1
            if take < self.chunk_rows:
                break
        if self._rows != committed:
            log.warning("%s: committed %d rows but only %d intact; keeping the intact prefix",
                        self.directory, committed, self._rows)
            atomic_write_bytes(committed_path, f"{self._rows}\n".encode())
        # Drop torn tails and chunks past the intact prefix so later appends start from a clean end.
        last = (self._rows - 1) // self.chunk_rows if self._rows else -1
        for path in self.directory.glob("chunk-*.rec"):
            index = int(path.stem.split("-")[1])
            if index > last:
                path.unlink()
        if last >= 0:
            os.truncate(self._chunk_path(last), (self._rows - last * self.chunk_rows) * self._record.itemsize)

    def _new_chunk(self) -> tuple[np.ndarray, np.ndarray]:
        # np.empty of this size is mmap-backed and lazily paged: the unused tail of a chunk costs no RSS.
        self._ids.append(np.empty(self.chunk_rows, dtype=np.int64))
        self._features.append(np.empty((self.chunk_rows, self.dim), dtype=np.float32))
        return self._ids[-1], self._features[-1]

    # -- writes
    def contains(self, ids: np.ndarray) -> np.ndarray:
        return self._idset.contains(ids)

    def ids(self) -> np.ndarray:
        """All ids in append order (a copy)."""
        if not self._rows:
            return np.empty(0, dtype=np.int64)
        return np.concatenate(self._ids)[: self._rows].copy()

    def append(self, ids: np.ndarray, features: np.ndarray) -> int:
        """Durably append rows whose id is not present yet; returns how many were appended."""
        ids = np.asarray(ids, dtype=np.int64).reshape(-1)
        features = np.asarray(features, dtype=np.float32).reshape(len(ids), self.dim)
        keep = _first_occurrences(ids) & ~self.contains(ids)
        ids, features = ids[keep], features[keep]
        if not len(ids):
            return 0
        records = np.empty(len(ids), dtype=self._record)
        records["id"], records["feature"] = ids, features
        new_file, row, done = False, self._rows, 0
        while done < len(ids):
            chunk, offset = divmod(row, self.chunk_rows)
            count = min(self.chunk_rows - offset, len(ids) - done)
            path = self._chunk_path(chunk)
            new_file |= not path.exists()
            fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o644)
            try:
                start = offset * self._record.itemsize
                os.ftruncate(fd, start)  # drop bytes of an append that failed before its commit
                os.pwrite(fd, records[done : done + count].tobytes(), start)
                if self.durable:
                    os.fsync(fd)
            finally:
                os.close(fd)
            row, done = row + count, done + count
        if new_file and self.durable:
            fsync_dir(self.directory)
        self._commit(row)
        # Only now is the append visible in memory: a failed commit leaves the object as it was.
        row, done = self._rows, 0
        while done < len(ids):
            chunk, offset = divmod(row, self.chunk_rows)
            if chunk == len(self._ids):
                self._new_chunk()
            count = min(self.chunk_rows - offset, len(ids) - done)
            self._ids[chunk][offset : offset + count] = ids[done : done + count]
            self._features[chunk][offset : offset + count] = features[done : done + count]
            row, done = row + count, done + count
        self._idset.add(ids)
        self._rows = row
        return len(ids)

    def _commit(self, rows: int) -> None:
        path = self.directory / "committed"
        if self.durable:
            atomic_write_bytes(path, f"{rows}\n".encode())
        else:
            tmp = path.with_name("committed.tmp")
            tmp.write_text(f"{rows}\n")
            os.replace(tmp, path)

    # -- reads
    def features_at(self, rows: np.ndarray) -> np.ndarray:
        rows = np.asarray(rows, dtype=np.int64)
        out = np.empty((len(rows), self.dim), dtype=np.float32)
        for chunk in np.unique(rows // self.chunk_rows):
            sel = rows // self.chunk_rows == chunk
            out[sel] = self._features[chunk][rows[sel] % self.chunk_rows]
        return out

    def search(self, features: np.ndarray, top_k: int, min_similarity: float
               ) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
        """(query_row, index_row, id, similarity) arrays, ordered by (query_row, similarity desc, id asc)."""
        if top_k < 1:
            raise ValueError("top_k must be >= 1")
        queries = np.asarray(features, dtype=np.float32).reshape(-1, self.dim)
        parts: list[tuple[np.ndarray, ...]] = []
        # Bound the similarity block to ~16M float32 (64 MB) however many queries or rows there are.
        step = max(1, (1 << 24) // self.chunk_rows)
        for q0 in range(0, len(queries), step):
            q = queries[q0 : q0 + step]
            best: tuple[np.ndarray, ...] | None = None
            for chunk in range(len(self._ids)):
                size = min(self.chunk_rows, self._rows - chunk * self.chunk_rows)
                sims = q @ self._features[chunk][:size].T
                if size > top_k:
                    kth = np.partition(sims, size - top_k, axis=1)[:, size - top_k]
                    mask = sims >= np.maximum(kth, min_similarity)[:, None]
                else:
                    mask = sims >= min_similarity
                r, c = np.nonzero(mask)
                found = (r, c + chunk * self.chunk_rows, self._ids[chunk][c], sims[r, c])
                if best is not None:
                    found = tuple(np.concatenate(pair) for pair in zip(best, found, strict=True))
                keep = _top_k(found[0], found[2], found[3], top_k)
                best = tuple(a[keep] for a in found)
            if best is not None:
                parts.append((best[0] + q0, *best[1:]))
        if not parts:
            empty = np.empty(0, dtype=np.int64)
            return empty, empty, empty, np.empty(0, dtype=np.float32)
        rows, index_rows, ids, sims = (np.concatenate(p) for p in zip(*parts, strict=True))
        return rows, index_rows, ids, sims

    def query(self, features: np.ndarray, top_k: int, min_similarity: float) -> list[tuple[int, int, float]]:
        """[(query_row, id, similarity)], best top_k per query row with similarity >= min_similarity."""
        rows, _, ids, sims = self.search(features, top_k, min_similarity)
        return [(int(r), int(i), float(s)) for r, i, s in zip(rows, ids, sims, strict=True)]


# ----------------------------------------------------------------------------------------------- pairing
@dataclass(frozen=True, slots=True)
class Pair:
    """A pose match; movie_id is always the first domain's patch id, game_id the second's."""

    movie_id: int
    game_id: int
    view: str
    similarity: float


class PairingIndex:
    """One KeypointIndex per (domain, view) and the rule: a new patch pairs with the other domain, same view.

    Each new patch queries the other domain's index of its own view and pairs with its top_k matches whose
    similarity >= min_similarity. With mutual_best, a new patch p pairs only with its best match q, and only
    if p is also q's best among p's domain as it stands once p is added (ties: lower id wins). That is "mutual
    best at the time the later of the two arrived": pairs are never retracted, so a patch can gain a later
    mutual-best partner when a better one arrives, and an earlier pair can stop being the current mutual best.
    Results depend on arrival order (as any streaming rule must) but are deterministic for the same order. A
    patch id already present in any index is a no-op, also under another view. A pose with < 2 usable
    keypoints is stored but never paired.

    Crash-safe use from the indexer: pairs = propose_batch(...); write pairs (unique on movie_id, game_id);
    commit_batch(...). A crash in between replays to the same proposals; `add_batch` does both steps at once.
    """

    def __init__(
        self,
        root: Path,
        domains: Sequence[str] = DOMAINS,
        views: Sequence[str] = VIEWS,
        *,
        min_confidence: float = DEFAULT_MIN_CONFIDENCE,
        min_similarity: float = 0.9,
        top_k: int = 1,
        mutual_best: bool = False,
        chunk_rows: int = 65536,
        durable: bool = True,
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
        self._indexes: dict[tuple[str, str], KeypointIndex] = {}
        try:
            for d in self.domains:
                for v in self.views:
                    self._indexes[d, v] = KeypointIndex(Path(root) / d / v, FEATURE_DIM,
                                                        chunk_rows=chunk_rows, durable=durable)
        except BaseException:
            self.close()
            raise

    def close(self) -> None:
        for index in self._indexes.values():
            index.close()

    def __enter__(self) -> PairingIndex:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def index(self, domain: str, view: str) -> KeypointIndex:
        return self._indexes[domain, view]

    def _other(self, domain: str) -> str:
        if domain not in self.domains:
            raise ValueError(f"unknown domain {domain!r}")
        return self.domains[1 - self.domains.index(domain)]

    def _new(self, patch_ids: Iterable[int], domain: str, view: str, keypoints: np.ndarray
             ) -> tuple[np.ndarray, np.ndarray]:
        if (domain, view) not in self._indexes:
            raise ValueError(f"unknown domain/view {domain!r}/{view!r}")
        ids = np.asarray(patch_ids, dtype=np.int64).reshape(-1)
        kp = np.asarray(keypoints, dtype=np.float64).reshape(len(ids), NUM_KEYPOINTS, 3)
        keep = _first_occurrences(ids)
        for index in self._indexes.values():
            keep &= ~index.contains(ids)
        return ids[keep], keypoint_features(kp[keep], self.min_confidence)

    def propose_batch(self, patch_ids: Sequence[int] | np.ndarray, domain: str, view: str,
                      keypoints: np.ndarray) -> list[Pair]:
        """Pairs that adding these patches (one domain, one view, in order) would create; changes nothing."""
        ids, feats = self._new(patch_ids, domain, view, keypoints)
        return self._propose(ids, feats, domain, view)

    def commit_batch(self, patch_ids: Sequence[int] | np.ndarray, domain: str, view: str,
                     keypoints: np.ndarray) -> int:
        """Durably record the patches; returns how many were new."""
        ids, feats = self._new(patch_ids, domain, view, keypoints)
        return self._indexes[domain, view].append(ids, feats)

    def add_batch(self, patch_ids: Sequence[int] | np.ndarray, domain: str, view: str,
                  keypoints: np.ndarray) -> list[Pair]:
        """propose_batch + commit_batch; same result as adding the patches one by one in order."""
        ids, feats = self._new(patch_ids, domain, view, keypoints)
        pairs = self._propose(ids, feats, domain, view)
        self._indexes[domain, view].append(ids, feats)
        return pairs

    def add(self, patch_id: int, domain: str, view: str, keypoints: np.ndarray) -> list[Pair]:
        return self.add_batch([patch_id], domain, view, np.asarray(keypoints)[None])

    def _propose(self, ids: np.ndarray, feats: np.ndarray, domain: str, view: str) -> list[Pair]:
        usable = np.flatnonzero(np.abs(feats).sum(axis=1) > 0)
        other = self._indexes[self._other(domain), view]
        k = 1 if self.mutual_best else self.top_k
        rows, other_rows, other_ids, sims = other.search(feats[usable], k, self.min_similarity)
        rows = usable[rows]
        if self.mutual_best and len(rows):
            keep = self._mutual(ids, feats, domain, view, rows, other.features_at(other_rows))
            rows, other_ids, sims = rows[keep], other_ids[keep], sims[keep]
        first = domain == self.domains[0]
        return [
            Pair(int(i if first else o), int(o if first else i), view, float(s))
            for i, o, s in zip(ids[rows], other_ids, sims, strict=True)
        ]

    def _mutual(self, ids: np.ndarray, feats: np.ndarray, domain: str, view: str,
                rows: np.ndarray, partner_feats: np.ndarray) -> np.ndarray:
        """For each (new row, its best partner): is the new patch the partner's best once it is added?"""
        own = self._indexes[domain, view]
        best_id = np.full(len(rows), np.iinfo(np.int64).max)
        best_sim = np.full(len(rows), -np.inf, dtype=np.float32)
        r, _, old_ids, old_sims = own.search(partner_feats, 1, self.min_similarity)
        best_id[r], best_sim[r] = old_ids, old_sims
        # Patches earlier in this batch (and the patch itself) are part of "its domain as it stands".
        batch_sims = partner_feats @ feats.T
        batch_sims[np.arange(len(ids))[None, :] > rows[:, None]] = -np.inf
        for j, (sim_row, limit) in enumerate(zip(batch_sims, rows, strict=True)):
            cand = np.flatnonzero(sim_row[: limit + 1] == sim_row[: limit + 1].max())
            cand_id = ids[cand].min()
            s = sim_row[cand[0]]
            if s > best_sim[j] or (s == best_sim[j] and cand_id < best_id[j]):
                best_sim[j], best_id[j] = s, cand_id
        return best_id == ids[rows]


def brute_force_pairs(
    events: Iterable[tuple[int, str, str, np.ndarray]],
    *,
    domains: Sequence[str] = DOMAINS,
    min_confidence: float = DEFAULT_MIN_CONFIDENCE,
    min_similarity: float = 0.9,
    top_k: int = 1,
    mutual_best: bool = False,
) -> list[Pair]:
    """Naive reference of PairingIndex over (patch_id, domain, view, keypoints) events; a dot per pair."""
    seen: set[int] = set()
    stored: dict[tuple[str, str], list[tuple[int, np.ndarray]]] = {}
    pairs: list[Pair] = []
    for patch_id, domain, view, keypoints in events:
        if patch_id in seen:
            continue
        seen.add(patch_id)
        feat = keypoint_feature(keypoints, min_confidence).astype(np.float64)
        other = domains[1 - list(domains).index(domain)]
        own_list = stored.setdefault((domain, view), [])
        own_list.append((patch_id, feat))
        if not feat.any():
            continue
        cands = sorted(((-float(np.dot(feat, f)), oid, f) for oid, f in stored.get((other, view), [])),
                       key=lambda c: (c[0], c[1]))
        cands = [c for c in cands if -c[0] >= min_similarity][: 1 if mutual_best else top_k]
        for neg, oid, f in cands:
            if mutual_best:
                back = min(((-float(np.dot(f, g)), pid) for pid, g in own_list))
                if back[1] != patch_id:
                    continue
            first = domain == domains[0]
            pairs.append(Pair(patch_id if first else oid, oid if first else patch_id, view, -neg))
    return pairs
