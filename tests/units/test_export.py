from collections import Counter
from pathlib import Path

import cv2
import numpy as np
import pandas as pd
import pytest

from humanstyle.models.data import split_of
from humanstyle.stages.tools.export import export_cyclegan, export_pix2pix

DOMAINS = ("movie", "game")


def make_image(path: Path, colour: tuple[int, int, int], shape: tuple[int, int] = (40, 40)) -> str:
    cv2.imwrite(str(path), np.full((*shape, 3), colour, dtype=np.uint8))
    return str(path)


def test_exports_split_as_the_trainer_does() -> None:
    """One split function for the trainer and every export: val is the trainer's val, test is never trained on,
    and a key's split is fixed (a change of hash would silently reshuffle every dataset)."""
    pinned = ["val", "train", "test", "train", "train", "test"]
    assert [split_of(f"movie:{i}", 0.1, 0.1) for i in range(7, 13)] == pinned
    counts = Counter(split_of(f"k{i}", 0.1, 0.1) for i in range(5000))
    assert 0.77 < counts["train"] / 5000 < 0.83 and 0.08 < counts["val"] / 5000 < 0.12
    keys = [f"movie:{i}" for i in range(2000)]
    assert [k for k in keys if split_of(k, 0.1) == "val"] == [k for k in keys if split_of(k, 0.1, 0.2) == "val"]
    assert split_of("x", 0.0, 1.0) == "test" and split_of("x", 0.0, 0.0) == "train"
    with pytest.raises(ValueError):
        split_of("x", 0.6, 0.5)


def test_pix2pix_layout(tmp_path: Path) -> None:
    src = tmp_path / "src"
    src.mkdir()
    pairs = pd.DataFrame({
        "movie_id": [1, 2, 3],
        "game_id": [10, 11, 12],
        "movie_path": [make_image(src / "m1.png", (255, 0, 0)), make_image(src / "../evil name.png", (255, 0, 0)),
                       str(src / "missing.png")],
        "game_path": [make_image(src / f"g{i}.png", (0, 0, 255), (30, 50)) for i in range(3)],
        "view": ["FULL-BODY-FRONT"] * 3,
        "similarity": [0.95, 0.93, 0.91],
        "split": ["train", "test", "val"],
    })
    manifest = export_pix2pix(pairs, tmp_path / "out", domains=DOMAINS, size=64)
    read = pd.read_csv(tmp_path / "out" / "manifest.csv")
    assert list(read["status"]) == ["written", "written", "unreadable"]
    assert list(read["file"].fillna("")) == ["train/1_10.jpg", "test/2_11.jpg", ""]
    assert manifest["file"].tolist() == ["train/1_10.jpg", "test/2_11.jpg", ""]
    image = cv2.imread(str(tmp_path / "out" / "train" / "1_10.jpg"))
    assert image.shape == (64, 128, 3)
    assert image[32, 10, 0] > 200 and image[32, 74, 2] > 200  # movie (blue in BGR) left, game right
    flipped = export_pix2pix(pairs.drop(columns="split"), tmp_path / "flip", domains=DOMAINS, size=32,
                             direction="game2movie", ext="png")
    first = cv2.imread(str(tmp_path / "flip" / flipped["file"][0]))
    assert first.shape == (32, 64, 3) and first[16, 40, 0] == 255
    assert not list((tmp_path / "out").rglob("*.tmp"))


def test_cyclegan_layout(tmp_path: Path) -> None:
    src = tmp_path / "src"
    src.mkdir()
    patches = pd.DataFrame({
        "id": range(8),
        "path": [make_image(src / f"p{i}.png", (i * 30, 0, 0), (48, 36)) for i in range(8)],
        "domain": ["movie", "game"] * 4,
        "split": ["train", "train", "test", "test", "val", "val", "train", "test"],
    })
    export_cyclegan(patches, tmp_path / "out", domains=DOMAINS, size=32)
    manifest = pd.read_csv(tmp_path / "out" / "manifest.csv")
    assert manifest["file"].tolist() == ["trainA/0.jpg", "trainB/1.jpg", "testA/2.jpg", "testB/3.jpg",
                                         "valA/4.jpg", "valB/5.jpg", "trainA/6.jpg", "testB/7.jpg"]
    for file in manifest["file"]:
        assert cv2.imread(str(tmp_path / "out" / file)).shape == (32, 32, 3)
    for folder in ("trainA", "trainB", "testA", "testB"):
        assert (tmp_path / "out" / folder).is_dir()
    with pytest.raises(ValueError):
        export_cyclegan(patches.assign(domain="anime"), tmp_path / "bad", domains=DOMAINS)


def test_pix2pix_flips_the_game_image_of_a_mirrored_pair(tmp_path: Path) -> None:
    rng = np.random.default_rng(3)
    movie, game = tmp_path / "m.png", tmp_path / "g.png"
    cv2.imwrite(str(movie), rng.integers(0, 256, (48, 48, 3), dtype=np.uint8))
    cv2.imwrite(str(game), rng.integers(0, 256, (48, 48, 3), dtype=np.uint8))
    pairs = pd.DataFrame({"movie_path": [str(movie)] * 2, "game_path": [str(game)] * 2, "view": ["FULL-BODY-FRONT"] * 2,
                          "similarity": [0.99, 0.99], "movie_id": [1, 1], "game_id": [2, 3], "mirrored": [0, 1],
                          "split": ["train", "train"]})
    for direction in ("movie2game", "game2movie"):
        out = tmp_path / direction
        manifest = export_pix2pix(pairs, out, domains=DOMAINS, size=48, ext="png", direction=direction)
        assert manifest["mirrored"].tolist() == [0, 1]
        plain, mirrored = (cv2.imread(str(out / f)) for f in manifest["file"])
        game_half = slice(48, 96) if direction == "movie2game" else slice(0, 48)
        movie_half = slice(0, 48) if direction == "movie2game" else slice(48, 96)
        np.testing.assert_array_equal(plain[:, game_half], cv2.imread(str(game)))
        np.testing.assert_array_equal(mirrored[:, game_half], np.fliplr(cv2.imread(str(game))))
        np.testing.assert_array_equal(mirrored[:, movie_half], cv2.imread(str(movie)))
