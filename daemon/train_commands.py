"""`humanstyle train` (foreground training) and `humanstyle translate` (apply a trained generator to images)."""

from __future__ import annotations

import argparse
import sys
from collections.abc import Callable
from pathlib import Path

from humanstyle.daemon.config import Settings


def add_subcommands(sub: argparse._SubParsersAction, add_config: Callable, handlers: dict) -> None:
    p = sub.add_parser("train", help="train pix2pix and CycleGAN on the catalog's data in the foreground")
    p.add_argument("--steps", type=int, default=None, help="steps per model, then checkpoint and exit "
                   "(default: until Ctrl-C)")
    add_config(p)
    handlers["train"] = cmd_train

    p = sub.add_parser("translate", help="translate images with a trained generator")
    p.add_argument("--checkpoint", required=True, type=Path, help="train/checkpoints/latest.pt or best-<model>.pt")
    p.add_argument("--direction", required=True, help="e.g. movie2game or game2movie")
    p.add_argument("--model", choices=("pix2pix", "cyclegan"), default="pix2pix",
                   help="which generator to use from a latest.pt checkpoint (default pix2pix)")
    p.add_argument("inputs", nargs="+", type=Path, metavar="INPUT", help="image files")
    p.add_argument("--out", required=True, type=Path, help="output folder")
    add_config(p)
    handlers["translate"] = cmd_translate


def cmd_train(settings: Settings, args: argparse.Namespace) -> int:
    from tqdm import tqdm

    from humanstyle.stages.catalog import Catalog
    from humanstyle.stages.train import Trainer, training_device

    db = settings.paths.catalog
    if not db.exists():
        print(f"humanstyle: no catalog at {db}: ingest some footage first", file=sys.stderr)
        return 1
    trainer = Trainer(settings, training_device(settings.train.device))
    trainer.resume()
    trainer.refresh(Catalog(db, readonly=True))
    ready = trainer.ready()
    if not ready:
        d, t = trainer.data, settings.train
        print(f"humanstyle: not enough data to train: {len(d.pairs['train'])} training pairs (pix2pix needs "
              f"{t.min_pairs}), {len(d.side_a['train'])}/{len(d.side_b['train'])} patches per domain (CycleGAN "
              f"needs {t.min_patches} each)", file=sys.stderr)
        return 1
    bar = tqdm(total=args.steps, unit="step", disable=not sys.stderr.isatty())
    done = 0
    try:
        while args.steps is None or done < args.steps:
            for name in ready:
                terms = trainer.train_step(name)
                bar.set_postfix_str(f"{name} " + " ".join(f"{k}={v:.3f}" for k, v in list(terms.items())[:3]))
            done += 1
            bar.update(1)
    except KeyboardInterrupt:
        pass
    finally:
        bar.close()
        path = trainer.save()
        trainer.close()
    print(f"trained {', '.join(ready)} for {done} steps each; checkpoint: {path}")
    return 0


def cmd_translate(settings: Settings, args: argparse.Namespace) -> int:
    from humanstyle.stages.translate import TranslateError, translate_files

    try:
        written = translate_files(args.checkpoint, args.model, args.direction, settings.domains, args.inputs,
                                  args.out)
    except TranslateError as exc:
        print(f"humanstyle: {exc}", file=sys.stderr)
        return 1
    for path in written:
        print(path)
    return 0
