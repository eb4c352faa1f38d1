"""Apply a trained generator to image files (the `humanstyle translate` command)."""

from __future__ import annotations

from pathlib import Path

import cv2
import torch

from humanstyle.models.checkpoint import load_checkpoint
from humanstyle.models.data import build_transform, read_rgb, to_uint8_rgb
from humanstyle.models.translator import TRANSLATORS, build_translator


class TranslateError(ValueError):
    pass


def load_generator(checkpoint: Path, model: str, direction: str, domains: tuple[str, str]):
    """(callable image batch -> image batch, image size) for `direction` ("movie2game" style)."""
    a, b = domains
    if direction not in (f"{a}2{b}", f"{b}2{a}"):
        raise TranslateError(f"--direction {direction!r}: expected {a}2{b} or {b}2{a}")
    try:
        state = load_checkpoint(checkpoint)
    except Exception as exc:  # a missing, truncated or foreign file: say which, whatever torch raised
        raise TranslateError(f"cannot read checkpoint {checkpoint}: {exc}") from None
    if "models" in state:  # latest.pt holds every model
        name = "cyclegan" if model == "cyclegan" else f"pix2pix-{direction}"
        state = state["models"].get(name)
        if state is None:
            raise TranslateError(f"{checkpoint} has no model {name!r}")
    elif "state" in state:  # best-<model>.pt
        state = state["state"]
    kind = state.get("kind") if isinstance(state, dict) else None
    if kind not in TRANSLATORS:
        raise TranslateError(f"{checkpoint} is not a humanstyle training checkpoint")
    if kind != model:
        raise TranslateError(f"{checkpoint} holds a {kind} model; use --model {kind}")
    try:
        settings = {**state["settings"], "device": "cuda" if torch.cuda.is_available() else "cpu"}
        net = build_translator(kind, settings)
        net.load_state_dict(state)
    except (KeyError, TypeError, ValueError, RuntimeError) as exc:  # weights of another size or architecture
        first = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        raise TranslateError(f"{checkpoint}: its weights do not fit the {kind} model its settings describe "
                             f"({first})") from None
    way = "a2b" if net.paired or direction == f"{a}2{b}" else "b2a"  # a pix2pix model is its own one direction
    return (lambda x: net.translate(x, way)), net.settings.image_size


def translate_files(checkpoint: Path, model: str, direction: str, domains: tuple[str, str], inputs: list[Path],
                    out_dir: Path, size: int | None = None) -> list[Path]:
    """Each input translated at the model's training size, then written at the input's own size (or `size` x
    `size`): a 256-px patch comes back 256 px, not 64."""
    generator, model_size = load_generator(checkpoint, model, direction, domains)
    transform = build_transform(model_size, train=False)
    out_dir.mkdir(parents=True, exist_ok=True)
    written = []
    for path in inputs:
        try:
            image = read_rgb(path)
        except (OSError, ValueError) as exc:
            raise TranslateError(f"cannot read image {path}: {exc}") from None
        with torch.no_grad():
            output = generator(transform(image=image)["image"][None])
        target = out_dir / f"{Path(path).stem}-{direction}.png"
        result = to_uint8_rgb(output)[0]
        width, height = (size, size) if size else (image.shape[1], image.shape[0])
        if (width, height) != (result.shape[1], result.shape[0]):
            shrink = width * height < result.shape[0] * result.shape[1]
            result = cv2.resize(result, (width, height), interpolation=cv2.INTER_AREA if shrink else cv2.INTER_CUBIC)
        if not cv2.imwrite(str(target), cv2.cvtColor(result, cv2.COLOR_RGB2BGR)):
            raise TranslateError(f"cannot write {target}")
        written.append(target)
    return written
