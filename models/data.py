"""Datasets of person patches for the GANs, the train/val split rule, and sample-grid images.

Tensors are RGB, (C, H, W), float32 in [-1, 1]. Augmentation is Resize + (train only) HorizontalFlip; a pair
gets the same flip on both images. A mirrored pair (its two patches show the same pose once one of them is
flipped) names the image to flip first, so that both images of every pair show the same pose. Augmentation and
the unpaired partner are drawn from (seed, epoch, index), never from global state, so an item is the same
whichever worker loads it and a resumed run sees the same data.
"""

from __future__ import annotations

import hashlib
import os
from collections.abc import Sequence
from typing import NamedTuple

os.environ.setdefault(
    "NO_ALBUMENTATIONS_UPDATE", "1"
)  # albumentations would otherwise look online for updates

import albumentations as A  # noqa: E402
import cv2  # noqa: E402
import numpy as np  # noqa: E402
import torch  # noqa: E402
from albumentations.pytorch import ToTensorV2  # noqa: E402
from torch.utils.data import Dataset  # noqa: E402

from humanstyle.models.files import atomic_write_bytes  # noqa: E402

PathLike = str | os.PathLike[str]


def build_transform(image_size: int, train: bool, paired: bool = False) -> A.Compose:
    """Resize to image_size², flip half the time when training, scale to [-1, 1], to a CHW tensor.

    With paired=True the Compose takes `image` and `image_b` and applies the same random choices to both.
    """
    steps: list[A.BasicTransform] = [A.Resize(image_size, image_size, interpolation=cv2.INTER_AREA)]
    if train:
        steps.append(A.HorizontalFlip(p=0.5))
    steps += [A.Normalize(mean=(0.5, 0.5, 0.5), std=(0.5, 0.5, 0.5), max_pixel_value=255.0), ToTensorV2()]
    if not paired:
        return A.Compose(steps)
    # The two sides of a pair may come at different sizes; Resize makes them equal, so the check is moot.
    return A.Compose(steps, additional_targets={"image_b": "image"}, is_check_shapes=False)


def read_rgb(path: PathLike) -> np.ndarray:
    """An image file (PNG/JPEG, any channel count) as uint8 RGB (H, W, 3)."""
    image = cv2.imread(str(path), cv2.IMREAD_COLOR)
    if image is None:
        raise OSError(f"cannot read image {path}")
    return cv2.cvtColor(image, cv2.COLOR_BGR2RGB)


def _item_seed(*parts: int) -> int:
    return int(np.random.SeedSequence([int(p) for p in parts]).generate_state(1)[0])


class PairPaths(NamedTuple):
    """One training pair: image paths, and which image to flip horizontally before anything else."""

    a: PathLike
    b: PathLike
    flip_a: bool = False
    flip_b: bool = False


def read_pair(pair: PairPaths) -> tuple[np.ndarray, np.ndarray]:
    """The two RGB images of a pair, the flagged ones flipped horizontally."""
    a, b = read_rgb(pair.a), read_rgb(pair.b)
    return (np.fliplr(a) if pair.flip_a else a), (np.fliplr(b) if pair.flip_b else b)


class PairedDataset(Dataset):
    """(a, b) tensors for pix2pix from (path_a, path_b) pairs or `PairPaths` (with flips). A list is read, not
    copied: pairs appended to it later are part of the dataset (the trainer's data grows in place). With
    `reverse`, each pair is read the other way round (b, a), flips following their images."""

    def __init__(
        self, pairs: Sequence[tuple[PathLike, PathLike] | PairPaths], image_size: int, train: bool, seed: int = 0,
        reverse: bool = False,
    ):
        self.pairs = pairs if isinstance(pairs, list) else list(pairs)
        self.train = train
        self.seed = seed
        self.epoch = 0
        self.reverse = reverse
        self.transform = build_transform(image_size, train, paired=True)

    def set_epoch(self, epoch: int) -> None:
        """Draw different flips in each pass over the data."""
        self.epoch = epoch

    def __len__(self) -> int:
        return len(self.pairs)

    def __getitem__(self, index: int) -> tuple[torch.Tensor, torch.Tensor]:
        pair = PairPaths(*self.pairs[index])
        if self.reverse:
            pair = PairPaths(pair.b, pair.a, pair.flip_b, pair.flip_a)
        image_a, image_b = read_pair(pair)
        if self.train:
            self.transform.set_random_seed(_item_seed(self.seed, self.epoch, index))
        out = self.transform(image=np.ascontiguousarray(image_a), image_b=np.ascontiguousarray(image_b))
        return out["image"], out["image_b"]


