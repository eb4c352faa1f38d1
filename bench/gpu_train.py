"""Training throughput side by side with the reference implementation, AMP off and on, and the largest batches.

    python bench/gpu_train.py --mode cuda --reference .ref/pytorch-CycleGAN-and-pix2pix --out train_reference_cuda.json
    python bench/gpu_train.py --mode cpu ...      # tiny shapes: proves the harness (bench/gpu.sh --cpu, CI)

Specs (cuda): pix2pix 64 px batch 32 and 256 px batch 1, CycleGAN 200 px and 256 px batch 1, at the daemon's
architectures (widths 64, instance norm, U-Net depth from the size, 9 ResNet blocks; vanilla GAN loss for pix2pix,
LSGAN for CycleGAN). For each spec:
- ours: models.pix2pix / models.cyclegan train_step, in float32 ("fp32"), with AMP float16 (the daemon's default on
  CUDA) and AMP bfloat16; with cudnn.benchmark as the daemon leaves it (off) and on (as the reference sets it).
- reference: junyanz/pytorch-CycleGAN-and-pix2pix's own model class and optimize_parameters (bench/ref_train.py, in a
  process of its own), float32 as it trains, cudnn.benchmark on as its BaseModel sets it.
Every run starts from the SAME initial weights (ours, copied into the reference's networks by position, shapes
checked) and trains on the SAME batches (4 random batches, cycled) with the same seed before the first step, so the
loss curves of the first steps can be compared: both the G total (GAN + 100 L1, or GAN + cycle + identity) and the
D total (pix2pix: 0.5 (real + fake); CycleGAN: D_A + D_B). Where the U-Nets place dropout differently (the
reference puts it on depth - 5 levels, ours on 3), dropout is switched off in both for that spec, and the JSON says
so. A step is one full update of every network (CycleGAN: one image means one image of each domain); warm-up steps
are excluded from the timing and each step ends in one device synchronisation on both sides (reading the losses).

Also, per spec, the trainer's other device paths (CPU batches in, checkpoint round trip, validate, translate).

Largest batch (cuda only; `--part largest` runs it alone, as bench/gpu.sh does last): ours with AMP float16 (the
daemon's setting), doubling the batch, jumping to where the per-image memory measured on the way says the card is
full, then bisecting on CUDA out-of-memory; images/second at the largest batch that ran. Bounded by
--max-batch-budget-s (a probe predicted not to fit is not started: the answer is then a lower bound) and --batch-cap.
"""

from __future__ import annotations

import argparse
import dataclasses
import gc
import json
import os
import platform
import random
import statistics
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import torch
from torch import nn

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from humanstyle.models.cyclegan import CycleGAN, CycleGANSettings  # noqa: E402
from humanstyle.models.networks import unet_depth_for  # noqa: E402
from humanstyle.models.pix2pix import Pix2Pix, Pix2PixSettings  # noqa: E402

STEP_SEED = 1234  # torch and Python seeds right before the first step, on both sides (dropout, image pool)
INPUT_SEED = 99
INPUT_BATCHES = 4
GOAL_AMP_OFF = 1.0  # ours / reference, images per second
GOAL_AMP_ON = 1.5
# Loss curves "agree" when their largest relative difference over the first AGREE_STEPS steps is within these. Later
# steps drift apart by design: the two sum the same loss terms in another order, and Adam turns rounding-level
# gradient differences into parameter differences within a few steps (on the CPU: 0 at step 0, 1e-2 by step 7).
AGREE_STEPS = 3
AGREE_FP32 = 0.01  # TF32 convolutions on the GPU (cuDNN's default, both sides) round at ~5e-4 per layer
AGREE_AMP = 0.05


@dataclass(frozen=True)
class Spec:
    name: str
    model: str  # "pix2pix" or "cyclegan"
    size: int
    batch: int
    ngf: int = 64
    ndf: int = 64
    n_blocks: int = 9  # CycleGAN

    @property
    def gan_mode(self) -> str:
        return "vanilla" if self.model == "pix2pix" else "lsgan"


@dataclass(frozen=True)
class Variant:
    name: str
    amp: bool
    amp_dtype: str = "float16"
    cudnn_benchmark: bool = False


