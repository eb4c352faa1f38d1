"""What the trainer tells the outside while it runs, as files under `data_dir/train/` (no torch needed to read them):

- `state.json` (rewritten atomically): per model its step, whether it has enough data (and if not, what it waits
  for), dataset sizes, latest losses and speed, latest and best validation score; the latest checkpoint.
- `validation.jsonl` (one line appended per validation pass): model, step, score, time — the validation curve —
  and the pass's quality metrics (pix2pix: l1, psnr, ssim, brightness_gap; CycleGAN: cycle_l1, brightness_gap).
- `samples/<model>/step-N.png`: the sample grids (written by the trainer); `latest_sample` finds the newest.

The web page reads these; the trainer is their only writer.
"""

from __future__ import annotations

import json
import time
from dataclasses import dataclass
from pathlib import Path

from humanstyle.models.files import atomic_write_bytes

STATE = "state.json"
VALIDATION = "validation.jsonl"
QUALITY_METRICS = ("l1", "psnr", "ssim", "cycle_l1", "brightness_gap")


def write_state(root: Path, state: dict) -> None:
    atomic_write_bytes(root / STATE, json.dumps({**state, "updated": time.time()}, indent=1).encode(),
                       durable=False)


def read_state(root: Path) -> dict:
    """The trainer's last state, or {} when it has not written one (or it cannot be read)."""
    try:
        data = json.loads((root / STATE).read_text())
    except (OSError, ValueError):
        return {}
    return data if isinstance(data, dict) else {}


def append_validation(root: Path, model: str, step: int, score: float, metrics: dict[str, float] | None = None
                      ) -> None:
    """One validation pass: its score (lower is better) and its quality metrics (QUALITY_METRICS)."""
    root.mkdir(parents=True, exist_ok=True)
    line = json.dumps({"model": model, "step": int(step), "score": float(score), "time": time.time(),
                       **{k: round(float(v), 6) for k, v in (metrics or {}).items()}})
    with open(root / VALIDATION, "a") as fh:
        fh.write(line + "\n")


@dataclass(frozen=True)
class Validation:
    """What validation.jsonl holds: per model its curve, (step, score) in step order, and the quality metrics of
    its latest pass (the QUALITY_METRICS present in that line)."""

    curves: dict[str, list[tuple[int, float]]]
    quality: dict[str, dict[str, float]]


def read_validation(root: Path, limit: int = 2000) -> Validation:
    """validation.jsonl, read once: at most the last `limit` points of each curve. A line cut short by a crash is
    skipped. A model that restarted from an older checkpoint may repeat steps: the later score counts."""
    points: dict[str, dict[int, float]] = {}
    quality: dict[str, dict[str, float]] = {}
    try:
        text = (root / VALIDATION).read_text()
    except OSError:
        return Validation({}, {})
    for line in text.splitlines():
        try:
            row = json.loads(line)
            model, step, score = str(row["model"]), int(row["step"]), float(row["score"])
        except (ValueError, KeyError, TypeError):
            continue
        points.setdefault(model, {})[step] = score
        try:
            quality[model] = {k: float(row[k]) for k in QUALITY_METRICS if k in row}
        except (ValueError, TypeError):
            continue
    return Validation({model: sorted(p.items())[-limit:] for model, p in points.items()}, quality)


def latest_sample(root: Path, model: str) -> Path | None:
    """The newest sample grid of `model` (names carry the zero-padded step, so the largest name is the newest)."""
    folder = root / "samples" / model
    try:
        names = [p.name for p in folder.iterdir() if p.name.startswith("step-") and p.suffix == ".png"]
    except OSError:
        return None
    return folder / max(names) if names else None
