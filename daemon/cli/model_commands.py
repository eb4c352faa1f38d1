"""`humanstyle train` (foreground training) and `humanstyle translate` (apply a trained generator to images)."""

from __future__ import annotations

import argparse
import sys
from collections.abc import Callable
from pathlib import Path

from humanstyle.daemon.config import Settings
from humanstyle.stages.translate.video_settings import VIDEO_DEFAULTS


def add_subcommands(sub: argparse._SubParsersAction, add_config: Callable, handlers: dict) -> None:
    p = sub.add_parser("train", help="train pix2pix and CycleGAN on the catalog's data in the foreground")
    p.add_argument("--steps", type=int, default=None, help="steps per model, then checkpoint and exit "
                   "(default: until Ctrl-C)")
    add_config(p)
    handlers["train"] = cmd_train

    p = sub.add_parser("translate", help="translate images with a trained generator")
    p.add_argument("--checkpoint", default=None, help="a checkpoint file or URL (s3://...): "
                   "train/checkpoints/latest.pt or best-<model>.pt; default: latest.pt in the configured storage")
    p.add_argument("--direction", required=True, help="e.g. movie2game or game2movie")
    p.add_argument("--model", choices=("pix2pix", "cyclegan"), default="pix2pix",
                   help="which generator to use from a latest.pt checkpoint (default pix2pix)")
    p.add_argument("inputs", nargs="+", type=Path, metavar="INPUT", help="image files")
    p.add_argument("--out", required=True, type=Path, help="output folder")
    p.add_argument("--size", type=int, default=None, help="output side in pixels (default: each input's own width "
                   "and height; the generator itself works at its training size, train.*_image_size)")
    add_config(p)
    handlers["translate"] = cmd_translate

    p = sub.add_parser("translate-video", help="translate the people in a video with a trained generator")
    p.add_argument("input", type=Path, metavar="IN", help="a video file")
    p.add_argument("output", type=Path, metavar="OUT", help="the video to write (.mp4, .mkv, .mov, .avi, .webm); "
                   "written whole under a temporary name, then renamed")
    p.add_argument("--direction", required=True, help="e.g. movie2game or game2movie")
    p.add_argument("--model", choices=("pix2pix", "cyclegan"), default="pix2pix",
                   help="which generator to use from a latest.pt checkpoint (default pix2pix)")
    p.add_argument("--checkpoint", default=None, help="as for translate (default: latest.pt in the configured "
                   "storage)")
    p.add_argument("--smoothing", type=float, default=VIDEO_DEFAULTS.smoothing,
                   help="weight of the previous output frame, moved by optical flow, inside the people "
                   f"(0 = off; default {VIDEO_DEFAULTS.smoothing})")
    p.add_argument("--codec", default=None, help="video codec (default: libx264, mpeg4 for .avi, libvpx-vp9 for "
                   ".webm); ffv1 in a .mkv is lossless")
    p.add_argument("--crf", type=int, default=VIDEO_DEFAULTS.crf, help="libx264/VP9 quality: lower is better "
                   f"(default {VIDEO_DEFAULTS.crf})")
    p.add_argument("--seconds", type=float, default=None, help="only the first SECONDS of IN (a quick look)")
    p.add_argument("--no-progress", action="store_true", help="no progress bar")
    add_config(p)
    handlers["translate-video"] = cmd_translate_video


def cmd_train(settings: Settings, args: argparse.Namespace) -> int:
    """Train in the foreground: one process, or every process of a torchrun launch (each runs this; process 0 makes
    the plans, prints and writes, see stages/train/distributed.py)."""
    from humanstyle.stages.train.distributed import init_group

    group = init_group(settings.train.device, settings.train.ddp_timeout_s)
    try:
        return _train(settings, args, group)  # its trainer, and with it every net holding the group, is gone
    finally:
        group.close()


def _train(settings: Settings, args: argparse.Namespace, group) -> int:
    import torch

    from humanstyle.stages.train.distributed import Plan
    from humanstyle.stages.train.lock import TrainerLock
    from humanstyle.stages.train.rank_loop import RankLoop
    from humanstyle.stages.train.trainer import Trainer

    if group.device == "cpu" and group.parallel:
        torch.set_num_threads(settings.train.threads)
    trainer = Trainer(settings, group.device, group=group)
    trainer.resume()
    loop = RankLoop(trainer, settings)
    if not group.is_main:
        loop.follow()
        return 0
    lock = TrainerLock(settings.paths.data_dir / "train", "humanstyle train")
    if not lock.acquire():
        loop.lead(Plan(stop=True))
        print(f"humanstyle: another trainer is training on this data folder ({lock.holder() or lock.path}); stop "
              "it first (a daemon trains unless train.enabled = false)", file=sys.stderr)
        return 1
    try:
        return _lead(settings, args, trainer, loop, group)
    finally:
        lock.release()