# The shapes of bench/train.py (the first users' and the papers'), at the daemon's default widths.
CUDA_SPECS = (
    Spec("pix2pix_64_b32", "pix2pix", 64, 32),
    Spec("pix2pix_256_b1", "pix2pix", 256, 1),
    Spec("cyclegan_200_b1", "cyclegan", 200, 1),
    Spec("cyclegan_256_b1", "cyclegan", 256, 1),
)
CPU_SPECS = (  # tiny, so CI proves the harness in seconds
    Spec("pix2pix_32_b4", "pix2pix", 32, 4, ngf=8, ndf=8),
    Spec("cyclegan_32_b1", "cyclegan", 32, 1, ngf=8, ndf=8, n_blocks=6),
)
CUDA_VARIANTS = (
    Variant("ours_fp32", amp=False),
    Variant("ours_amp_fp16", amp=True, amp_dtype="float16"),
    Variant("ours_amp_bf16", amp=True, amp_dtype="bfloat16"),
    Variant("ours_fp32_cudnn_bench", amp=False, cudnn_benchmark=True),
    Variant("ours_amp_fp16_cudnn_bench", amp=True, amp_dtype="float16", cudnn_benchmark=True),
)
CPU_VARIANTS = (Variant("ours_fp32", amp=False),)  # AMP is CUDA-only in models.networks.Precision


def build(spec: Spec, device: str, amp: bool = False, amp_dtype: str = "float16") -> Pix2Pix | CycleGAN:
    """Our model for `spec`, as the daemon's trainer builds it (seed 0)."""
    if spec.model == "pix2pix":
        return Pix2Pix(Pix2PixSettings(image_size=spec.size, ngf=spec.ngf, ndf=spec.ndf, device=device, amp=amp,
                                       amp_dtype=amp_dtype))
    return CycleGAN(CycleGANSettings(image_size=spec.size, ngf=spec.ngf, ndf=spec.ndf, n_blocks=spec.n_blocks,
                                     device=device, amp=amp, amp_dtype=amp_dtype))


def nets(model: Pix2Pix | CycleGAN) -> dict[str, nn.Module]:
    if isinstance(model, Pix2Pix):
        return {"G": model.G, "D": model.D}
    return {"G_AB": model.G_AB, "G_BA": model.G_BA, "D_A": model.D_A, "D_B": model.D_B}


def dropout_modules(net: nn.Module) -> int:
    return sum(isinstance(m, nn.Dropout) for m in net.modules())


def zero_dropout(model: Pix2Pix | CycleGAN) -> None:
    for net in nets(model).values():
        for m in net.modules():
            if isinstance(m, nn.Dropout):
                m.p = 0.0


def reference_dropout_levels(spec: Spec) -> int:
    """Dropout layers in the reference's U-Net of this depth (on its depth - 5 innermost 8*ngf levels)."""
    return max(0, unet_depth_for(spec.size) - 5) if spec.model == "pix2pix" else 0


def make_batches(spec: Spec) -> list[tuple[torch.Tensor, torch.Tensor]]:
    gen = torch.Generator().manual_seed(INPUT_SEED)
    shape = (spec.batch, 3, spec.size, spec.size)
    return [(torch.rand(shape, generator=gen) * 2 - 1, torch.rand(shape, generator=gen) * 2 - 1)
            for _ in range(INPUT_BATCHES)]


def step_losses(model: Pix2Pix | CycleGAN, terms: dict[str, float]) -> list[float]:
    """[G total, D total], defined as the reference's loss_G and loss_D (CycleGAN: loss_D_A + loss_D_B)."""
    if isinstance(model, Pix2Pix):
        return [terms["G_total"], terms["D_total"]]
    return [terms["G_total"], terms["D_A"] + terms["D_B"]]


def sync(device: str) -> None:
    if device.startswith("cuda"):
        torch.cuda.synchronize()


