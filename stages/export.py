"""Dataset exports in the layouts junyanz/pytorch-CycleGAN-and-pix2pix reads.

pix2pix ("aligned"): <out>/{train,val,test}/<name>.jpg, each image A|B side by side (2*size x size).
CycleGAN ("unaligned"): <out>/{train,val,test}{A,B}/<name>.jpg; A is the first domain. val rows go to valA/valB
(the tools read them with --phase val) rather than being folded into test.

Output names come from patch ids (or a hash of the source path when no id is given), never from source file
names. Each image is written to a temp file in its target folder and renamed into place, so a reader never sees a
partial image. A `manifest.csv` (also atomic) lists every input row with its output file or why it was skipped.
"""

from __future__ import annotations

import hashlib
from collections.abc import Sequence
from pathlib import Path
from typing import Literal

import cv2
import numpy as np
import pandas as pd
from humanstyle.models.files import atomic_write_bytes

SPLITS = ("train", "val", "test")


def stable_split(key: str, fractions: Sequence[float] = (0.8, 0.1, 0.1)) -> str:
    """"train" | "val" | "test" from a 64-bit BLAKE2b of key: the same on every run, machine and Python."""
    if len(fractions) != 3 or min(fractions) < 0 or not np.isclose(sum(fractions), 1.0):
        raise ValueError(f"fractions must be three non-negative numbers summing to 1, got {fractions}")
    u = int.from_bytes(hashlib.blake2b(key.encode("utf-8"), digest_size=8).digest(), "big") / 2.0**64
    edges = np.cumsum(fractions)
    return SPLITS[min(int(np.searchsorted(edges, u, side="right")), 2)]


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


def _split_of(row: pd.Series, key: str) -> str:
    split = row["split"] if "split" in row.index and pd.notna(row["split"]) else stable_split(key)
    if split not in SPLITS:
        raise ValueError(f"unknown split {split!r}")
    return str(split)


def export_pix2pix(
    pairs: pd.DataFrame,
    out_dir: Path,
    *,
    direction: Literal["movie_to_game", "game_to_movie"] = "movie_to_game",
    size: int = 256,
    ext: str = "jpg",
) -> pd.DataFrame:
    """Write A|B images; A (left) is the source domain of `direction`. Returns the manifest.

    Columns: movie_path, game_path, view, similarity; optional movie_id, game_id (names), split, mirrored. Without a
    split column, the split is stable_split of the movie patch key, so every pair of one movie patch lands in one
    split (no train/test leakage through the A side). A mirrored pair's game image is flipped horizontally, so both
    halves show the same pose.
    """
    _check(pairs, ("movie_path", "game_path", "view", "similarity"), ext, size)
    if direction not in ("movie_to_game", "game_to_movie"):
        raise ValueError(f"unknown direction {direction!r}")
    out_dir = Path(out_dir)
    for split in SPLITS:
        (out_dir / split).mkdir(parents=True, exist_ok=True)
    rows = []
    for _, row in pairs.iterrows():
        has_id = "movie_id" in row.index and pd.notna(row["movie_id"])
        split = _split_of(row, f"movie:{int(row['movie_id'])}" if has_id else f"movie:{row['movie_path']}")
        name = f"{_name(row, ('movie_id', 'game_id'), ('movie_path', 'game_path'))}.{ext}"
        mirrored = bool(row["mirrored"]) if "mirrored" in row.index and pd.notna(row["mirrored"]) else False
        movie, game = _load_square(row["movie_path"], size), _load_square(row["game_path"], size, flip=mirrored)
        status, file = "written", f"{split}/{name}"
        if movie is None or game is None:
            status, file = "unreadable", ""
        else:
            a, b = (movie, game) if direction == "movie_to_game" else (game, movie)
            _write_image(out_dir / split / name, np.hstack([a, b]))
        rows.append({"file": file, "split": split, "view": row["view"], "similarity": row["similarity"],
                     "movie_id": row.get("movie_id"), "game_id": row.get("game_id"), "mirrored": int(mirrored),
                     "status": status})
    manifest = pd.DataFrame(rows, columns=["file", "split", "view", "similarity", "movie_id", "game_id", "mirrored",
                                           "status"])
    atomic_write_bytes(out_dir / "manifest.csv", manifest.to_csv(index=False).encode(), durable=False)
    return manifest


def export_cyclegan(
    patches: pd.DataFrame,
    out_dir: Path,
    *,
    domains: Sequence[str] = ("movie", "game"),
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
        split = _split_of(row, f"{row['domain']}:{int(row['id'])}" if has_id else f"{row['domain']}:{row['path']}")
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
