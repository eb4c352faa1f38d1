"""Dataset exports in the layouts junyanz/pytorch-CycleGAN-and-pix2pix reads.

pix2pix ("aligned"): <out>/{train,val,test}/<name>.jpg, each image A|B side by side (2*size x size).
CycleGAN ("unaligned"): <out>/{train,val,test}{A,B}/<name>.jpg; A is the first domain. val rows go to valA/valB
(the tools read them with --phase val) rather than being folded into test.

Splits are the trainer's (`models.data.split_of` with train.val_fraction and train.test_fraction): an export's
val set is what the trainer validates on, and its test set what the trainer never trains on. Columns, folders and
directions use the configured domain names (side A is the first domain).

Output names come from patch ids (or a hash of the source path when no id is given), never from source file
names. Each image is written to a temp file in its target folder and renamed into place, so a reader never sees a
partial image. A `manifest.csv` (also atomic) lists every input row with its output file or why it was skipped.
"""

from __future__ import annotations

import hashlib
from collections.abc import Sequence
from pathlib import Path

import cv2
import numpy as np
import pandas as pd

from humanstyle.models.data import SPLITS, split_of
from humanstyle.models.files import atomic_write_bytes


def _name(row: pd.Series, id_columns: Sequence[str], path_columns: Sequence[str]) -> str:
    if all(c in row.index and pd.notna(row[c]) for c in id_columns):
        return "_".join(str(int(row[c])) for c in id_columns)
    joined = "\0".join(str(row[c]) for c in path_columns)
    return hashlib.blake2b(joined.encode("utf-8"), digest_size=10).hexdigest()


