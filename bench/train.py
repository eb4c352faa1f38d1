"""Training throughput (images/second) of pix2pix and CycleGAN, in the shapes the first users trained them.

    python bench/train.py --threads 2              # CPU, and CUDA too when present
    python bench/train.py --device cuda --steps 20

A step is one full train_step (D and G updates); for CycleGAN one image means one image of each domain. Warm-up
steps are excluded. Prints a table and writes bench/results/train_<device>.json per device.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import sys
import time
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from humanstyle.models.cyclegan import CycleGAN, CycleGANSettings  # noqa: E402
from humanstyle.models.pix2pix import Pix2Pix, Pix2PixSettings  # noqa: E402


@dataclass(frozen=True)
class Config:
    name: str
    model: str  # "pix2pix" or "cyclegan"
    size: int
    batch: int


CONFIGS = (
    Config("pix2pix_64_b32", "pix2pix", 64, 32),  # pix2pix as first trained: 64 px patches, batch 32
    Config("pix2pix_256_b1", "pix2pix", 256, 1),  # the paper's setting
    Config("cyclegan_200_b1", "cyclegan", 200, 1),  # CycleGAN as first trained: 200 px, batch 1
    Config("cyclegan_256_b1", "cyclegan", 256, 1),  # the paper's setting
)


def build(cfg: Config, device: str, amp: bool) -> Pix2Pix | CycleGAN:
    if cfg.model == "pix2pix":
        return Pix2Pix(Pix2PixSettings(image_size=cfg.size, device=device, amp=amp))
    return CycleGAN(CycleGANSettings(image_size=cfg.size, device=device, amp=amp))


def measure(cfg: Config, device: str, steps: int, warmup: int, amp: bool) -> dict[str, float | int | str]:
    torch.manual_seed(0)
    model = build(cfg, device, amp)
    a = (torch.rand(cfg.batch, 3, cfg.size, cfg.size) * 2 - 1).to(device)
    b = (torch.rand(cfg.batch, 3, cfg.size, cfg.size) * 2 - 1).to(device)
    for _ in range(warmup):
        model.train_step(a, b)
    if device.startswith("cuda"):
        torch.cuda.synchronize()
    times = []
    for _ in range(steps):
        start = time.perf_counter()
        model.train_step(a, b)  # returns Python floats, so the step has finished on the device
        times.append(time.perf_counter() - start)
    total = sum(times)
    return {
        "config": cfg.name,
        "model": cfg.model,
        "image_size": cfg.size,
        "batch": cfg.batch,
        "steps": steps,
        "seconds_per_step": round(total / steps, 4),
        "fastest_step_s": round(min(times), 4),
        "images_per_second": round(cfg.batch * steps / total, 3),
    }


def device_name(device: str) -> str:
    if device.startswith("cuda"):
        return torch.cuda.get_device_name(torch.device(device))
    return platform.processor() or platform.machine()


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--threads", type=int, default=2, help="torch intra-op threads (CPU)")
    parser.add_argument(
        "--device", default="auto", help='"cpu", "cuda", "cuda:N" or "auto" (CPU + CUDA if any)'
    )
    parser.add_argument("--steps", type=int, default=3, help="timed steps per config")
    parser.add_argument("--warmup", type=int, default=1, help="untimed steps per config")
    parser.add_argument(
        "--configs",
        default="all",
        help="comma-separated names, or all: " + ", ".join(c.name for c in CONFIGS),
    )
    parser.add_argument("--no-amp", action="store_true", help="float32 on CUDA as well")
    parser.add_argument("--out-dir", type=Path, default=Path(__file__).parent / "results")
    args = parser.parse_args(argv)

    torch.set_num_threads(args.threads)
    devices = [args.device] if args.device != "auto" else ["cpu"] + (["cuda"] * torch.cuda.is_available())
    configs = [c for c in CONFIGS if args.configs == "all" or c.name in args.configs.split(",")]
    if not configs:
        parser.error(f"no config matches {args.configs!r}")
    for device in devices:
        amp = not args.no_amp and device.startswith("cuda")
        load_start = round(os.getloadavg()[0], 2)  # other work on the machine skews CPU numbers
        rows = [measure(cfg, device, args.steps, args.warmup, amp) for cfg in configs]
        print(f"\n{device} ({device_name(device)}), {args.threads} threads, amp={amp}")
        print(f"{'config':<18}{'images/s':>10}{'s/step':>10}")
        for row in rows:
            print(f"{row['config']:<18}{row['images_per_second']:>10.2f}{row['seconds_per_step']:>10.3f}")
        load_end = round(os.getloadavg()[0], 2)
        report = {
            "device": device,
            "device_name": device_name(device),
            "threads": args.threads,
            "cpu_count": os.cpu_count(),
            "load_average_1m_at_start": load_start,
            "load_average_1m_at_end": load_end,
            "amp": amp,
            "torch": torch.__version__,
            "warmup_steps": args.warmup,
            "when": datetime.now(UTC).isoformat(timespec="seconds"),
            "results": rows,
        }
        args.out_dir.mkdir(parents=True, exist_ok=True)
        out = args.out_dir / f"train_{device.split(':')[0]}.json"
        out.write_text(json.dumps(report, indent=2) + "\n")
        print(f"wrote {out}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
