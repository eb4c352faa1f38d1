"""A persistent, append-only store of prepared poses for one (domain, view), and its exact top-k search.

Single writer (flock). On disk (`directory`):
  meta.json            {"format": 2, "chunk_rows": R}; written once
  committed            decimal row count N, replaced atomically (temp + fsync + rename + dir fsync)
  chunk-000000.rec ... records <i8 id, <i4 visibility mask, <c8[17] centred unit-norm keypoints>, R per chunk,
                       appended with pwrite + fsync
  lock                 flock'd while open
Data is fsynced before `committed` is replaced, so bytes past N records (a torn append) are ignored and
truncated on reopen; a chunk shorter than N says committed data was lost, and the index keeps the intact prefix
(the caller re-adds what `ids()` lacks). A format-1 index (the old 34-float features) raises
`PoseStoreFormatError`: its rows cannot be converted (they kept no keypoints), the caller rebuilds it from its own
records of the keypoints.

In memory a chunk is held as blocks of STEP_ROWS poses, keypoint-major (complex64 (17, STEP_ROWS) each), so a
batch of queries reads every stored pose once: per block and query, one complex matrix-vector product per
orientation (plain and mirrored) plus the rows of the keypoints the query lacks. Search is exact: a float32 pass
scores every row with the decomposition below (two threads on two halves of a large index), and the best rows
(within a float32 margin) are re-scored with `stages.pairing.pose.score_prepared` in float64, whose values are returned.
The float32 pass runs in C (stages/pairing/_pose_kernel.c, one read of each stored pose) when that optional
extension was built, else in numpy (`_score_block_numpy`, the reference it is tested against); `kernel` names which.

Decomposition (w: the query in one orientation, z: a stored pose, both own-centred and unit-norm; S: the keypoints
both show, n = |S|; L: query keypoints the stored pose lacks; D: stored keypoints the query lacks):
  sigma = sum_L w, E = sum_L |w|^2               (depend only on the stored pose's mask: a per-mask table)
  P = sum_S conj(w_i) z_i, zeta = sum_D z, T = sum_D |z|^2    (per row: one product + the query's missing rows)
  score^2 = |P - conj(sigma) zeta / n|^2 / ((1 - E - |sigma|^2 / n) (1 - T - |zeta|^2 / n))
which is the shared-set re-centred, re-scaled, best-rotation cosine of `stages.pairing.pose`.
"""

from __future__ import annotations

import fcntl
import json
import logging
import os
from concurrent.futures import ThreadPoolExecutor
from functools import cache
from pathlib import Path

import numpy as np

from humanstyle.models.files import atomic_write_bytes, fsync_dir
from humanstyle.stages.pairing import ann as pose_ann
from humanstyle.stages.pairing.ann import CandidateIndex, SearchSettings
from humanstyle.stages.pairing.pose import (
    MIN_COVERAGE,
    MIN_SHARED,
    MIN_SHARED_SPREAD,
    NUM_KEYPOINTS,
    mask_bits,
    mirror_prepared,
    score_prepared,
)
from humanstyle.stages.process.blas_threads import single_blas_thread

log = logging.getLogger(__name__)

try:
    from humanstyle.stages.pairing import _pose_kernel
except ImportError:  # built without a C compiler: the numpy pass does the same work
    _pose_kernel = None
KERNELS = ("c", "numpy")

FORMAT = 2
RECORD = np.dtype([("id", "<i8"), ("mask", "<i4"), ("z", "<c8", (NUM_KEYPOINTS,))])
# Rows scored per step of the float32 pass: large enough that numpy's per-call cost is small, small enough that a
# step's arrays stay in the CPU cache (8k, 16k, 32k and 64k measured: bench/README.md).
STEP_ROWS = 32768
# Relative margin on a squared float32 score when choosing the rows to re-score in float64: float32 rounding,
# amplified where the shared set keeps only MIN_SHARED_SPREAD of a pose's spread, stays far below it.
SLACK = 1e-3
# Threads scoring one search (each on a share of the blocks), used once there are this many blocks per thread.
SEARCH_THREADS = 2
MIN_BLOCKS_PER_THREAD = 4
# Memory for the per-query mask tables of one pass (see PoseStore._search).
TABLE_BUDGET = 64 << 20


@cache
def _pool() -> ThreadPoolExecutor:
    return ThreadPoolExecutor(SEARCH_THREADS, thread_name_prefix="pose-search")


class PoseStoreFormatError(ValueError):
    """The directory holds an index of another on-disk format."""


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