def run_ours(spec: Spec, variant: Variant, device: str, batches: list, warmup: int, steps: int,
             no_dropout: bool) -> dict[str, Any]:
    torch.backends.cudnn.benchmark = variant.cudnn_benchmark
    model = build(spec, device, variant.amp, variant.amp_dtype)
    if no_dropout:
        zero_dropout(model)
    on_device = [(a.to(device), b.to(device)) for a, b in batches]
    sync(device)
    if device.startswith("cuda"):
        torch.cuda.reset_peak_memory_stats()
    torch.manual_seed(STEP_SEED)
    random.seed(STEP_SEED)
    losses, times = [], []
    for i in range(warmup + steps):
        a, b = on_device[i % len(on_device)]
        start = time.perf_counter()
        terms = model.train_step(a, b)  # returns Python floats: the step has finished on the device
        losses.append(step_losses(model, terms))
        if i >= warmup:
            times.append(time.perf_counter() - start)
    peak = round(torch.cuda.max_memory_allocated() / 2**20, 1) if device.startswith("cuda") else None
    del model, on_device
    release(device)
    return {"images_per_second": round(spec.batch * len(times) / sum(times), 3),
            "seconds_per_step": round(sum(times) / len(times), 5), "fastest_step_s": round(min(times), 5),
            "median_step_s": round(statistics.median(times), 5),
            "losses": losses, "peak_memory_mb": peak, "amp": variant.amp,
            "amp_dtype": variant.amp_dtype if variant.amp else None, "cudnn_benchmark": variant.cudnn_benchmark}


def release(device: str) -> None:
    gc.collect()
    if device.startswith("cuda"):
        torch.cuda.empty_cache()


def run_reference(specs: list[Spec], reference: Path, device: str, threads: int, warmup: int, steps: int,
                  log: Path) -> dict[str, Any]:
    """All specs in one child process (bench/ref_train.py); {} entries carry "error" when something failed."""
    with tempfile.TemporaryDirectory(prefix="humanstyle-ref-") as tmp:
        job = Path(tmp)
        entries = []
        for spec in specs:
            model = build(spec, "cpu")
            torch.save({"init": {k: v.state_dict() for k, v in nets(model).items()}, "batches": make_batches(spec)},
                       job / f"{spec.name}.pt")
            del model
            entries.append({**dataclasses.asdict(spec), "gan_mode": spec.gan_mode, "norm": "instance",
                            "unet_depth": unet_depth_for(spec.size), "warmup": warmup, "steps": steps,
                            "step_seed": STEP_SEED, "zero_dropout": needs_no_dropout(spec)})
        (job / "job.json").write_text(json.dumps({"device": device, "threads": threads, "specs": entries}))
        out = job / "result.json"
        with open(log, "ab") as fh:
            proc = subprocess.run([sys.executable, str(Path(__file__).with_name("ref_train.py")), "--reference",
                                   str(reference), "--job", str(job), "--out", str(out)], stdout=fh,
                                  stderr=subprocess.STDOUT, cwd=tempfile.gettempdir())
        if proc.returncode != 0 or not out.exists():
            return {s.name: {"error": f"bench/ref_train.py exited {proc.returncode}; see {log}"} for s in specs}
        return json.loads(out.read_text())


def needs_no_dropout(spec: Spec) -> bool:
    """Dropout off in both when the two U-Nets place it differently (so the loss curves stay comparable)."""
    if spec.model != "pix2pix":
        return False
    return dropout_modules(build(spec, "cpu").G) != reference_dropout_levels(spec)


def curve_agreement(ours: list[list[float]], ref: list[list[float]], n: int) -> dict[str, Any]:
    """Relative differences of [G total, D total] per step: the largest over the first AGREE_STEPS and over n."""
    n = min(n, len(ours), len(ref))
    rel = [max(abs(o - r) / max(abs(r), 1e-8) for o, r in zip(ours[i], ref[i], strict=True)) for i in range(n)]
    return {"steps": n, "max_rel_diff_first_steps": round(max(rel[:AGREE_STEPS]), 8),
            "max_rel_diff": round(max(rel), 8), "rel_diff_per_step": [round(r, 8) for r in rel],
            "ours": [[round(v, 6) for v in row] for row in ours[:n]],
            "reference": [[round(v, 6) for v in row] for row in ref[:n]]}


# --- the other device paths of our models ---------------------------------------------------------------------------