class UnpairedDataset(Dataset):
    """(a, b) tensors for CycleGAN: a walks through paths_a, b is drawn at random from paths_b.

    The length is that of the larger domain (the smaller one wraps around), as in the CycleGAN code. Lists are
    read, not copied (see PairedDataset).
    """

    def __init__(
        self,
        paths_a: Sequence[PathLike],
        paths_b: Sequence[PathLike],
        image_size: int,
        train: bool,
        seed: int = 0,
    ):
        if not paths_a or not paths_b:
            raise ValueError("both domains need at least one image")
        self.paths_a = paths_a if isinstance(paths_a, list) else list(paths_a)
        self.paths_b = paths_b if isinstance(paths_b, list) else list(paths_b)
        self.train = train
        self.seed = seed
        self.epoch = 0
        self.transform = build_transform(image_size, train)

    def set_epoch(self, epoch: int) -> None:
        self.epoch = epoch

    def __len__(self) -> int:
        return max(len(self.paths_a), len(self.paths_b))

    def __getitem__(self, index: int) -> tuple[torch.Tensor, torch.Tensor]:
        rng = np.random.default_rng([self.seed, self.epoch, index])
        path_a = self.paths_a[index % len(self.paths_a)]
        # Validation keeps fixed partners so its scores are comparable between evaluations.
        j = int(rng.integers(len(self.paths_b))) if self.train else index % len(self.paths_b)
        images = []
        for k, path in enumerate((path_a, self.paths_b[j])):
            if self.train:
                self.transform.set_random_seed(_item_seed(self.seed, self.epoch, index, k))
            images.append(self.transform(image=read_rgb(path))["image"])
        return images[0], images[1]


SPLITS = ("train", "val", "test")  # what split_of returns


def split_of(key: str, val_fraction: float, test_fraction: float = 0.0) -> str:
    """ "val" for about `val_fraction` of keys, "test" for about `test_fraction`, else "train". A key keeps its split
    forever (blake2b, not hash()), and its split does not depend on test_fraction unless it is test: the trainer
    and every export agree on val, and the trainer never trains on test."""
    if not (0.0 <= val_fraction <= 1.0 and 0.0 <= test_fraction <= 1.0 - val_fraction):
        raise ValueError(f"need 0 <= val_fraction <= 1 and 0 <= test_fraction <= 1 - val_fraction, got "
                         f"{val_fraction}, {test_fraction}")
    digest = hashlib.blake2b(key.encode("utf-8"), digest_size=8, person=b"hs-split").digest()
    u = int.from_bytes(digest, "big") / 2**64
    return "val" if u < val_fraction else "test" if u < val_fraction + test_fraction else "train"


def to_uint8_rgb(images: torch.Tensor) -> np.ndarray:
    """(B, 3, H, W) in [-1, 1] -> uint8 (B, H, W, 3) RGB."""
    x = images.detach().float().cpu().clamp(-1, 1).add(1).mul(127.5).round().to(torch.uint8)
    return x.permute(0, 2, 3, 1).numpy()


def write_sample_grid(
    path: PathLike,
    inputs: torch.Tensor,
    outputs: torch.Tensor,
    targets: torch.Tensor | None = None,
    max_rows: int = 8,
) -> np.ndarray:
    """Write a PNG with one row per sample: input | output | target (if given). Returns the RGB grid.

    Batches are (B, 3, H, W) in [-1, 1]; inputs may differ in size from outputs (each is resized to the
    outputs' size). Written atomically so a viewer never loads half a file.
    """
    columns = [inputs, outputs] + ([targets] if targets is not None else [])
    n = min(max_rows, *(len(c) for c in columns))
    if n == 0:
        raise ValueError("no images to write")
    h, w = outputs.shape[-2:]
    tiles = []
    for column in columns:
        imgs = to_uint8_rgb(column[:n])
        tiles.append(
            [
                cv2.resize(im, (w, h), interpolation=cv2.INTER_AREA) if im.shape[:2] != (h, w) else im
                for im in imgs
            ]
        )
    grid = np.concatenate([np.concatenate([col[r] for col in tiles], axis=1) for r in range(n)], axis=0)
    ok, png = cv2.imencode(".png", cv2.cvtColor(grid, cv2.COLOR_RGB2BGR))
    if not ok:
        raise OSError("PNG encoding failed")
    atomic_write_bytes(path, png.tobytes())
    return grid
