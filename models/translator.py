"""What every translator of this project is, and how one is built from its name: the contract pix2pix and CycleGAN
share, so that the trainer, `translate` and `translate-video` never ask which model they hold.

A translator trains on batches of patches in [-1, 1], translates in the directions it names, scores itself on
held-out data (lower "score" is better), and saves and loads all of its state as plain tensors and numbers
(checkpoints load with `weights_only=True`).
"""

from __future__ import annotations

from typing import Any, Protocol, runtime_checkable

import torch

from humanstyle.models.cyclegan import CycleGAN, CycleGANSettings
from humanstyle.models.pix2pix import Pix2Pix, Pix2PixSettings


@runtime_checkable
class Translator(Protocol):
    paired: bool  # trains on aligned pairs (pix2pix) or on two unpaired sets (CycleGAN)
    directions: tuple[str, ...]  # what translate() accepts: "a2b", and "b2a" for a model of both directions
    step: int

    def train_step(self, a: torch.Tensor, b: torch.Tensor) -> dict[str, float]: ...

    def translate(self, x: torch.Tensor, direction: str) -> torch.Tensor: ...

    def validate(self, a: torch.Tensor, b: torch.Tensor) -> dict[str, float]: ...

    def state_dict(self) -> dict[str, Any]: ...

    def load_state_dict(self, state: dict[str, Any]) -> None: ...


# A checkpoint's "kind" -> the class and its settings (one entry per model: the only place that names them).
TRANSLATORS: dict[str, tuple[type, type]] = {
    "pix2pix": (Pix2Pix, Pix2PixSettings),
    "cyclegan": (CycleGAN, CycleGANSettings),
}


def build_translator(kind: str, settings: dict[str, Any], wrap=None) -> Translator:
    """The translator of `kind` with these settings (as a checkpoint stores them); ValueError for an unknown kind
    or a setting its model does not have."""
    if kind not in TRANSLATORS:
        raise ValueError(f"unknown translator {kind!r}: expected one of {', '.join(TRANSLATORS)}")
    model, settings_type = TRANSLATORS[kind]
    return model(settings_type(**settings), wrap)
