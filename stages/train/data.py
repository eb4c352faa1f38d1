"""The trainer's data, read from the catalog incrementally: each refresh reads only what is new since the last.

A catalog of a million pairs took 26 s to re-read and hash on every refresh (bench/README.md, "Trainer refresh");
the trainer refreshes on every pairs event. So `TrainingData` remembers the watermark it was read to (pair id,
the pairing stage's patch number, verdict change: `Catalog.watermark`), and a refresh reads the rows above it: new
pairs and kept patches,
and the pairs whose verdict changed since (a pair marked bad leaves the data, one unmarked comes back in its place).
The result is the same as reading everything up to the new watermark (a test compares them after a sequence of
additions and verdicts), in the same order: by pair id, and patches in the order the pairing stage paired them
(patch ids written by several machines do not commit in order; that order does).

Reading and applying are two steps (`read_delta`, `TrainingData.apply`): processes training together read each
their delta, agree on the digest it leads to, and only then apply it (stages/train/rank_loop.py). The digest is a sum of
per-item hashes, so it follows additions and removals without re-hashing everything.
"""

from __future__ import annotations

import bisect
import hashlib
from dataclasses import dataclass, field
from pathlib import Path

from humanstyle.models.data import SPLITS, PairPaths, split_of
from humanstyle.stages.store.catalog import Catalog
from humanstyle.stages.store.storage import Storage

Watermark = tuple[int, int, int]  # (pair id, patch id, verdict change)
_MOD = 1 << 64


def _fold(total: int) -> int:
    """A sum of item hashes as the digest processes compare: non-zero, 63 bits."""
    return ((total % _MOD) >> 1) or 1


def _item_hash(kind: str, split: str, item: PairPaths | Path) -> int:
    text = repr(tuple(item) if isinstance(item, PairPaths) else item)
    digest = hashlib.blake2b(f"{kind}\0{split}\0{text}".encode(), digest_size=8).digest()
    return int.from_bytes(digest, "big")


@dataclass
class DataDelta:
    """What a refresh changes: rows to add, pairs to drop (marked bad) or restore (unmarked), and the digest and
    watermark after it."""

    upto: Watermark
    pairs: list[tuple[int, str, PairPaths]] = field(default_factory=list)  # (pair id, split, pair), new or restored
    dropped: list[tuple[int, str]] = field(default_factory=list)  # (pair id, split)
    patches: list[tuple[int, str, Path]] = field(default_factory=list)  # (side 0 or 1, split, local path)
    digest_sum: int = 0

    @property
    def digest(self) -> int:
        return _fold(self.digest_sum)

    def __bool__(self) -> bool:
        return bool(self.pairs or self.dropped or self.patches)


@dataclass
class TrainingData:
    """Image paths by split: pairs (first domain's image, second's; the second flipped when the pair is mirrored)
    and unpaired patches per side, each in id order; `upto` is the watermark they were read to."""

    pairs: dict[str, list[PairPaths]] = field(default_factory=lambda: {s: [] for s in SPLITS})
    side_a: dict[str, list[Path]] = field(default_factory=lambda: {s: [] for s in SPLITS})
    side_b: dict[str, list[Path]] = field(default_factory=lambda: {s: [] for s in SPLITS})
    pair_ids: dict[str, list[int]] = field(default_factory=lambda: {s: [] for s in SPLITS})
    upto: Watermark | None = None
    digest_sum: int = 0

    @property
    def digest(self) -> int:
        """A non-zero 63-bit fingerprint of what the datasets hold, for processes to check they built the same."""
        return _fold(self.digest_sum)

    def has_pair(self, pair_id: int, split: str) -> bool:
        ids = self.pair_ids[split]
        at = bisect.bisect_left(ids, pair_id)
        return at < len(ids) and ids[at] == pair_id

    def apply(self, delta: DataDelta) -> None:
        for pair_id, split in delta.dropped:
            at = bisect.bisect_left(self.pair_ids[split], pair_id)
            del self.pair_ids[split][at], self.pairs[split][at]
        for pair_id, split, pair in delta.pairs:
            ids = self.pair_ids[split]
            if not ids or pair_id > ids[-1]:  # new pairs: appended, the common case
                ids.append(pair_id)
                self.pairs[split].append(pair)
            else:  # a restored pair goes back to its place
                at = bisect.bisect_left(ids, pair_id)
                ids.insert(at, pair_id)
                self.pairs[split].insert(at, pair)
        for side, split, path in delta.patches:
            (self.side_a, self.side_b)[side][split].append(path)
        self.upto, self.digest_sum = delta.upto, delta.digest_sum


