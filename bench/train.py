"""Training throughput (images/second) of pix2pix and CycleGAN, in the shapes the first users trained them.

    python bench/train.py --threads 2              # CPU, and CUDA too when present
    python bench/train.py --device cuda --steps 20
    python bench/train.py --nproc 1,2              # data-parallel: 1 and 2 processes (gloo on CPU, NCCL on GPUs)

A step is one full train_step (D and G updates); for CycleGAN one image means one image of each domain. Warm-up
steps are excluded. Prints a table and writes bench/results/train_<device>.json per device.

--nproc N,M: the same step in N (then M) processes that train one model together (models.parallel: DDP, gradients
averaged), each with the config's batch, as the trainer runs them (`train.gpus`, torchrun): images/s counts every
process's images. On the CPU the cores are shared out (threads per process = cores / processes unless --threads
is given per process), so the comparison is at equal cores; on CUDA one GPU per process. Writes
bench/results/train_ddp_<device>.json.
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
    batch: int  # per process in --nproc mode
    ngf: int = 64
    blocks: int = 9


CONFIGS = (
    Config("pix2pix_64_b32", "pix2pix", 64, 32),  # pix2pix as first trained: 64 px patches, batch 32
    Config("pix2pix_256_b1", "pix2pix", 256, 1),  # the paper's setting
    Config("cyclegan_200_b1", "cyclegan", 200, 1),  # CycleGAN as first trained: 200 px, batch 1
    Config("cyclegan_256_b1", "cyclegan", 256, 1),  # the paper's setting
)
# Data-parallel defaults on a CPU: the daemon's pix2pix at a batch of 8 per process, and the README's CPU CycleGAN
# (width 32, 6 blocks) at 128 px.
DDP_CPU_CONFIGS = (
    Config("pix2pix_64_b8", "pix2pix", 64, 8),
    Config("cyclegan_128_b1_ngf32", "cyclegan", 128, 1, ngf=32, blocks=6),
)


def build(cfg: Config, device: str, amp: bool, wrap=None) -> Pix2Pix | CycleGAN:
    if cfg.model == "pix2pix":
        return Pix2Pix(Pix2PixSettings(image_size=cfg.size, ngf=cfg.ngf, device=device, amp=amp), wrap)
    return CycleGAN(CycleGANSettings(image_size=cfg.size, ngf=cfg.ngf, n_blocks=cfg.blocks, device=device, amp=amp),
                    wrap)


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


def ddp_worker(rank: int, world: int, port: int, cfg: Config, device: str, steps: int, warmup: int, amp: bool,
               threads: int, out: str) -> None:
    """One of `world` processes training `cfg` together; process 0 writes the timings to `out`."""
    import torch.distributed as dist

    from humanstyle.models.parallel import data_parallel

    torch.set_num_threads(threads)
    if device.startswith("cuda"):
        device = f"cuda:{rank}"
        torch.cuda.set_device(rank)
    if world > 1:
        os.environ.update(MASTER_ADDR="127.0.0.1", MASTER_PORT=str(port))
        dist.init_process_group("nccl" if device.startswith("cuda") else "gloo", rank=rank, world_size=world)
    model = build(cfg, device, amp, data_parallel(device))
    gen = torch.Generator().manual_seed(rank)
    a = (torch.rand(cfg.batch, 3, cfg.size, cfg.size, generator=gen) * 2 - 1).to(device)
    b = (torch.rand(cfg.batch, 3, cfg.size, cfg.size, generator=gen) * 2 - 1).to(device)
    for _ in range(warmup):
        model.train_step(a, b)
    times = []
    for _ in range(steps):
        if world > 1:
            dist.barrier()
        start = time.perf_counter()
        model.train_step(a, b)  # returns Python floats: the step, its gradient reduction included, is done
        times.append(time.perf_counter() - start)
    if world > 1:
        dist.destroy_process_group()
    if rank == 0:
        Path(out).write_text(json.dumps(times))


def measure_ddp(cfg: Config, device: str, nproc: int, steps: int, warmup: int, amp: bool, threads: int
                ) -> dict[str, float | int | str]:
    import socket
    import tempfile

    import torch.multiprocessing as mp

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    with tempfile.TemporaryDirectory() as tmp:
        out = str(Path(tmp) / "times.json")
        mp.spawn(ddp_worker, args=(nproc, port, cfg, device, steps, warmup, amp, threads, out), nprocs=nproc)
        times = json.loads(Path(out).read_text())
    total = sum(times)
    return {"config": cfg.name, "model": cfg.model, "image_size": cfg.size, "batch_per_process": cfg.batch,
            "processes": nproc, "threads_per_process": threads, "backend": "nccl" if device.startswith("cuda")
            else ("gloo" if nproc > 1 else "none"), "steps": steps, "seconds_per_step": round(total / steps, 4),
            "images_per_second": round(cfg.batch * nproc * steps / total, 3)}


def main_ddp(args: argparse.Namespace) -> int:
    counts = [int(n) for n in args.nproc.split(",")]
    devices = [args.device] if args.device != "auto" else ["cuda" if torch.cuda.is_available() else "cpu"]
    for device in devices:
        cuda = device.startswith("cuda")
        if cuda and max(counts) > torch.cuda.device_count():
            raise SystemExit(f"--nproc {max(counts)} needs as many GPUs; {torch.cuda.device_count()} present")
        pool = CONFIGS if cuda else DDP_CPU_CONFIGS
        configs = [c for c in pool if args.configs == "all" or c.name in args.configs.split(",")]
        amp = not args.no_amp and cuda
        load_start = round(os.getloadavg()[0], 2)
        rows = []
        for cfg in configs:
            for n in counts:
                threads = args.threads_per_process or max(1, (os.cpu_count() or 1) // n)
                rows.append(measure_ddp(cfg, device, n, args.steps, args.warmup, amp, threads))
        print(f"\n{device} ({device_name(device)}), data-parallel, amp={amp}")
        print(f"{'config':<24}{'processes':>10}{'threads':>9}{'images/s':>10}{'s/step':>10}{'speed-up':>10}")
        for row in rows:
            base = next(r for r in rows if r["config"] == row["config"] and r["processes"] == counts[0])
            speedup = row["images_per_second"] / base["images_per_second"]
            row["speedup_vs_first"] = round(speedup, 3)
            print(f"{row['config']:<24}{row['processes']:>10}{row['threads_per_process']:>9}"
                  f"{row['images_per_second']:>10.2f}{row['seconds_per_step']:>10.3f}{speedup:>10.2f}")
        report = {"device": device, "device_name": device_name(device), "cpu_count": os.cpu_count(),
                  "load_average_1m_at_start": load_start, "load_average_1m_at_end": round(os.getloadavg()[0], 2),
                  "amp": amp, "torch": torch.__version__, "warmup_steps": args.warmup,
                  "when": datetime.now(UTC).isoformat(timespec="seconds"), "results": rows}
        args.out_dir.mkdir(parents=True, exist_ok=True)
        out = args.out_dir / f"train_ddp_{device.split(':')[0]}.json"
        out.write_text(json.dumps(report, indent=2) + "\n")
        print(f"wrote {out}")
    return 0


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
    parser.add_argument("--nproc", default="", help="data-parallel mode: comma-separated process counts, e.g. 1,2")
    parser.add_argument("--threads-per-process", type=int, default=0,
                        help="--nproc on the CPU: torch threads per process (default: cores / processes)")
    args = parser.parse_args(argv)
    if args.nproc:
        return main_ddp(args)

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