def path_checks(spec: Spec, device: str, amp: bool) -> dict[str, Any]:
    """What the trainer does besides train_step, on `device`: CPU batches in (as stages.train.trainer stacks them), a
    checkpoint round trip through models.checkpoint (networks, optimisers, AMP scaler, image pools), the same next
    step from the saved and the restored model, validate() and translate()."""
    from humanstyle.models.checkpoint import load_checkpoint, save_checkpoint

    try:
        torch.backends.cudnn.benchmark = False
        model = build(spec, device, amp=amp)
        batches = make_batches(spec)[:2]
        for a, b in batches:
            model.train_step(a, b)
        with tempfile.TemporaryDirectory() as tmp:
            save_checkpoint(Path(tmp) / "state.pt", model.state_dict())
            state = load_checkpoint(Path(tmp) / "state.pt")  # map_location "cpu", as Trainer.resume
        restored = build(spec, device, amp=amp)
        restored.load_state_dict(state)
        nexts = []
        for m in (model, restored):
            torch.manual_seed(STEP_SEED)
            nexts.append(step_losses(m, m.train_step(*batches[0])))
        resumed_rel_diff = max(abs(x - y) / max(abs(y), 1e-8) for x, y in zip(*nexts, strict=True))
        a, b = batches[1]
        score = restored.validate(a, b)
        out = restored.translate(a) if isinstance(restored, Pix2Pix) else restored.translate(a, "a2b")
        ok_out = (out.dtype == torch.float32 and out.shape == a.shape and bool(torch.isfinite(out).all())
                  and out.device.type == torch.device(device).type)
        ok = ok_out and resumed_rel_diff < 1e-3
        return {"ok": ok, "amp": amp, "resumed_step_rel_diff": round(resumed_rel_diff, 8),
                "validate": score if isinstance(score, float) else score["score"],
                "translate": f"{tuple(out.shape)} {out.dtype} on {out.device}"}
    except Exception as exc:
        return {"ok": False, "amp": amp, "error": f"{type(exc).__name__}: {exc}"[:500]}
    finally:
        release(device)


# --- largest batch ------------------------------------------------------------------------------------------------

def probe(spec: Spec, batch: int, device: str, timed_steps: int) -> dict[str, Any]:
    """One attempt at `batch` (ours, AMP float16): 1 warm-up step, then `timed_steps`; {"ok": False, ...} when it
    does not run (out of memory, or a kernel's size limit)."""
    torch.backends.cudnn.benchmark = False
    release(device)
    torch.cuda.reset_peak_memory_stats()
    model = a = b = None
    try:
        model = build(spec, device, amp=True, amp_dtype="float16")
        gen = torch.Generator(device=device).manual_seed(INPUT_SEED)
        a = torch.rand((batch, 3, spec.size, spec.size), generator=gen, device=device) * 2 - 1
        b = torch.rand((batch, 3, spec.size, spec.size), generator=gen, device=device) * 2 - 1
        model.train_step(a, b)
        start = time.perf_counter()
        for _ in range(timed_steps):
            model.train_step(a, b)
        wall = time.perf_counter() - start
        return {"ok": True, "batch": batch, "images_per_second": round(batch * timed_steps / wall, 2),
                "seconds_per_step": round(wall / timed_steps, 4),
                "peak_memory_mb": round(torch.cuda.max_memory_allocated() / 2**20, 1)}
    except torch.cuda.OutOfMemoryError:
        return {"ok": False, "batch": batch, "why": "out of memory"}
    except RuntimeError as exc:  # e.g. a kernel's 32-bit indexing limit: does not run either
        return {"ok": False, "batch": batch, "why": f"{type(exc).__name__}: {str(exc)[:160]}"}
    finally:
        del model, a, b
        release(device)