def _lead(settings: Settings, args: argparse.Namespace, trainer, loop, group) -> int:
    """Process 0's part of `humanstyle train`: make the plans every process follows, print, checkpoint."""
    import signal
    import time

    from tqdm import tqdm

    from humanstyle.stages.store.catalog import catalog_exists
    from humanstyle.stages.train.distributed import Plan

    # SIGINT / SIGTERM (Ctrl-C, or torchrun stopping its workers) end the run after the step in progress, with a
    # checkpoint; every process gets the signal, process 0 alone acts on it so that all stop at the same plan.
    stop = []
    for sig in (signal.SIGINT, signal.SIGTERM):
        signal.signal(sig, lambda *_: stop.append(True))
    if not catalog_exists(settings):
        loop.lead(Plan(stop=True))
        print(f"humanstyle: no catalog at {trainer_catalog(settings)}: ingest some footage first", file=sys.stderr)
        return 1
    watermark = loop.watermark()
    if watermark is not None:
        loop.lead(Plan(watermark=watermark))
    ready = trainer.ready()
    if not ready:
        loop.lead(Plan(stop=True))
        d, t = trainer.data, settings.train
        print(f"humanstyle: not enough data to train: {len(d.pairs['train'])} training pairs (pix2pix needs "
              f"{t.min_pairs}), {len(d.side_a['train'])}/{len(d.side_b['train'])} patches per domain (CycleGAN "
              f"needs {t.min_patches} each)", file=sys.stderr)
        return 1
    bar = tqdm(total=args.steps, unit="step", disable=not sys.stderr.isatty())
    done, last_refresh = 0, time.monotonic()
    try:
        while (args.steps is None or done < args.steps) and not stop:
            reload = time.monotonic() - last_refresh > settings.train.refresh_every_s
            if reload:
                last_refresh = time.monotonic()
            loop.turn(reload)
            done += 1
            bar.update(1)
    finally:
        bar.close()
        loop.lead(Plan(stop=True))
        trainer.save()
        trainer.close()
        loop.close()
    where = trainer.storage.uri(trainer.LATEST)
    print(f"trained {', '.join(ready)} for {done} steps each on {group.world} process(es); checkpoint: {where}")
    return 0


def trainer_catalog(settings: Settings) -> str:
    from humanstyle.stages.store.catalog import catalog_target
    from humanstyle.stages.store.catalog_sql import redact

    return redact(str(catalog_target(settings)))


def cmd_translate(settings: Settings, args: argparse.Namespace) -> int:
    from humanstyle.stages.store.storage import StorageError
    from humanstyle.stages.translate.images import TranslateError, translate_files

    try:
        checkpoint = resolve_checkpoint(settings, args.checkpoint)
        if args.size is not None and not 8 <= args.size <= 8192:
            raise TranslateError(f"--size {args.size}: expected 8 to 8192 pixels")
        written = translate_files(checkpoint, args.model, args.direction, settings.domains, args.inputs, args.out,
                                  args.size)
    except (TranslateError, StorageError) as exc:
        print(f"humanstyle: {exc}", file=sys.stderr)
        return 1
    for path in written:
        print(path)
    return 0


def cmd_translate_video(settings: Settings, args: argparse.Namespace) -> int:
    """Exit 0 with OUT written, or 2 with one line saying why and no OUT (nor a partial one) left behind."""
    import os

    from humanstyle.models.detection import set_torch_threads
    from humanstyle.stages.settings import StageFatal
    from humanstyle.stages.store.storage import StorageError
    from humanstyle.stages.translate.images import TranslateError, load_generator
    from humanstyle.stages.translate.video import build_tracking_detector, translate_video
    from humanstyle.stages.translate.video_settings import for_detector

    set_torch_threads(max(1, os.cpu_count() or 1))  # one process: every core is its own
    try:
        if not 0 <= args.smoothing < 1:
            raise TranslateError(f"--smoothing {args.smoothing}: expected 0 <= value < 1")
        if args.seconds is not None and not args.seconds > 0:
            raise TranslateError(f"--seconds {args.seconds}: expected a positive number")
        if not args.input.is_file():
            raise TranslateError(f"{args.input}: no such file")
        checkpoint = resolve_checkpoint(settings, args.checkpoint)
        generator, image_size = load_generator(checkpoint, args.model, args.direction, settings.domains)
        video = for_detector(settings.detect, smoothing=args.smoothing, codec=args.codec, crf=args.crf)
        detector = build_tracking_detector(settings.detect, video)
        report = translate_video(args.input, args.output, generator, image_size, detector, video,
                                 progress=not args.no_progress, max_seconds=args.seconds)
    except (TranslateError, StorageError, StageFatal) as exc:
        print(f"humanstyle: {exc}", file=sys.stderr)
        return 2
    broken = f", {report.broken_packets} unreadable packets skipped" if report.broken_packets else ""
    print(f"{args.output}: {report.frames} frames, {report.persons} people in {report.tracks} tracks, "
          f"{report.fps:.2f} frames/s{broken}")
    return 0


def resolve_checkpoint(settings: Settings, given: str | None) -> Path:
    """A local file for --checkpoint: the path given; a URL (s3://...) downloaded into the storage cache; nothing
    given, latest.pt of the configured storage (the data folder, or storage.url)."""
    import hashlib

    from humanstyle.models.files import atomic_write_bytes
    from humanstyle.stages.store.storage import open_storage
    from humanstyle.stages.train.trainer import Trainer

    storage = open_storage(settings)
    if given is None:
        return storage.fetch_fresh(Trainer.LATEST) if storage.exists(Trainer.LATEST) else storage.local_path(
            Trainer.LATEST)
    if "://" not in given:
        return Path(given)
    try:
        data = storage.read_url(given)
    except (OSError, ValueError) as exc:
        from humanstyle.stages.translate.images import TranslateError

        raise TranslateError(f"cannot read checkpoint {given}: {exc}") from None
    local = storage.cache_dir / "checkpoints" / (hashlib.sha256(given.encode()).hexdigest()[:16] + ".pt")
    atomic_write_bytes(local, data, durable=False)
    return local
