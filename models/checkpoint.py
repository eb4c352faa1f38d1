"""Atomic checkpoint files that load with `weights_only=True`, and the process RNG state that goes in them.

`weights_only` unpickling accepts tensors, dicts, lists, tuples, str, int, float, bool and None, nothing
else: so numpy arrays and Python objects are converted here (numpy's MT19937 key becomes an int64 tensor) and
every model's `state_dict()` sticks to those types. A checkpoint written by `save_checkpoint` is never seen
half-written: it goes to a temporary file in the same directory, is fsync'd, then renamed over the old one.
"""

from __future__ import annotations

import os
import random
from typing import Any

import numpy as np
import torch

from humanstyle.models.files import atomic_write

# Version of the layout that the model classes' state_dict() return; bump when it changes.
STATE_VERSION = 1


def save_checkpoint(path: str | os.PathLike[str], state: dict[str, Any]) -> None:
    """Write `state` to `path` atomically (temp file in the same dir, fsync, os.replace, fsync of the dir)."""
    atomic_write(path, lambda fh: torch.save(state, fh))


def load_checkpoint(path: str | os.PathLike[str], map_location: str | torch.device = "cpu") -> dict[str, Any]:
    """Read a checkpoint with `weights_only=True` (no arbitrary code runs); tensors land on `map_location`."""
    state = torch.load(path, map_location=map_location, weights_only=True)
    if not isinstance(state, dict):
        raise ValueError(f"{path}: expected a dict checkpoint, got {type(state).__name__}")
    return state


def capture_rng_state() -> dict[str, Any]:
    """The torch (CPU and every CUDA device), numpy-global and Python `random` states, as weights_only
    types."""
    kind, keys, pos, has_gauss, cached = np.random.get_state(legacy=True)  # type: ignore[misc]
    version, internal, gauss_next = random.getstate()
    return {
        "torch": torch.get_rng_state(),
        "cuda": torch.cuda.get_rng_state_all() if torch.cuda.is_available() else [],
        "numpy": {
            "kind": str(kind),
            "keys": torch.from_numpy(np.asarray(keys, dtype=np.int64)),
            "pos": int(pos),
            "has_gauss": int(has_gauss),
            "cached_gaussian": float(cached),
        },
        "python": {"version": int(version), "internal": list(internal), "gauss_next": gauss_next},
    }


def restore_rng_state(state: dict[str, Any]) -> None:
    """Put back what `capture_rng_state` captured. CUDA states are restored only if the device count
    matches."""
    torch.set_rng_state(state["torch"].cpu())
    cuda = state.get("cuda") or []
    if cuda and torch.cuda.is_available() and len(cuda) == torch.cuda.device_count():
        torch.cuda.set_rng_state_all([s.cpu() for s in cuda])
    npy = state["numpy"]
    np.random.set_state(
        (
            npy["kind"],
            npy["keys"].cpu().numpy().astype(np.uint32),
            npy["pos"],
            npy["has_gauss"],
            npy["cached_gaussian"],
        )
    )
    py = state["python"]
    random.setstate((py["version"], tuple(py["internal"]), py["gauss_next"]))


def check_architecture(kind: str, mine: dict[str, Any], state: dict[str, Any], keys: tuple[str, ...]) -> None:
    """Raise a readable error when a checkpoint was written by another kind of model or another
    architecture."""
    if state.get("kind") != kind:
        raise ValueError(f"checkpoint holds a {state.get('kind')!r} model, not {kind!r}")
    if state.get("version") != STATE_VERSION:
        raise ValueError(f"checkpoint state version {state.get('version')!r}, expected {STATE_VERSION}")
    theirs = state["settings"]
    diff = {k: (theirs.get(k), mine[k]) for k in keys if theirs.get(k) != mine[k]}
    if diff:
        raise ValueError(f"checkpoint architecture differs (checkpoint, model): {diff}")
