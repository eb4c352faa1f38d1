"""Subcommands beyond the daemon itself: one-shot extraction and dataset exports."""

from __future__ import annotations

import argparse
import logging
import sys
from collections.abc import Callable
from pathlib import Path

from humanstyle.daemon.config import ConfigError, Settings

log = logging.getLogger("humanstyle")
HANDLERS: dict[str, Callable[[Settings, argparse.Namespace], int]] = {}


def add_subcommands(sub: argparse._SubParsersAction, add_config: Callable) -> None:
    p = sub.add_parser("extract", help="run decode, detect, classify and pairing over one video in the foreground")
    p.add_argument("video", type=Path, help="the video file")
    p.add_argument("--domain", required=True, help="which domain the video belongs to (e.g. movie or game)")
    add_config(p)
    HANDLERS["extract"] = cmd_extract

    p = sub.add_parser("export", help="write the pairs (pix2pix), the patches (cyclegan) or the patches with their "
                       "people (coco) as a dataset")
    p.add_argument("--format", required=True, choices=("pix2pix", "cyclegan", "coco"),
                   help="pix2pix: A|B side by side in train/val/test (pairs marked bad left out); cyclegan: "
                   "trainA/trainB/testA/testB; coco: a COCO keypoints dataset (annotations/ + images/) of the kept "
                   "patches with box, mask, keypoints, view and domain")
    p.add_argument("out", type=Path, help="output folder")
    p.add_argument("--size", type=int, default=256, help="image side in pixels (default 256; pix2pix and cyclegan: "
                   "coco keeps the patches as they are)")
    add_config(p)
    HANDLERS["export"] = cmd_export

    from humanstyle.daemon.cli import model_commands as train_commands

    train_commands.add_subcommands(sub, add_config, HANDLERS)


def cmd_extract(settings: Settings, args: argparse.Namespace) -> int:
    from humanstyle.daemon.runtime.preflight import check_weights
    from humanstyle.stages.tools.extract import extract_video

    if args.domain not in settings.domains:
        raise ConfigError(f"--domain {args.domain!r}: expected one of {', '.join(settings.domains)}")
    if not args.video.is_file():
        print(f"humanstyle: {args.video}: no such file", file=sys.stderr)
        return 1
    check_weights(settings)
    summary = extract_video(settings, args.video, args.domain, progress=sys.stderr.isatty())
    print(summary.text())
    return 0 if summary.status in ("done", "partial", "duplicate") else 1


def cmd_export(settings: Settings, args: argparse.Namespace) -> int:
    import pandas as pd

    from humanstyle.stages.store.catalog import catalog_exists, catalog_target, open_catalog
    from humanstyle.stages.store.catalog_sql import redact
    from humanstyle.stages.store.storage import open_storage
    from humanstyle.stages.tools.export import export_cyclegan, export_pix2pix

    if not catalog_exists(settings):
        print(f"humanstyle: no catalog at {redact(str(catalog_target(settings)))}: nothing to export yet",
              file=sys.stderr)
        return 1
    catalog = open_catalog(settings, readonly=True, role="export")
    storage = open_storage(settings)  # the data folder, or local copies of what storage.url holds

    def local(names: list[str]) -> list[str]:
        return [str(p) for p in storage.fetch(names)]

    a, b = settings.domains
    fractions = (settings.train.val_fraction, settings.train.test_fraction)  # the trainer's splits
    if args.format == "coco":
        from humanstyle.stages.tools.coco import export_coco

        rows = list(catalog.kept_patches())
        # Local copies (image and mask) of every kept patch, laid out as in the storage.
        storage.fetch([n for r in rows for n in (r["path"], str(Path(r["path"]).with_suffix(".mask.png")))])
        counts = export_coco(rows, storage.local_root, args.out, fractions=fractions,
                             min_confidence=settings.classify.min_keypoint_confidence)
        total = sum(n for k, n in counts.items() if k != "unreadable")
        print(f"exported {total} patches as coco to {args.out} (train {counts['train']}, val {counts['val']}, "
              f"test {counts['test']}; unreadable {counts['unreadable']})")
        return 0
    if args.format == "pix2pix":
        columns = [f"{a}_path", f"{b}_path", "view", "similarity", f"{a}_id", f"{b}_id", "mirrored"]
        pairs = catalog.pairs()
        paths_a, paths_b = local([r["a_path"] for r in pairs]), local([r["b_path"] for r in pairs])
        rows = [dict(zip(columns, (pa, pb, r["view"], r["similarity"], r["a_patch_id"], r["b_patch_id"],
                                   r["mirrored"]), strict=True)) for r, pa, pb in zip(pairs, paths_a, paths_b,
                                                                                        strict=True)]
        result = export_pix2pix(pd.DataFrame(rows, columns=columns), args.out, domains=(a, b), fractions=fractions,
                                size=args.size)
    else:
        patches = [(domain, pid, path) for domain in (a, b) for pid, path, _view in catalog.patch_paths(domain)]
        paths = local([path for _d, _pid, path in patches])
        rows = [{"path": p, "domain": domain, "id": pid} for (domain, pid, _), p in zip(patches, paths, strict=True)]
        result = export_cyclegan(pd.DataFrame(rows, columns=["path", "domain", "id"]), args.out,
                                 domains=(a, b), fractions=fractions, size=args.size)
    catalog.close()
    written = int((result["status"] == "written").sum()) if len(result) else 0
    print(f"exported {written} of {len(result)} items as {args.format} to {args.out}")
    return 0