def first_occurrences(ids: np.ndarray) -> np.ndarray:
    keep = np.zeros(len(ids), dtype=bool)
    keep[np.unique(ids, return_index=True)[1]] = True
    return keep


class _Masks:
    """The distinct visibility masks seen, numbered in order of arrival (append-only like the rows), with their
    keypoints as a float (17, G) 0/1 matrix for the per-query tables, and scratch arrays for building them.

    Arrays grow by doubling their capacity: reallocating them for every new mask would copy them on most appends
    and leave freed blocks in the heap (RSS), and fresh scratch arrays cost page faults on every query.
    """

    def __init__(self) -> None:
        self.index: dict[int, int] = {}
        self._bits = np.empty((NUM_KEYPOINTS, 0))
        self._counts = np.empty(0)
        self._sums = np.empty((8, 0))
        self._scratch = np.empty((3, 2, 0))
        self._flags = np.empty((2, 2, 0), dtype=bool)

    def __len__(self) -> int:
        return len(self.index)

    def ids(self, masks: np.ndarray) -> np.ndarray:
        new = [int(m) for m in dict.fromkeys(masks.tolist()) if int(m) not in self.index]
        if new:
            g = len(self.index)
            if g + len(new) > self._bits.shape[1]:
                self._grow(max(2 * self._bits.shape[1], g + len(new), 1024))
            added = mask_bits(np.asarray(new, dtype=np.int32))
            self._bits[:, g : g + len(new)] = added.T
            self._counts[g : g + len(new)] = added.sum(axis=1)
            for m in new:
                self.index[m] = len(self.index)
        return np.fromiter((self.index[int(m)] for m in masks), dtype=np.int32, count=len(masks))

    def _grow(self, capacity: int) -> None:
        g = len(self.index)
        bits, counts = np.zeros((NUM_KEYPOINTS, capacity)), np.zeros(capacity)
        bits[:, :g], counts[:g] = self._bits[:, :g], self._counts[:g]
        self._bits, self._counts = bits, counts
        self._sums = np.empty((8, capacity))
        self._scratch = np.empty((3, 2, capacity))
        self._flags = np.empty((2, 2, capacity), dtype=bool)

    @property
    def bits(self) -> np.ndarray:
        return self._bits[:, : len(self.index)]

    @property
    def counts(self) -> np.ndarray:
        return self._counts[: len(self.index)]

    def workspace(self) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """(sums (8, G), scratch (3, 2, G), flags (2, 2, G)) for `_mask_table`."""
        g = len(self.index)
        return self._sums[:, :g], self._scratch[..., :g], self._flags[..., :g]


class _Query:
    """One query in both orientations (plain, mirrored): coefficients, missing keypoints, per-mask table.

    The table is indexed by stored mask id and holds both orientations, so one `take` per step fetches both. It
    covers every stored mask (`stored`), or the masks a candidate search hands to `tabulate`.
    """

    def __init__(self, mask: int, z: np.ndarray, stored: _Masks | None) -> None:
        mirrored_mask, mirrored_z = mirror_prepared(np.array([mask]), z[None])
        ws = self.ws = np.stack([z.astype(np.complex128), mirrored_z[0].astype(np.complex128)])
        self.coef = np.conj(ws).astype(np.complex64)
        bits = self.bits = mask_bits(np.array([int(mask), int(mirrored_mask[0])]))
        # Both orientations lack the same number of keypoints (mirroring permutes them).
        self.missing = np.stack([np.flatnonzero(~b) for b in bits])
        # The keypoints missing in either orientation, and where each orientation's are among them.
        self.union = np.unique(self.missing)
        self.union_pos = np.searchsorted(self.union, self.missing)
        if stored is not None:
            self.tabulate(stored)

    def tabulate(self, stored: _Masks | _MaskSubset) -> bool:
        self.table, self.any_ok = _mask_table(self.bits, self.ws, stored)
        return self.any_ok


class _MaskSubset:
    """Some of the stored masks (by id), with what `_mask_table` reads of `_Masks`: a candidate search tabulates
    only the masks of its candidates, not every mask the index has seen (thousands)."""

    def __init__(self, masks: _Masks, ids: np.ndarray) -> None:
        self.bits, self.counts = masks.bits[:, ids], masks.counts[ids]

    def __len__(self) -> int:
        return len(self.counts)

    def workspace(self) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        g = len(self.counts)
        return np.empty((8, g)), np.empty((3, 2, g)), np.empty((2, 2, g), dtype=bool)