def _load_square(path: str, size: int, flip: bool = False) -> np.ndarray | None:
    image = cv2.imread(str(path), cv2.IMREAD_COLOR)
    if image is None:
        return None
    if flip:
        image = np.ascontiguousarray(image[:, ::-1])
    h, w = image.shape[:2]
    side = max(h, w)
    # Patches are square by design; pad anything else rather than stretching the person.
    image = cv2.copyMakeBorder(image, (side - h) // 2, side - h - (side - h) // 2, (side - w) // 2,
                               side - w - (side - w) // 2, cv2.BORDER_CONSTANT, value=(0, 0, 0))
    interp = cv2.INTER_AREA if side > size else cv2.INTER_CUBIC
    return cv2.resize(image, (size, size), interpolation=interp)


def _write_image(path: Path, image: np.ndarray) -> None:
    ext = path.suffix.lower()
    params = [cv2.IMWRITE_JPEG_QUALITY, 95] if ext == ".jpg" else []
    ok, buf = cv2.imencode(ext, image, params)
    if not ok:
        raise OSError(f"could not encode {path.name}")
    atomic_write_bytes(path, buf.tobytes(), durable=False)


def _check(frame: pd.DataFrame, required: Sequence[str], ext: str, size: int) -> None:
    missing = [c for c in required if c not in frame.columns]
    if missing:
        raise ValueError(f"missing columns: {missing}")
    if ext not in ("jpg", "png"):
        raise ValueError("ext must be 'jpg' or 'png'")
    if size < 8:
        raise ValueError("size must be >= 8")


def _split_of(row: pd.Series, key: str, fractions: tuple[float, float]) -> str:
    split = row["split"] if "split" in row.index and pd.notna(row["split"]) else split_of(key, *fractions)
    if split not in SPLITS:
        raise ValueError(f"unknown split {split!r}")
    return str(split)


def export_pix2pix(
    pairs: pd.DataFrame,
    out_dir: Path,
    *,
    domains: Sequence[str],
    direction: str | None = None,
    fractions: tuple[float, float] = (0.1, 0.1),
    size: int = 256,
    ext: str = "jpg",
) -> pd.DataFrame:
    """Write A|B images; A (left) is the source domain of `direction` ("<a>2<b>", default domains[0] to
    domains[1]). Returns the manifest.

    Columns, with a, b = domains: <a>_path, <b>_path, view, similarity; optional <a>_id, <b>_id (names), split,
    mirrored. Without a split column, the split is the trainer's for the <a> patch (`fractions` = val and test
    fractions), so every pair of one <a> patch lands in one split (no train/test leakage through the A side). A
    mirrored pair's <b> image is flipped horizontally, so both halves show the same pose.
    """
    a, b = domains
    directions = (f"{a}2{b}", f"{b}2{a}")
    direction = direction or directions[0]
    _check(pairs, (f"{a}_path", f"{b}_path", "view", "similarity"), ext, size)
    if direction not in directions:
        raise ValueError(f"unknown direction {direction!r}: expected {' or '.join(directions)}")
    out_dir = Path(out_dir)
    for split in SPLITS:
        (out_dir / split).mkdir(parents=True, exist_ok=True)
    ids = (f"{a}_id", f"{b}_id")
    rows = []
    for _, row in pairs.iterrows():
        has_id = ids[0] in row.index and pd.notna(row[ids[0]])
        split = _split_of(row, f"{a}:{int(row[ids[0]])}" if has_id else f"{a}:{row[f'{a}_path']}", fractions)
        name = f"{_name(row, ids, (f'{a}_path', f'{b}_path'))}.{ext}"
        mirrored = bool(row["mirrored"]) if "mirrored" in row.index and pd.notna(row["mirrored"]) else False
        image_a, image_b = _load_square(row[f"{a}_path"], size), _load_square(row[f"{b}_path"], size, flip=mirrored)
        status, file = "written", f"{split}/{name}"
        if image_a is None or image_b is None:
            status, file = "unreadable", ""
        else:
            left, right = (image_a, image_b) if direction == directions[0] else (image_b, image_a)
            _write_image(out_dir / split / name, np.hstack([left, right]))
        rows.append({"file": file, "split": split, "view": row["view"], "similarity": row["similarity"],
                     ids[0]: row.get(ids[0]), ids[1]: row.get(ids[1]), "mirrored": int(mirrored), "status": status})
    manifest = pd.DataFrame(rows, columns=["file", "split", "view", "similarity", *ids, "mirrored", "status"])
    atomic_write_bytes(out_dir / "manifest.csv", manifest.to_csv(index=False).encode(), durable=False)
    return manifest


def export_cyclegan(
    patches: pd.DataFrame,
    out_dir: Path,
    *,
    domains: Sequence[str],
    fractions: tuple[float, float] = (0.1, 0.1),
    size: int = 256,
    ext: str = "jpg",
) -> pd.DataFrame:
    """Write {train,val,test}{A,B}/ with A = domains[0]. Returns the manifest.

    Columns: path, domain; optional id (names and split key), split.
    """
    _check(patches, ("path", "domain"), ext, size)
    letter = {domains[0]: "A", domains[1]: "B"}
    unknown = set(patches["domain"]) - set(letter)
    if unknown:
        raise ValueError(f"unknown domains {sorted(unknown)}")
    out_dir = Path(out_dir)
    for split in SPLITS:
        for side in "AB":
            (out_dir / f"{split}{side}").mkdir(parents=True, exist_ok=True)
    rows = []
    for _, row in patches.iterrows():
        has_id = "id" in row.index and pd.notna(row["id"])
        key = f"{row['domain']}:{int(row['id'])}" if has_id else f"{row['domain']}:{row['path']}"
        split = _split_of(row, key, fractions)
        folder = f"{split}{letter[row['domain']]}"
        name = f"{_name(row, ('id',), ('path',))}.{ext}"
        image = _load_square(row["path"], size)
        status, file = "written", f"{folder}/{name}"
        if image is None:
            status, file = "unreadable", ""
        else:
            _write_image(out_dir / folder / name, image)
        rows.append({"file": file, "split": split, "domain": row["domain"], "id": row.get("id"), "status": status})
    manifest = pd.DataFrame(rows, columns=["file", "split", "domain", "id", "status"])
    atomic_write_bytes(out_dir / "manifest.csv", manifest.to_csv(index=False).encode(), durable=False)
    return manifest