def largest_batch(spec: Spec, device: str, budget_s: float, cap: int) -> dict[str, Any]:
    """Grow the batch (doubling, or jumping to where the measured per-image memory says the card is full), then
    bisect between the largest batch that ran and the smallest that did not. A probe whose predicted time (step
    time scaled linearly from the last batch that ran) does not fit in what is left of `budget_s` is not started:
    the answer is then a lower bound ("out_of_time")."""
    deadline = time.monotonic() + budget_s
    total = torch.cuda.get_device_properties(torch.device(device)).total_memory / 2**20
    probes: list[dict[str, Any]] = []
    ok: dict[str, Any] | None = None
    bad: int | None = None
    out_of_time = False

    def affordable(batch: int) -> bool:
        if ok is None:
            return time.monotonic() < deadline
        predicted = 1.0 + 2 * ok["seconds_per_step"] * batch / ok["batch"]  # build + warm-up step + timed step
        return time.monotonic() + predicted < deadline

    batch = spec.batch
    while batch <= cap:  # grow
        if not affordable(batch):
            out_of_time = True
            break
        result = probe(spec, batch, device, timed_steps=1)
        probes.append(result)
        if not result["ok"]:
            bad = batch
            break
        nxt = batch * 2
        if ok is not None:
            per_image = (result["peak_memory_mb"] - ok["peak_memory_mb"]) / (batch - ok["batch"])
            if per_image > 0:
                estimate = int((0.97 * total - result["peak_memory_mb"]) / per_image) + batch
                # Jump to the estimate; once there, step just past it (expect a failure, then bisect a short range).
                nxt = estimate if estimate > batch * 1.05 else int(batch * 1.06) + 1
        ok = result
        batch = min(nxt, cap) if batch < cap else cap + 1
    while ok and bad and bad - ok["batch"] > max(1, ok["batch"] // 32):  # bisect to within ~3 %
        mid = (ok["batch"] + bad) // 2
        if not affordable(mid):
            out_of_time = True
            break
        result = probe(spec, mid, device, timed_steps=1)
        probes.append(result)
        if result["ok"]:
            ok = result
        else:
            bad = mid
    return {"largest_batch": ok["batch"] if ok else None, "first_failing_batch": bad,
            "cap_reached": bool(ok and bad is None and ok["batch"] >= cap), "out_of_time": out_of_time,
            "at_largest": ok, "probes": probes, "device_memory_mb": round(total)}


# --- report --------------------------------------------------------------------------------------------------------

def print_table(rows: list[dict[str, Any]], variants: list[str]) -> None:
    cols = ["reference"] + variants
    head = f"{'spec':<17}" + "".join(f"{c.replace('ours_', ''):>16}" for c in cols)
    print("images/s (ratio to the reference)")
    print(head)
    print("-" * len(head))
    for row in rows:
        cells = []
        ref = row["runs"].get("reference", {}).get("images_per_second")
        for c in cols:
            run = row["runs"].get(c)
            if run is None or "images_per_second" not in run:
                cells.append("absent" if c == "reference" and run is None else "error")
                continue
            ips = run["images_per_second"]
            cells.append(f"{ips:.1f}" + (f" ({ips / ref:.2f}x)" if ref and c != "reference" else ""))
        print(f"{row['spec']:<17}" + "".join(f"{c:>16}" for c in cells))


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--mode", choices=("cuda", "cpu"), default="cuda")
    parser.add_argument("--reference", type=Path, default=ROOT / ".ref" / "pytorch-CycleGAN-and-pix2pix")
    parser.add_argument("--steps", type=int, default=None, help="timed steps per run (cuda 20, cpu 5)")
    parser.add_argument("--warmup", type=int, default=None, help="untimed steps per run (cuda 5, cpu 2)")
    parser.add_argument("--curve-steps", type=int, default=10, help="first steps of the loss curves compared")
    parser.add_argument("--threads", type=int, default=2, help="torch CPU threads (cpu mode)")
    parser.add_argument("--max-batch-budget-s", type=float, default=150.0, help="for all largest-batch searches")
    parser.add_argument("--batch-cap", type=int, default=8192)
    parser.add_argument("--part", choices=("all", "compare", "largest"), default="all",
                        help="compare: ours against the reference and the device paths; largest: the largest-batch "
                        "search alone (cuda; bench/gpu.sh runs it last, with the time that is left)")
    parser.add_argument("--out", type=Path, required=True)
    parser.add_argument("--log", type=Path, default=None, help="the reference process's output (default: beside --out)")
    args = parser.parse_args()

    cuda = args.mode == "cuda"
    if cuda and not torch.cuda.is_available():
        raise SystemExit("--mode cuda, but torch sees no CUDA device")
    torch.set_num_threads(args.threads)
    if args.part == "largest":
        return largest_main(args) if cuda else 0
    return compare_main(args)


def largest_main(args: argparse.Namespace) -> int:
    t0 = time.time()
    largest = run_largest(list(CUDA_SPECS), "cuda", args.max_batch_budget_s, args.batch_cap, t0)
    report = {"benchmark": "train_largest_batch", "started": datetime.now(UTC).isoformat(timespec="seconds"),
              "device_name": torch.cuda.get_device_name(), "torch": torch.__version__, "amp": "float16",
              "budget_s": args.max_batch_budget_s, "batch_cap": args.batch_cap, "largest_batch": largest}
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(report, indent=1) + "\n")
    print(f"wrote {args.out}")
    return 0 if all(r["largest_batch"] for r in largest.values()) else 1