def _mask_table(bits: np.ndarray, ws: np.ndarray, stored: _Masks) -> tuple[np.ndarray, bool]:
    """Per stored mask and orientation of the query: [a, r + i nu] (see _score_step), as a (G, 2, 2) complex64
    table, and whether any mask passes the coverage rule.

    Sums over the shared keypoints S of 1 (n), w (re, im) and |w|^2 (w is 0 where the query lacks a keypoint)
    for every stored mask come from one real product (8 x 17 by 17 x G); the rest is in place in float64.
    """
    g = len(stored)
    sums, scratch, flags = stored.workspace()
    coef = np.stack([bits, ws.real, ws.imag, np.abs(ws) ** 2], axis=1).reshape(8, NUM_KEYPOINTS)
    sums = np.matmul(coef, stored.bits, out=sums).reshape(2, 4, g)
    n, sr, si, e = sums[:, 0], sums[:, 1], sums[:, 2], sums[:, 3]
    inv, du, tmp = scratch
    ok, test = flags
    np.divide(1.0, np.maximum(n, 1.0, out=inv), out=inv)
    # The query's spread on S: du = sum_S |w|^2 - |sum_S w|^2 / n.
    np.multiply(sr, sr, out=du)
    np.add(du, np.square(si, out=tmp), out=du)
    np.multiply(du, inv, out=du)
    np.subtract(e, du, out=du)
    # The coverage rule (stages.pairing.pose.coverage_ok) and a spread that is not degenerate.
    np.greater_equal(n, MIN_SHARED, out=ok)
    np.subtract(stored.counts, n, out=tmp)
    np.add(tmp, bits.sum(axis=1)[:, None], out=tmp)
    np.greater_equal(n, np.multiply(tmp, MIN_COVERAGE, out=tmp), out=test)
    np.logical_and(ok, test, out=ok)
    np.logical_and(ok, np.greater(du, MIN_SHARED_SPREAD, out=test), out=ok)
    # Row term: P - conj(sum_S w) (sum_S z) / n with sum_S z = -zeta (stored poses are own-centred), so
    # a = conj(sum_S w) / n; r = 1 / du, NaN where the rule fails; nu = 1 / n.
    table = np.empty((2, g, 4), dtype=np.float32)
    np.multiply(sr, inv, out=table[..., 0])
    # (not np.negative in place: numpy 2.4.6 computes it wrongly on this strided view)
    np.multiply(np.negative(si, out=tmp), inv, out=table[..., 1])
    with np.errstate(all="ignore"):  # where=ok: numpy may still divide (and warn) on the masked-out rows
        np.divide(1.0, du, out=table[..., 2], where=ok)
    np.copyto(table[..., 2], np.nan, where=~ok)
    np.copyto(table[..., 3], inv)
    return np.ascontiguousarray(table.view(np.complex64).transpose(1, 0, 2)), bool(ok.any())


class _Candidates:
    """The rows of one query that may be among its top_k (float32 squared score within SLACK of the k-th best
    so far, and above the floor): a superset of the answer, re-scored in float64 at the end."""

    def __init__(self, top_k: int, floor: float) -> None:
        self.top_k, self.floor = top_k, floor
        self.kth = -np.inf  # k-th best squared float32 score seen so far: a lower bound of the final k-th
        self._rows: list[np.ndarray] = []
        self._s2: list[np.ndarray] = []
        self._held = 0

    def add(self, s2: np.ndarray, first_row: int = 0, rows: np.ndarray | None = None) -> None:
        """Scores of rows first_row, first_row + 1, ... or, with `rows`, of those rows."""
        limit = max(self.floor, self.kth * (1.0 - SLACK))
        keep = np.flatnonzero(s2 >= limit) if np.isfinite(limit) else np.flatnonzero(s2 == s2)
        if not len(keep):
            return
        self._rows.append(keep + first_row if rows is None else rows[keep])
        self._s2.append(s2[keep])
        self._held += len(keep)
        if self._held >= self.top_k:
            s2s = np.concatenate(self._s2)
            k = self._held - self.top_k
            self.kth = max(self.kth, float(np.partition(s2s, k)[k]))
            sel = s2s >= max(self.floor, self.kth * (1.0 - SLACK))
            self._rows, self._s2 = [np.concatenate(self._rows)[sel]], [s2s[sel]]
            self._held = int(sel.sum())

    def rows(self) -> np.ndarray:
        return np.concatenate(self._rows) if self._rows else np.empty(0, dtype=np.int64)


