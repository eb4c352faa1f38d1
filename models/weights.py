"""Weights as values: turn a config choice ("DEFAULT" | a file path | "none") into a built model.

Decisions
- "DEFAULT" means torchvision's own weights enum (``MaskRCNN_ResNet50_FPN_Weights.DEFAULT`` and
  ``KeypointRCNN_ResNet50_FPN_Weights.DEFAULT``), stored where torchvision keeps it:
  ``torch.hub.get_dir()/checkpoints/<file name of the enum URL>``. Only this choice may download, only
  through torchvision's standard mechanism, and only when the caller passes ``allow_download=True``. With
  ``allow_download=False`` the cache is checked first and a missing file raises :class:`WeightsError` at
  once, before any network access, naming the file, where to put it, the URL and the ``weights =
  "/path/file.pth"`` alternative. A failed download (offline) is turned into the same error.
- A path is read with ``torch.load(weights_only=True, map_location="cpu")``; a plain state dict, a dict
  holding it under "model" or "state_dict", and a ``module.`` prefix (DistributedDataParallel) are accepted.
  It must fit the architecture exactly (strict loading); a mismatch names the missing, unexpected and
  mis-shaped keys.
- "none" is random initialisation and downloads nothing, the ImageNet backbone included
  (weights_backbone=None).
- :func:`check_weights_available` answers all of this without allocating the model: it builds the
  architecture on the ``meta`` device (about 0.06 s, no memory) and, for a path, memory-maps the file, so
  the daemon can refuse to start before it touches any video.

This module takes plain arguments and never imports the config loader, sockets or the catalog.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from urllib.parse import urlparse

import torch
from torch import nn
from torchvision.models.detection import (
    KeypointRCNN_ResNet50_FPN_Weights,
    MaskRCNN_ResNet50_FPN_Weights,
    keypointrcnn_resnet50_fpn,
    maskrcnn_resnet50_fpn,
)

DEFAULT = "DEFAULT"
NONE = "none"


class WeightsError(RuntimeError):
    """The weights choice cannot be honoured; the message says what to do about it."""


@dataclass(frozen=True)
class Architecture:
    """One supported network: how to build it and which torchvision enum "DEFAULT" names."""

    name: str
    builder: Callable[..., nn.Module]
    default_weights: Any  # a torchvision WeightsEnum member
    random_init_kwargs: Mapping[str, Any]  # head sizes matching the default weights, so files round-trip


ARCHITECTURES: dict[str, Architecture] = {
    "maskrcnn_resnet50_fpn": Architecture(
        "maskrcnn_resnet50_fpn",
        maskrcnn_resnet50_fpn,
        MaskRCNN_ResNet50_FPN_Weights.DEFAULT,
        {"num_classes": 91},
    ),
    "keypointrcnn_resnet50_fpn": Architecture(
        "keypointrcnn_resnet50_fpn",
        keypointrcnn_resnet50_fpn,
        KeypointRCNN_ResNet50_FPN_Weights.DEFAULT,
        {"num_classes": 2, "num_keypoints": 17},
    ),
}


def _architecture(arch: str) -> Architecture:
    try:
        return ARCHITECTURES[arch]
    except KeyError:
        raise WeightsError(
            f"unknown architecture {arch!r}; expected one of {sorted(ARCHITECTURES)}"
        ) from None


def choice_kind(choice: str) -> str:
    """Classify a weights choice as "default", "none" or "path" (case-insensitive keywords)."""
    text = str(choice).strip()
    if text.upper() == DEFAULT:
        return "default"
    if text.lower() == NONE:
        return "none"
    if not text:
        raise WeightsError('empty weights choice; use "DEFAULT", "none" or a path to a .pth file')
    return "path"


def default_checkpoint_path(arch: str) -> Path:
    """Where torchvision caches the "DEFAULT" weights of ``arch`` (honours TORCH_HOME / torch.hub.set_dir)."""
    url = _architecture(arch).default_weights.url
    return Path(torch.hub.get_dir()) / "checkpoints" / os.path.basename(urlparse(url).path)


def _missing_default_message(arch: str, reason: str) -> str:
    spec = _architecture(arch)
    path = default_checkpoint_path(arch)
    return (
        f"{reason}: weights {spec.default_weights} for {arch} are not in the torch hub cache.\n"
        f"  expected file: {path}\n"
        f"  fix: on a machine with internet, download {spec.default_weights.url}\n"
        f"       and copy it to {path.parent}/ (keep the file name; set TORCH_HOME to use another cache),\n"
        f'  or set weights = "/path/file.pth" in config.toml to load a state dict from anywhere.'
    )


def _meta_model(arch: str) -> nn.Module:
    spec = _architecture(arch)
    with torch.device("meta"):
        return spec.builder(weights=None, weights_backbone=None, **spec.random_init_kwargs)


def _unwrap_state_dict(obj: Any, path: Path) -> dict[str, torch.Tensor]:
    if isinstance(obj, Mapping):
        for key in ("model", "state_dict"):
            if isinstance(obj.get(key), Mapping):
                obj = obj[key]
                break
    if not isinstance(obj, Mapping) or not obj or not all(isinstance(v, torch.Tensor) for v in obj.values()):
        raise WeightsError(
            f"{path} does not hold a state dict (a mapping of names to tensors, possibly under 'model' or "
            f"'state_dict'); got {type(obj).__name__}"
        )
    state = dict(obj)
    if all(k.startswith("module.") for k in state):
        state = {k[len("module.") :]: v for k, v in state.items()}
    return state


def _read_state_dict(path: Path, mmap: bool = False) -> dict[str, torch.Tensor]:
    if not path.is_file():
        raise WeightsError(f"weights file {path} does not exist (weights = {str(path)!r} in config)")
    try:
        try:
            obj = torch.load(path, weights_only=True, map_location="cpu", mmap=mmap)
        except RuntimeError:
            if not mmap:
                raise
            # files in torch's legacy (pre-1.6) format cannot be memory-mapped; read them whole
            obj = torch.load(path, weights_only=True, map_location="cpu")
    except Exception as exc:  # noqa: BLE001 - any unreadable file becomes one clear error
        raise WeightsError(f"cannot read weights file {path}: {type(exc).__name__}: {exc}") from exc
    return _unwrap_state_dict(obj, path)


def _check_fits(
    arch: str, state: Mapping[str, torch.Tensor], expected: Mapping[str, torch.Tensor], source: str
):
    missing = sorted(set(expected) - set(state))
    unexpected = sorted(set(state) - set(expected))
    shapes = sorted(
        f"{k}: file {tuple(state[k].shape)} vs model {tuple(expected[k].shape)}"
        for k in set(state) & set(expected)
        if tuple(state[k].shape) != tuple(expected[k].shape)
    )
    if missing or unexpected or shapes:

        def few(items: list[str]) -> str:
            return ", ".join(items[:5]) + (f" (+{len(items) - 5} more)" if len(items) > 5 else "")

        parts = [
            f"{len(missing)} missing keys: {few(missing)}" if missing else "",
            f"{len(unexpected)} unexpected keys: {few(unexpected)}" if unexpected else "",
            f"{len(shapes)} shape mismatches: {few(shapes)}" if shapes else "",
        ]
        raise WeightsError(
            f"{source} does not fit architecture {arch}: "
            + "; ".join(p for p in parts if p)
            + ". Is it a state dict of torchvision's "
            + arch
            + "?"
        )


def check_weights_available(arch: str, choice: str, *, allow_download: bool = False) -> str:
    """Check that ``choice`` can be honoured for ``arch`` without building the model; return a log line.

    Raises WeightsError when it cannot. For "DEFAULT" not yet cached, ``allow_download=True`` passes (the
    download happens when the model is built); ``False`` raises, naming the expected file.
    """
    spec = _architecture(arch)
    kind = choice_kind(choice)
    if kind == "none":
        return f"{arch}: random initialisation (weights = 'none')"
    if kind == "default":
        path = default_checkpoint_path(arch)
        if path.is_file():
            return f"{arch}: {spec.default_weights} from {path}"
        if allow_download:
            return (
                f"{arch}: {spec.default_weights} will be downloaded from {spec.default_weights.url} to {path}"
            )
        raise WeightsError(_missing_default_message(arch, "downloads are disabled"))
    path = Path(choice).expanduser()
    state = _read_state_dict(path, mmap=True)
    _check_fits(arch, state, _meta_model(arch).state_dict(), str(path))
    return f"{arch}: state dict from {path}"


def build_model(arch: str, choice: str, *, allow_download: bool = False, **kwargs: Any) -> nn.Module:
    """Build ``arch`` with weights ``choice`` ("DEFAULT" | path | "none"), on the CPU, in eval mode.

    ``kwargs`` go to the torchvision builder (box_score_thresh, min_size, box_detections_per_img, ...).
    """
    spec = _architecture(arch)
    kind = choice_kind(choice)
    if kind == "default":
        check_weights_available(arch, choice, allow_download=allow_download)
        try:
            model = spec.builder(weights=spec.default_weights, **kwargs)
        except (OSError, RuntimeError) as exc:  # URLError is an OSError; hash mismatch is a RuntimeError
            raise WeightsError(_missing_default_message(arch, f"download failed ({exc})")) from exc
    else:
        model = spec.builder(weights=None, weights_backbone=None, **{**spec.random_init_kwargs, **kwargs})
        if kind == "path":
            path = Path(choice).expanduser()
            state = _read_state_dict(path)
            _check_fits(arch, state, model.state_dict(), str(path))
            model.load_state_dict(state, strict=True)
    return model.eval()


def download_default_weights(arch: str, *, progress: bool = True) -> Path:
    """Fetch the "DEFAULT" weights of ``arch`` into the hub cache now (torchvision's hash-checked download).

    For a daemon's start-up, so a missing file is fetched once in the foreground; raises WeightsError offline.
    """
    spec = _architecture(arch)
    try:
        spec.default_weights.get_state_dict(progress=progress, check_hash=True)
    except (OSError, RuntimeError) as exc:  # URLError is an OSError; a hash mismatch a RuntimeError
        raise WeightsError(_missing_default_message(arch, f"download failed ({exc})")) from exc
    return default_checkpoint_path(arch)


RANDOM_INIT_SEED = 0


def seed_random_init(weights: str) -> None:
    """Seed torch before building a model with weights "none", so every process builds the SAME random model.

    torch seeds each process differently, so without this a restarted (or a second) detector or classifier is a
    different random network: the video redone after a crash gets other boxes, views and keypoints than the
    attempt it replaces, and "redone work equals undisturbed work" no longer holds for tests and benchmarks.
    Real weights are unaffected (nothing random is drawn for them)."""
    if choice_kind(weights) == "none":
        torch.manual_seed(RANDOM_INIT_SEED)
