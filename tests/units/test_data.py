"""Datasets, augmentation, split rule and sample grids of models/data.py, on generated images."""

from __future__ import annotations

from pathlib import Path

import cv2
import numpy as np
import pytest
import torch

from humanstyle.models.data import PairedDataset, PairPaths, UnpairedDataset, read_rgb, split_of, write_sample_grid

torch.set_num_threads(1)


def write_halves(
    path: Path, left_bgr: tuple[int, int, int], right_bgr: tuple[int, int, int], size: int
) -> Path:
    image = np.zeros((size, size, 3), np.uint8)
    image[:, : size // 2] = left_bgr
    image[:, size // 2 :] = right_bgr
    assert cv2.imwrite(str(path), image)
    return path


def left_is(image: torch.Tensor, channel: int) -> bool:
    """Whether the left quarter of a CHW tensor is saturated in `channel` (RGB order)."""
    return bool(image[channel, :, : image.shape[2] // 4].mean() > 0.9)


@pytest.fixture
def pairs(tmp_path: Path) -> list[tuple[Path, Path]]:
    out = []
    for i in range(4):
        # a: red | blue, b: green | black, both BGR on disk; b is a JPEG of another size.
        a = write_halves(tmp_path / f"a{i}.png", (0, 0, 255), (255, 0, 0), 48)
        b = write_halves(tmp_path / f"b{i}.jpg", (0, 255, 0), (0, 0, 0), 80)
        out.append((a, b))
    return out


def test_paired_flip_is_the_same_for_both_images(pairs: list[tuple[Path, Path]]) -> None:
    flipped = kept = 0
    for epoch in range(5):
        ds = PairedDataset(pairs, image_size=32, train=True, seed=3)
        ds.set_epoch(epoch)
        for i in range(len(ds)):
            a, b = ds[i]
            a_flipped, b_flipped = not left_is(a, 0), not left_is(b, 1)
            assert a_flipped == b_flipped, (epoch, i)
            flipped += a_flipped
            kept += not a_flipped
    assert flipped > 0 and kept > 0, "the flip must actually happen some of the time"


def test_paired_output_is_rgb_in_range_and_deterministic(pairs: list[tuple[Path, Path]]) -> None:
    ds = PairedDataset(pairs, image_size=40, train=True, seed=1)
    a, b = ds[0]
    assert a.shape == b.shape == (3, 40, 40)
    assert a.dtype == torch.float32
    assert a.min() >= -1 and a.max() <= 1 and a.min() == -1 and a.max() == 1
    red_side = a[:, :, :10] if left_is(a, 0) else a[:, :, -10:]
    assert red_side[0].mean() == pytest.approx(1.0) and red_side[2].mean() == pytest.approx(
        -1.0
    )  # BGR -> RGB
    again = PairedDataset(pairs, image_size=40, train=True, seed=1)[0]
    assert torch.equal(a, again[0]) and torch.equal(b, again[1])


def test_eval_never_flips(pairs: list[tuple[Path, Path]]) -> None:
    ds = PairedDataset(pairs, image_size=32, train=False)
    for i in range(len(ds)):
        a, b = ds[i]
        assert left_is(a, 0) and left_is(b, 1)


def test_unpaired_dataset(tmp_path: Path) -> None:
    paths_a = [write_halves(tmp_path / f"a{i}.png", (0, 0, 255), (0, 0, 0), 20) for i in range(3)]
    paths_b = [write_halves(tmp_path / f"b{i}.png", (255, 0, 0), (i * 40, 0, 0), 20) for i in range(7)]
    ds = UnpairedDataset(paths_a, paths_b, image_size=16, train=True, seed=0)
    assert len(ds) == 7
    a, b = ds[5]
    assert a.shape == b.shape == (3, 16, 16) and a.abs().max() <= 1
    # Partners are a function of (seed, epoch, index): reproducible, yet they change between epochs.
    partners = [[ds[i][1][2].mean().item() for i in range(7)] for _ in range(2)]
    assert partners[0] == partners[1]
    ds.set_epoch(1)
    assert [ds[i][1][2].mean().item() for i in range(7)] != partners[0]
    with pytest.raises(ValueError):
        UnpairedDataset([], paths_b, 16, True)


def test_read_rgb_errors_name_the_file(tmp_path: Path) -> None:
    with pytest.raises(OSError, match="missing.png"):
        read_rgb(tmp_path / "missing.png")


def test_split_is_stable_and_near_the_fraction() -> None:
    keys = [f"video{v}/frame{f}/person{p}" for v in range(20) for f in range(100) for p in range(3)]
    val = [k for k in keys if split_of(k, 0.2) == "val"]
    assert abs(len(val) / len(keys) - 0.2) < 0.02
    # Pinned values: a change of the hash would silently move patches between splits.
    assert [split_of(f"k{i}", 0.5) for i in range(8)] == PINNED
    # Raising the fraction only ever moves keys from train to val.
    assert set(val) <= {k for k in keys if split_of(k, 0.3) == "val"}
    assert {split_of(k, 0.0) for k in keys[:100]} == {"train"}
    assert {split_of(k, 1.0) for k in keys[:100]} == {"val"}
    with pytest.raises(ValueError):
        split_of("x", 1.5)


PINNED = ["val", "val", "val", "val", "val", "train", "train", "val"]


def test_sample_grid(tmp_path: Path) -> None:
    inputs = -torch.ones(3, 3, 8, 8)
    outputs = torch.zeros(3, 3, 8, 8)
    targets = torch.ones(3, 3, 8, 8)
    targets[:, 0] = -1  # cyan: shows whether channels come out in RGB order
    path = tmp_path / "grids" / "step_000010.png"
    grid = write_sample_grid(path, inputs, outputs, targets, max_rows=2)
    assert grid.shape == (16, 24, 3)
    on_disk = cv2.cvtColor(cv2.imread(str(path)), cv2.COLOR_BGR2RGB)
    assert np.array_equal(on_disk, grid)
    assert (grid[:, :8] == 0).all() and (grid[:, 8:16] == 128).all()
    assert (grid[:, 16:, 0] == 0).all() and (grid[:, 16:, 1:] == 255).all()
    two_columns = write_sample_grid(tmp_path / "g2.png", inputs[:, :, :4, :4], outputs)
    assert two_columns.shape == (24, 16, 3)


def test_mirrored_pair_flips_the_flagged_image(tmp_path: Path) -> None:
    rng = np.random.default_rng(4)
    # Asymmetric images at the training size (no resize): a flip is visible everywhere.
    a = tmp_path / "a.png"
    b = tmp_path / "b.png"
    cv2.imwrite(str(a), rng.integers(0, 256, (32, 32, 3), dtype=np.uint8))
    cv2.imwrite(str(b), rng.integers(0, 256, (32, 32, 3), dtype=np.uint8))
    plain = PairedDataset([(a, b)], image_size=32, train=False)[0]
    flipped = PairedDataset([PairPaths(a, b, flip_b=True)], image_size=32, train=False)[0]
    reverse = PairedDataset([PairPaths(b, a, flip_a=True)], image_size=32, train=False)[0]

    def to_rgb(t: torch.Tensor) -> np.ndarray:
        return ((t.permute(1, 2, 0).numpy() + 1.0) * 127.5).round().astype(np.uint8)

    assert torch.equal(flipped[0], plain[0])
    np.testing.assert_array_equal(to_rgb(flipped[1]), np.fliplr(read_rgb(b)))
    np.testing.assert_array_equal(to_rgb(reverse[0]), np.fliplr(read_rgb(b)))
    np.testing.assert_array_equal(to_rgb(reverse[1]), read_rgb(a))