class _Buffers:
    """Scratch arrays for one step of the float32 pass."""

    def __init__(self, rows: int, missing: int) -> None:
        self.p = np.empty((2, rows), dtype=np.complex64)
        # zeta per orientation, and |.|^2 of the stored keypoints the query lacks (both orientations).
        self.zeta = np.empty((2, rows), dtype=np.complex64)
        self.abs2 = np.empty((2 * missing, rows), dtype=np.float32)
        self.a = np.empty((2, rows), dtype=np.complex64)
        self.table = np.empty((rows, 2, 2), dtype=np.complex64)
        self.s2 = np.empty((2, rows), dtype=np.float32)
        self.dv = np.empty((2, rows), dtype=np.float32)
        self.z2 = np.empty((2, rows), dtype=np.float32)
        self.bad = np.empty((2, rows), dtype=bool)
        self.best = np.empty(rows, dtype=np.float32)


class PoseStore:
    """Persistent, append-only store of prepared poses for one (domain, view); single writer (flock)."""

    def __init__(self, directory: Path, *, chunk_rows: int = 65536, durable: bool = True,
                 kernel: str | None = None, search: SearchSettings | None = None) -> None:
        if chunk_rows <= 0:
            raise ValueError("chunk_rows must be positive")
        self.kernel = choose_kernel(kernel)
        self.search_settings = search or SearchSettings()
        self._ann: CandidateIndex | None = None  # built at the first search past search_settings.min_rows
        self.directory = Path(directory)
        self.directory.mkdir(parents=True, exist_ok=True)
        self.durable = durable
        self._lock = open(self.directory / "lock", "a+b")  # noqa: SIM115 - held for the object's lifetime
        try:
            fcntl.flock(self._lock.fileno(), fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            self._lock.close()
            raise RuntimeError(f"{self.directory} is open by another writer") from None
        try:
            self.chunk_rows = self._load_meta(chunk_rows)
            # A chunk is held as blocks of `block_rows` contiguous keypoint-major columns: one block per step.
            self.block_rows = min(STEP_ROWS, self.chunk_rows)
            self.blocks = -(-self.chunk_rows // self.block_rows)
            self._ids: list[np.ndarray] = []
            self._masks: list[np.ndarray] = []
            self._mask_ids: list[np.ndarray] = []
            self._z: list[np.ndarray] = []
            self._distinct = _Masks()
            self._idset = _IdSet()
            self._rows = 0
            self._scratch: dict[int, _Buffers] = {}
            self._recover()
        except BaseException:
            self._lock.close()
            raise

    # -- lifecycle
    @staticmethod
    def remove_files(directory: Path) -> None:
        """Delete an index's files (any format; the lock file stays), e.g. before rebuilding it."""
        for name in ("meta.json", "committed", "committed.tmp"):
            (directory / name).unlink(missing_ok=True)
        for path in directory.glob("chunk-*.rec"):
            path.unlink()

    def close(self) -> None:
        if not self._lock.closed:
            self._lock.close()

    def __enter__(self) -> PoseStore:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def __len__(self) -> int:
        return self._rows

    def _load_meta(self, chunk_rows: int) -> int:
        path = self.directory / "meta.json"
        if path.exists():
            meta = json.loads(path.read_text())
            if meta.get("format") != FORMAT:
                raise PoseStoreFormatError(f"{path}: index format {meta.get('format')}, this code reads {FORMAT}")
            return int(meta["chunk_rows"])
        if any(self.directory.glob("chunk-*.rec")):
            raise PoseStoreFormatError(f"{self.directory}: chunk files without meta.json")
        atomic_write_bytes(path, json.dumps({"format": FORMAT, "chunk_rows": chunk_rows}).encode())
        return chunk_rows

    def _chunk_path(self, chunk: int) -> Path:
        return self.directory / f"chunk-{chunk:06d}.rec"

    def _recover(self) -> None:
        committed_path = self.directory / "committed"
        committed = int(committed_path.read_text()) if committed_path.exists() else 0
        chunk = 0
        while self._rows < committed and self._chunk_path(chunk).exists():
            path = self._chunk_path(chunk)
            take = min(path.stat().st_size // RECORD.itemsize, self.chunk_rows, committed - self._rows)
            if take <= 0:
                break
            self._place(np.fromfile(path, dtype=RECORD, count=take))
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
            if int(path.stem.split("-")[1]) > last:
                path.unlink()
        if last >= 0:
            os.truncate(self._chunk_path(last), (self._rows - last * self.chunk_rows) * RECORD.itemsize)

    def _place(self, records: np.ndarray) -> None:
        """Copy committed records into the in-memory chunks."""
        mask_ids = self._distinct.ids(records["mask"])
        row, done = self._rows, 0
        while done < len(records):
            chunk, offset = divmod(row, self.chunk_rows)
            if chunk == len(self._ids):
                # np.empty of this size is mmap-backed and lazily paged: the unused tail costs no RSS.
                self._ids.append(np.empty(self.chunk_rows, dtype=np.int64))
                self._masks.append(np.empty(self.chunk_rows, dtype=np.int32))
                self._mask_ids.append(np.empty(self.chunk_rows, dtype=np.int32))
                self._z.append(np.empty((self.blocks, NUM_KEYPOINTS, self.block_rows), dtype=np.complex64))
            count = min(self.chunk_rows - offset, len(records) - done)
            part = records[done : done + count]
            self._ids[chunk][offset : offset + count] = part["id"]
            self._masks[chunk][offset : offset + count] = part["mask"]
            self._mask_ids[chunk][offset : offset + count] = mask_ids[done : done + count]
            at = offset
            while at < offset + count:
                block, col = divmod(at, self.block_rows)
                n = min(self.block_rows - col, offset + count - at)
                self._z[chunk][block, :, col : col + n] = part["z"][at - offset : at - offset + n].T
                at += n
            row, done = row + count, done + count
        self._idset.add(records["id"])
        self._rows = row
        if self._ann is not None:
            self._ann.add(records["mask"], records["z"])

    # -- writes
    def contains(self, ids: np.ndarray) -> np.ndarray:
        return self._idset.contains(ids)

    def ids(self) -> np.ndarray:
        """All ids in append order (a copy)."""
        if not self._rows:
            return np.empty(0, dtype=np.int64)
        return np.concatenate(self._ids)[: self._rows].copy()

    def append(self, ids: np.ndarray, masks: np.ndarray, z: np.ndarray) -> int:
        """Durably append prepared poses whose id is not present yet; returns how many were appended."""
        ids = np.asarray(ids, dtype=np.int64).reshape(-1)
        masks = np.asarray(masks, dtype=np.int32).reshape(len(ids))
        z = np.asarray(z, dtype=np.complex64).reshape(len(ids), NUM_KEYPOINTS)
        keep = first_occurrences(ids) & ~self.contains(ids)
        if not keep.any():
            return 0
        records = np.empty(int(keep.sum()), dtype=RECORD)
        records["id"], records["mask"], records["z"] = ids[keep], masks[keep], z[keep]
        new_file, row, done = False, self._rows, 0
        while done < len(records):
            chunk, offset = divmod(row, self.chunk_rows)
            count = min(self.chunk_rows - offset, len(records) - done)
            path = self._chunk_path(chunk)
            new_file |= not path.exists()
            fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o644)
            try:
                start = offset * RECORD.itemsize
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
        self._place(records)
        return len(records)

    def _commit(self, rows: int) -> None:
        path = self.directory / "committed"
        if self.durable:
            atomic_write_bytes(path, f"{rows}\n".encode())
        else:
            tmp = path.with_name("committed.tmp")
            tmp.write_text(f"{rows}\n")
            os.replace(tmp, path)

    # -- reads
    def poses_at(self, rows: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """(masks, z) of the given rows, as `stages.pairing.pose.prepare` returns them."""
        rows = np.asarray(rows, dtype=np.int64)
        masks = np.empty(len(rows), dtype=np.int32)
        z = np.empty((len(rows), NUM_KEYPOINTS), dtype=np.complex64)
        for chunk, sel, local in self._by_chunk(rows):
            masks[sel] = self._masks[chunk][local]
            z[sel] = self._z[chunk][local // self.block_rows, :, local % self.block_rows]
        return masks, z

    def _by_chunk(self, rows: np.ndarray):
        """(chunk, selection of `rows` in it, their rows within the chunk) for each chunk the rows fall in."""
        chunks, local = np.divmod(rows, self.chunk_rows)
        for chunk in np.unique(chunks):
            sel = chunks == chunk
            yield chunk, sel, local[sel]

    def search(self, masks: np.ndarray, z: np.ndarray, top_k: int, min_similarity: float
               ) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
        """Best top_k stored poses per query with similarity >= min_similarity, exactly as `score_prepared`.

        One pass over the stored poses for the whole batch of queries. Returns (query_row, index_row, id,
        similarity, mirrored) arrays ordered by (query_row, similarity desc, id asc).
        """
        if top_k < 1:
            raise ValueError("top_k must be >= 1")
        masks = np.asarray(masks, dtype=np.int32).reshape(-1)
        z = np.asarray(z, dtype=np.complex64).reshape(len(masks), NUM_KEYPOINTS)
        with single_blas_thread():  # every product here is small: see stages/process/blas_threads.py
            return self._search(masks, z, top_k, min_similarity)

    def _search(self, masks: np.ndarray, z: np.ndarray, top_k: int, min_similarity: float
                ) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
        usable = [q for q in range(len(masks)) if self._rows and masks[q] != 0]
        # One pass over the stored poses per batch, unless the batch's per-mask tables (32 bytes per distinct
        # stored mask and query) would exceed TABLE_BUDGET: then one pass per group of queries that fits. A FAISS
        # search builds tables for its candidates' masks only, so its batch stays whole (one FAISS call).
        group = len(usable) or 1
        if self.method == "exact":
            group = max(1, TABLE_BUDGET // (32 * max(1, len(self._distinct))))
        parts = []
        for first in range(0, len(usable), group):
            parts += self._search_group(usable[first : first + group], masks, z, top_k, min_similarity)
        if not parts:
            empty = np.empty(0, dtype=np.int64)
            return empty, empty, empty, np.empty(0, dtype=np.float64), np.empty(0, dtype=bool)
        return tuple(np.concatenate(a) for a in zip(*parts, strict=True))  # type: ignore[return-value]

    @property
    def method(self) -> str:
        """How the next search finds its rows: "exact" (every row scored) or "faiss" (candidates, then scored)."""
        wanted = self.search_settings.method
        if wanted == "exact" or (wanted == "auto" and (not pose_ann.available()
                                                       or self._rows < self.search_settings.min_rows)):
            return "exact"
        return "faiss"

    def _candidate_index(self) -> CandidateIndex:
        """The FAISS index over every row, trained now if it is missing or the data outgrew its lists."""
        ann = self._ann
        if ann is None or ann.needs_training(self._rows):
            ann = CandidateIndex(self.search_settings.nprobe, self.search_settings.candidates)
            sample = np.random.default_rng(self._rows).choice(
                self._rows, min(self._rows, pose_ann.TRAIN_POINTS_PER_LIST * pose_ann.lists_for(self._rows)),
                replace=False)
            ann.fit(*self.poses_at(np.sort(sample)), self._rows)
            for chunk in range(len(self._z)):
                start = chunk * self.chunk_rows
                ann.add(*self.poses_at(np.arange(start, min(self._rows, start + self.chunk_rows))))
            self._ann = ann
        return ann

    def _search_group(self, live: list[int], masks: np.ndarray, z: np.ndarray, top_k: int, min_similarity: float
                      ) -> list[tuple[np.ndarray, ...]]:
        floor = max(float(min_similarity), 0.0) ** 2 * (1.0 - SLACK) if min_similarity > 0 else -np.inf
        if live and self.method == "faiss":
            queries = {q: _Query(int(masks[q]), z[q], None) for q in live}
            found = self._candidates(live, masks, z, queries, top_k, floor)
        else:
            queries = {q: _Query(int(masks[q]), z[q], self._distinct) for q in live}
            found = self._scan_all([q for q in live if queries[q].any_ok], queries, top_k, floor)
        return self._rescore(found, masks, z, top_k, min_similarity)

    def _candidates(self, live: list[int], masks: np.ndarray, z: np.ndarray, queries: dict[int, _Query],
                    top_k: int, floor: float) -> dict[int, list[_Candidates]]:
        """FAISS proposes rows per query; the float32 pass scores them as it scores every row in an exact scan."""
        rows_of = self._candidate_index().search(masks[live], z[live])
        buffers = self._buffers(max(queries[q].missing.shape[1] for q in live))
        found = {}
        for q, rows in zip(live, rows_of, strict=True):
            best = _Candidates(top_k, floor)
            for start in range(0, len(rows), self.block_rows):
                part = rows[start : start + self.block_rows]
                block, mask_ids = self._gather(part)
                used, local = np.unique(mask_ids, return_inverse=True)
                if queries[q].tabulate(_MaskSubset(self._distinct, used)):
                    best.add(self._score_block(block, local.astype(np.int32), queries[q], buffers), rows=part)
            found[q] = [best]
        return found

    def _gather(self, rows: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """Rows as a keypoint-major block (complex64 (17, n)) and their mask ids, for the float32 pass."""
        block = np.empty((NUM_KEYPOINTS, len(rows)), dtype=np.complex64)
        mask_ids = np.empty(len(rows), dtype=np.int32)
        for chunk, sel, local in self._by_chunk(rows):
            block[:, sel] = self._z[chunk][local // self.block_rows, :, local % self.block_rows].T
            mask_ids[sel] = self._mask_ids[chunk][local]
        return block, mask_ids

    def _scan_all(self, live: list[int], queries: dict[int, _Query], top_k: int, floor: float
                  ) -> dict[int, list[_Candidates]]:
        blocks = [(chunk, start, min(self.chunk_rows, self._rows - chunk * self.chunk_rows, start + self.block_rows))
                  for chunk in range(len(self._z))
                  for start in range(0, min(self.chunk_rows, self._rows - chunk * self.chunk_rows), self.block_rows)]
        found: dict[int, list[_Candidates]] = {q: [] for q in live}
        if live:
            missing = max(queries[q].missing.shape[1] for q in live)
            # Two threads on two halves of the blocks (numpy and BLAS release the GIL): each keeps candidates for
            # its half, and their union is a superset of the answer.
            threads = SEARCH_THREADS if len(blocks) >= SEARCH_THREADS * MIN_BLOCKS_PER_THREAD else 1
            share = -(-len(blocks) // threads)
            parts = [blocks[i * share : (i + 1) * share] for i in range(threads)]
            work = [(part, self._buffers(missing, i)) for i, part in enumerate(parts)]
            results = (_pool().map(lambda w: self._scan(w[0], w[1], live, queries, top_k, floor), work)
                       if threads > 1 else [self._scan(*work[0], live, queries, top_k, floor)])
            for result in results:
                for q in live:
                    found[q].append(result[q])
        return found

    def _rescore(self, found: dict[int, list[_Candidates]], masks: np.ndarray, z: np.ndarray, top_k: int,
                 min_similarity: float) -> list[tuple[np.ndarray, ...]]:
        """The float64 score (`score_prepared`) of each query's float32 candidates: the top_k at or above
        min_similarity."""
        parts = []
        for q in found:
            rows = np.concatenate([c.rows() for c in found[q]])
            if not len(rows):
                continue
            cand_masks, cand_z = self.poses_at(rows)
            exact, mirrored = score_prepared(masks[q : q + 1], z[q : q + 1], cand_masks, cand_z)
            exact, mirrored = exact[0], mirrored[0]
            ids = self._ids_at(rows)
            ok = exact >= min_similarity
            rows, ids, exact, mirrored = rows[ok], ids[ok], exact[ok], mirrored[ok]
            order = np.lexsort((ids, -exact))[:top_k]
            parts.append((np.full(len(order), q, dtype=np.int64), rows[order], ids[order], exact[order],
                          mirrored[order]))
        return parts

    def _scan(self, blocks: list[tuple[int, int, int]], buffers: _Buffers, live: list[int],
              queries: dict[int, _Query], top_k: int, floor: float) -> dict[int, _Candidates]:
        found = {q: _Candidates(top_k, floor) for q in live}
        for chunk, start, stop in blocks:
            for q in live:  # the block stays in the CPU cache from one query to the next
                s2 = self._score_step(chunk, start, stop, queries[q], buffers)
                found[q].add(s2, chunk * self.chunk_rows + start)
        return found

    def _buffers(self, missing: int, thread: int = 0) -> _Buffers:
        """Scratch arrays of one thread for queries lacking up to `missing` keypoints, kept between searches (new
        large arrays cost page faults every time)."""
        current = self._scratch.get(thread)
        if current is None or current.abs2.shape[0] < 2 * missing:
            current = self._scratch[thread] = _Buffers(self.block_rows, missing)
        return current

    def _ids_at(self, rows: np.ndarray) -> np.ndarray:
        out = np.empty(len(rows), dtype=np.int64)
        for chunk, sel, local in self._by_chunk(rows):
            out[sel] = self._ids[chunk][local]
        return out

    def _score_step(self, chunk: int, start: int, stop: int, query: _Query, b: _Buffers) -> np.ndarray:
        return self._score_block(self._z[chunk][start // self.block_rows], self._mask_ids[chunk][start:stop], query, b)

    def _score_block(self, block: np.ndarray, mask_ids: np.ndarray, query: _Query, b: _Buffers) -> np.ndarray:
        """Squared float32 scores of the first len(mask_ids) columns of a keypoint-major block (complex64 (17, R)),
        best orientation; NaN where not comparable."""
        if self.kernel == "c":
            return self._score_block_c(block, mask_ids, query, b)
        return self._score_block_numpy(block[:, : len(mask_ids)], mask_ids, query, b)

    def _score_block_c(self, block: np.ndarray, mask_ids: np.ndarray, query: _Query, b: _Buffers) -> np.ndarray:
        """`_score_block_numpy`'s result from the C kernel. Every array passed is C-contiguous with the dtype the
        kernel reads, by construction: blocks (complex64 (17, R)), mask ids (int32), the query's table
        (complex64 (G, 2, 2)), coefficients (complex64 (2, 17)) and missing keypoints (int64 (2, k))."""
        m = len(mask_ids)
        out = b.best[:m]
        _pose_kernel.score_block(block.ctypes.data, block.shape[1], m, mask_ids.ctypes.data,
                                 query.table.ctypes.data, len(query.table), query.coef.ctypes.data,
                                 query.missing.ctypes.data, query.missing.shape[1], MIN_SHARED_SPREAD,
                                 out.ctypes.data)
        return out

    def _score_block_numpy(self, zs: np.ndarray, mask_ids: np.ndarray, query: _Query, b: _Buffers) -> np.ndarray:
        """Squared float32 scores of the columns of zs (complex64 (17, m)), best orientation; NaN where not
        comparable.

        Per row and orientation: num = P + a zeta and score^2 = |num|^2 r / (1 - T - nu |zeta|^2), with
        a = conj(sum_S w) / n, r = 1 / (the query's spread on S) and nu = 1 / n from the query's per-mask table
        (r is NaN where the coverage rule fails). Arrays are stacked (plain, mirrored); every operation writes
        into `b`.
        """
        m = zs.shape[1]
        p, s2, dv, z2, bad = b.p[:, :m], b.s2[:, :m], b.dv[:, :m], b.z2[:, :m], b.bad[:, :m]
        np.matmul(query.coef[0], zs, out=p[0])
        np.matmul(query.coef[1], zs, out=p[1])
        table = np.take(query.table, mask_ids, axis=0, out=b.table[:m], mode="clip")
        r, nu = table[:, :, 1].T.real, table[:, :, 1].T.imag
        k = query.missing.shape[1]
        if k:
            # zeta (the stored keypoints the query lacks, summed) and T (their |.|^2, summed) from rows of the
            # block: the union of both orientations' missing keypoints is squared once.
            zeta = b.zeta[:, :m]
            squares = b.abs2[: len(query.union), :m]
            for j, i in enumerate(query.union):
                np.abs(zs[i], out=squares[j])
            np.square(squares, out=squares)
            for o in range(2):
                _sum_rows_of(zs, query.missing[o], zeta[o])
                _sum_rows_of(squares, query.union_pos[o], dv[o])
            a = np.multiply(table[:, :, 0].T, zeta, out=b.a[:, :m])
            np.add(p, a, out=p)
            _abs2(zeta, z2)
            np.multiply(z2, nu, out=z2)
            np.add(dv, z2, out=dv)
            np.subtract(1.0, dv, out=dv)
        _abs2(p, s2)
        np.multiply(s2, r, out=s2)
        if k:
            np.divide(s2, dv, out=s2)
            if dv.min() <= MIN_SHARED_SPREAD:  # rare: checking first saves two passes per step
                np.less_equal(dv, MIN_SHARED_SPREAD, out=bad)
                np.copyto(s2, np.nan, where=bad)
        return np.fmax(s2[0], s2[1], out=b.best[:m])


def choose_kernel(kernel: str | None = None) -> str:
    """The float32 pass to run: `kernel`, else $HUMANSTYLE_POSE_KERNEL, else "c" when it was built."""
    kernel = kernel or os.environ.get("HUMANSTYLE_POSE_KERNEL") or ("c" if _pose_kernel is not None else "numpy")
    if kernel not in KERNELS:
        raise ValueError(f"pose kernel {kernel!r}: expected one of {KERNELS}")
    if kernel == "c" and _pose_kernel is None:
        raise ValueError("pose kernel 'c' was not built (no C compiler at install time): use 'numpy'")
    if kernel == "numpy" and _pose_kernel is None:
        _warn_numpy_once()
    return kernel


@cache
def _warn_numpy_once() -> None:
    log.warning("pose store: the compiled kernel was not built (no C compiler at install time); searching with "
                "numpy, about 1.4x slower on large indexes")


def _sum_rows_of(a: np.ndarray, rows: np.ndarray, out: np.ndarray) -> np.ndarray:
    """Rows `rows` of a 2-D array, summed into out one by one (a reduction over gathered rows is slower)."""
    if len(rows) == 1:
        np.copyto(out, a[rows[0]])
        return out
    np.add(a[rows[0]], a[rows[1]], out=out)
    for i in rows[2:]:
        np.add(out, a[i], out=out)
    return out


def _abs2(c: np.ndarray, out: np.ndarray) -> np.ndarray:
    """|c|^2 of a complex64 array into float32 `out` (abs then square: faster than squaring re and im)."""
    np.abs(c, out=out)
    return np.square(out, out=out)