def run_largest(specs: list[Spec], device: str, budget_s: float, cap: int, t0: float) -> dict[str, Any]:
    largest = {}
    for spec in specs:
        print(f"[{time.time() - t0:6.1f} s] largest batch: {spec.name}", flush=True)
        largest[spec.name] = largest_batch(spec, device, budget_s / len(specs), cap)
    for name, res in largest.items():
        at = res["at_largest"] or {}
        print(f"largest batch {name} (AMP fp16): {res['largest_batch']}"
              + (" (cap)" if res["cap_reached"] else "") + (" (out of time)" if res["out_of_time"] else "")
              + (f", {at['images_per_second']} images/s, {at['peak_memory_mb']:.0f} MB" if at.get("ok") else ""))
    return largest


def compare_main(args: argparse.Namespace) -> int:
    cuda = args.mode == "cuda"
    device = "cuda" if cuda else "cpu"
    steps = args.steps or (20 if cuda else 5)
    warmup = args.warmup if args.warmup is not None else (5 if cuda else 2)
    specs = list(CUDA_SPECS if cuda else CPU_SPECS)
    variants = list(CUDA_VARIANTS if cuda else CPU_VARIANTS)
    log = args.log or args.out.with_suffix(".reference.log")
    log.parent.mkdir(parents=True, exist_ok=True)
    started = datetime.now(UTC)
    t0 = time.time()

    args.reference = args.reference.resolve()  # the reference's process runs elsewhere
    reference = args.reference if (args.reference / "models" / "networks.py").is_file() else None
    if reference is None:
        print(f"reference absent ({args.reference}): our side only")
        ref_results: dict[str, Any] = {}
    else:
        print(f"reference: {reference} (its own process, log {log})", flush=True)
        ref_results = run_reference(specs, reference, device, args.threads, warmup, steps, log)

    rows = []
    for spec in specs:
        batches = make_batches(spec)
        no_dropout = needs_no_dropout(spec)
        runs: dict[str, Any] = {}
        if reference is not None:
            runs["reference"] = ref_results.get(spec.name, {"error": "no result"})
        for variant in variants:
            print(f"[{time.time() - t0:6.1f} s] {spec.name} {variant.name}", flush=True)
            runs[variant.name] = run_ours(spec, variant, device, batches, warmup, steps, no_dropout)
        row: dict[str, Any] = {"spec": spec.name, **dataclasses.asdict(spec), "gan_mode": spec.gan_mode,
                               "norm": "instance", "unet_depth": unet_depth_for(spec.size) if spec.model == "pix2pix"
                               else None, "dropout_off_in_both": no_dropout, "runs": runs}
        ref = runs.get("reference", {})
        if "images_per_second" in ref:
            row["ratio_to_reference"] = {v.name: round(runs[v.name]["images_per_second"] / ref["images_per_second"],
                                                       3) for v in variants}
            row["curves"] = {v.name: curve_agreement(runs[v.name]["losses"], ref["losses"], args.curve_steps)
                             for v in variants}
            row["reference_dropout_modules"] = ref.get("dropout_modules")
        rows.append(row)

    goals: dict[str, Any] = {}
    for row in rows:
        ratio = row.get("ratio_to_reference")
        if not ratio:
            continue
        amp_on = max((r for k, r in ratio.items() if "amp" in k), default=None)
        amp_off = max(r for k, r in ratio.items() if "amp" not in k)
        curves = row["curves"]
        goals[row["spec"]] = {
            # the best of our variants; "as_configured": what the daemon's trainer runs today
            "as_configured": ratio.get("ours_amp_fp16" if cuda else "ours_fp32"),
            "amp_off_ratio": amp_off, "amp_off_goal_met": amp_off >= GOAL_AMP_OFF,
            "amp_on_ratio": amp_on, "amp_on_goal_met": None if amp_on is None else amp_on >= GOAL_AMP_ON,
            "curves_agree_fp32": all(c["max_rel_diff_first_steps"] <= AGREE_FP32
                                     for k, c in curves.items() if "amp" not in k),
            "curves_agree_amp": None if not cuda else all(c["max_rel_diff_first_steps"] <= AGREE_AMP
                                                          for k, c in curves.items() if "amp" in k)}

    checks = {}
    for spec in specs:
        print(f"[{time.time() - t0:6.1f} s] device paths: {spec.name}", flush=True)
        checks[spec.name] = path_checks(spec, device, amp=cuda)

    print()
    if not cuda:
        print("CPU mode: tiny shapes on a shared CPU; the numbers prove the harness, they measure nothing")
    print_table(rows, [v.name for v in variants])
    for name, g in goals.items():
        print(f"{name}: AMP off {g['amp_off_ratio']:.2f}x (goal >= {GOAL_AMP_OFF}x: "
              f"{'met' if g['amp_off_goal_met'] else 'NOT met'})"
              + ("" if g["amp_on_ratio"] is None else f", AMP on {g['amp_on_ratio']:.2f}x (goal >= {GOAL_AMP_ON}x: "
                 f"{'met' if g['amp_on_goal_met'] else 'NOT met'})")
              + f"; as the trainer runs today {g['as_configured']:.2f}x"
              + f"; loss curves agree (fp32): {g['curves_agree_fp32']}")
    for row in rows:
        for name, c in row.get("curves", {}).items():
            if name in ("ours_fp32", "ours_amp_fp16"):
                print(f"  {row['spec']} {name} vs reference, loss curves' largest relative difference: first "
                      f"{AGREE_STEPS} steps {c['max_rel_diff_first_steps']:.1e}, {c['steps']} steps "
                      f"{c['max_rel_diff']:.1e}")
    for name, res in checks.items():
        print(f"device paths {name} (AMP {'fp16' if res['amp'] else 'off'}): "
              + ("ok" if res["ok"] else f"FAILED {res.get('error') or res}"))
    largest = run_largest(specs, device, args.max_batch_budget_s, args.batch_cap, t0) if cuda and \
        args.part == "all" else {}

    report = {"benchmark": "train_vs_reference", "mode": args.mode, "started": started.isoformat(timespec="seconds"),
              "wall_s": round(time.time() - t0, 1), "device": device,
              "device_name": torch.cuda.get_device_name() if cuda else (platform.processor() or platform.machine()),
              "torch": torch.__version__, "python": platform.python_version(), "threads": args.threads,
              "cpu_count": os.cpu_count(), "warmup_steps": warmup, "timed_steps": steps, "input_batches": INPUT_BATCHES,
              "reference": None if reference is None else {"path": str(reference), "commit": ref_commit(reference)},
              "goals": {"amp_off_ratio": GOAL_AMP_OFF, "amp_on_ratio": GOAL_AMP_ON, "curve_steps": AGREE_STEPS,
                        "curve_rel_diff_fp32": AGREE_FP32, "curve_rel_diff_amp": AGREE_AMP, "per_spec": goals},
              "specs": rows, "device_paths": checks, "largest_batch": largest}
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(report, indent=1) + "\n")
    print(f"wrote {args.out}")
    errors = [f"{r['spec']}/{k}" for r in rows for k, v in r["runs"].items() if "error" in v]
    if errors:
        print("errors: " + ", ".join(errors) + f" (see {log})")
    bad_paths = [name for name, res in checks.items() if not res["ok"]]
    disagree = reference is not None and not all(g["curves_agree_fp32"] for g in goals.values())
    return 1 if errors or bad_paths or disagree else 0


def ref_commit(reference: Path) -> str | None:
    marker = reference / "REF_COMMIT"
    if marker.is_file():
        return marker.read_text().strip()
    try:
        return subprocess.run(["git", "-C", str(reference), "rev-parse", "HEAD"], capture_output=True, text=True,
                              check=True).stdout.strip()
    except (OSError, subprocess.CalledProcessError):
        return None


if __name__ == "__main__":
    raise SystemExit(main())