def read_delta(data: TrainingData, catalog: Catalog, storage: Storage, domains: tuple[str, str],
               val_fraction: float, test_fraction: float, watermark: Watermark) -> DataDelta:
    """What the catalog holds up to `watermark` that `data` lacks, with files fetched as local paths: the data
    folder's own, or copies of what a remote `storage` holds in its cache. The test split is only counted, never
    trained on or opened, so its files are not fetched (its paths are where they would be cached)."""
    pair_after, patch_after, verdict_after = data.upto if data.upto is not None else (0, 0, 0)
    pair_upto, patch_upto, _ = watermark

    def split_of_pair(row) -> str:  # a pair follows its first-domain patch: its pairs never straddle the splits
        return split_of(f"{domains[0]}:{row['a_patch_id']}", val_fraction, test_fraction)

    new_pairs = [(row, split_of_pair(row)) for row in catalog.pairs(upto=pair_upto, after=pair_after)]
    dropped, restored = [], []
    if data.upto is not None:
        for row in catalog.verdict_changes(verdict_after, upto=pair_after):
            split = split_of_pair(row)
            present = data.has_pair(row["id"], split)
            if row["verdict"] == "bad" and present:
                dropped.append((row["id"], split))
            elif row["verdict"] != "bad" and not present:
                restored.append((row, split))
    patches = [(side, path, split_of(f"{d}:{patch_id}", val_fraction, test_fraction))
               for side, d in enumerate(domains)
               for patch_id, path, _view in catalog.training_patches(d, patch_upto, patch_after)]
    named = [(name, split) for row, split in new_pairs + restored for name in (row["a_path"], row["b_path"])]
    named += [(path, split) for _, path, split in patches]
    used = sorted({name for name, split in named if split != "test"})
    # Each name's local path once: a patch's file is named by its pairs and by its side (a name check costs ~10 us).
    local = dict(zip(used, storage.fetch(used), strict=True))
    local.update((name, storage.local_path(name)) for name in {name for name, _ in named} - local.keys())

    delta = DataDelta(upto=watermark, digest_sum=data.digest_sum)
    for pair_id, split in dropped:
        at = bisect.bisect_left(data.pair_ids[split], pair_id)
        delta.digest_sum -= _item_hash("pair", split, data.pairs[split][at])
        delta.dropped.append((pair_id, split))
    for row, split in restored + new_pairs:
        pair = PairPaths(local[row["a_path"]], local[row["b_path"]], flip_b=bool(row["mirrored"]))
        delta.digest_sum += _item_hash("pair", split, pair)
        delta.pairs.append((row["id"], split, pair))
    for side, path, split in patches:
        delta.digest_sum += _item_hash(f"side{side}", split, local[path])
        delta.patches.append((side, split, local[path]))
    delta.digest_sum %= _MOD
    return delta


def load_training_data(catalog: Catalog, storage: Storage, domains: tuple[str, str], val_fraction: float,
                       test_fraction: float = 0.0, watermark: Watermark | None = None) -> TrainingData:
    """Every pair and kept patch by split up to `watermark` (now, when None), read in full."""
    data = TrainingData()
    data.apply(read_delta(data, catalog, storage, domains, val_fraction, test_fraction,
                          watermark if watermark is not None else catalog.watermark()))
    return data


def data_digest(data: TrainingData) -> int:
    """The digest of `data` computed from scratch (what `TrainingData.digest` keeps up to date)."""
    total = 0
    for kind, part in (("pair", data.pairs), ("side0", data.side_a), ("side1", data.side_b)):
        for split in SPLITS:
            total += sum(_item_hash(kind, split, item) for item in part[split])
    return _fold(total)
