"""The reference side of bench/gpu_train.py: junyanz/pytorch-CycleGAN-and-pix2pix, run in its own process.

    python bench/ref_train.py --reference .ref/pytorch-CycleGAN-and-pix2pix --job JOB_DIR --out result.json

Nothing of the reference is in this repository: its code is imported from the checkout named by --reference. It
runs in a process of its own because its top-level packages are called `models` and `util`, and `models` is also
ours. For each spec in JOB_DIR/job.json it builds the reference's own model class (Pix2PixModel or CycleGANModel)
from an options object with the values our side uses, lets its `setup` place and initialise the networks, then
loads OUR initial weights into them (same shapes, same order; checked), and times `optimize_parameters` on the
batches our side trains on (JOB_DIR/<spec>.pt), recording the losses of every step.
"""

from __future__ import annotations

import argparse
import json
import random
import statistics
import sys
import tempfile
import time
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import torch
from torch import nn


def options(spec: dict[str, Any], device: torch.device, workdir: str) -> SimpleNamespace:
    """The option values the reference's model classes read, set to what our side uses."""
    pix2pix = spec["model"] == "pix2pix"
    return SimpleNamespace(
        isTrain=True, checkpoints_dir=workdir, name="bench", device=device, preprocess="resize_and_crop",
        input_nc=3, output_nc=3, ngf=spec["ngf"], ndf=spec["ndf"], netD="basic", n_layers_D=3, norm=spec["norm"],
        init_type="normal", init_gain=0.02, gan_mode=spec["gan_mode"], lr=2e-4, beta1=0.5, direction="AtoB",
        netG=generator_name(spec), no_dropout=not pix2pix,  # pix2pix: dropout in G; CycleGAN: none (as ours)
        lambda_L1=100.0, pool_size=0 if pix2pix else 50, lambda_A=10.0, lambda_B=10.0, lambda_identity=0.5,
        continue_train=False, load_iter=0, epoch="latest", verbose=False,
        lr_policy="linear", epoch_count=1, n_epochs=100, n_epochs_decay=100,
    )


def generator_name(spec: dict[str, Any]) -> str:
    if spec["model"] == "pix2pix":
        return {8: "unet_256", 7: "unet_128"}.get(spec["unet_depth"], "unet_256")
    if spec["n_blocks"] not in (6, 9):
        raise ValueError(f"the reference's define_G has 6 or 9 ResNet blocks, not {spec['n_blocks']}")
    return f"resnet_{spec['n_blocks']}blocks"


def build(spec: dict[str, Any], device: torch.device, workdir: str) -> Any:
    # The reference's own `models` package (from --reference), not humanstyle's.
    from models import networks  # noqa: I001
    from models.cycle_gan_model import CycleGANModel
    from models.pix2pix_model import Pix2PixModel

    opt = options(spec, device, workdir)
    if spec["model"] == "cyclegan":
        model = CycleGANModel(opt)
    else:
        model = Pix2PixModel(opt)
        if spec["unet_depth"] not in (7, 8):
            # define_G names only 7 and 8 levels (unet_128/unet_256); other image sizes need the reference's own
            # UnetGenerator with that many levels, and the optimizer the constructor would have made for it.
            model.netG = networks.UnetGenerator(3, 3, spec["unet_depth"], opt.ngf,
                                                norm_layer=networks.get_norm_layer(opt.norm), use_dropout=True)
            model.optimizer_G = torch.optim.Adam(model.netG.parameters(), lr=opt.lr, betas=(opt.beta1, 0.999))
            model.optimizers[0] = model.optimizer_G
    model.setup(opt)  # the reference's own placement on the device and weight initialisation
    return model


# Reference attribute -> our network. The reference's D_A judges domain B (it sees G_A(A) = fake B): our D_B.
NETS = {"pix2pix": {"netG": "G", "netD": "D"},
        "cyclegan": {"netG_A": "G_AB", "netG_B": "G_BA", "netD_A": "D_B", "netD_B": "D_A"}}


def load_by_position(net: nn.Module, state: dict[str, torch.Tensor]) -> None:
    """Copy our state dict into the reference's network entry by entry; names differ, order and shapes must not."""
    mine = net.state_dict()
    if len(mine) != len(state):
        raise ValueError(f"{len(mine)} tensors in the reference's network, {len(state)} in ours")
    for (name, theirs), (our_name, ours) in zip(mine.items(), state.items(), strict=True):
        if theirs.shape != ours.shape:
            raise ValueError(f"shape differs: reference {name} {tuple(theirs.shape)}, ours {our_name} "
                             f"{tuple(ours.shape)}")
    net.load_state_dict(dict(zip(mine.keys(), state.values(), strict=True)))


def losses_now(model: Any, kind: str) -> list[float]:
    """[G total, D total] of the last step, read in one device synchronisation (as our train_step does)."""
    d = model.loss_D if kind == "pix2pix" else model.loss_D_A + model.loss_D_B
    return torch.stack([model.loss_G.detach(), d.detach()]).float().tolist()


def run_spec(spec: dict[str, Any], job: Path, device: torch.device, workdir: str) -> dict[str, Any]:
    data = torch.load(job / f"{spec['name']}.pt", weights_only=True)
    model = build(spec, device, workdir)
    dropout = {}
    for attr, ours in NETS[spec["model"]].items():
        net = getattr(model, attr)
        load_by_position(net, data["init"][ours])
        dropout[attr] = sum(isinstance(m, nn.Dropout) for m in net.modules())
        if spec["zero_dropout"]:
            for m in net.modules():
                if isinstance(m, nn.Dropout):
                    m.p = 0.0
    batches = [(a.to(device), b.to(device)) for a, b in data["batches"]]
    if device.type == "cuda":
        torch.cuda.synchronize()
        torch.cuda.reset_peak_memory_stats()
    torch.manual_seed(spec["step_seed"])
    random.seed(spec["step_seed"])  # the reference's image pool draws from Python's random
    losses, times = [], []
    for i in range(spec["warmup"] + spec["steps"]):
        a, b = batches[i % len(batches)]
        start = time.perf_counter()
        model.set_input({"A": a, "B": b, "A_paths": [], "B_paths": []})
        model.optimize_parameters()
        losses.append(losses_now(model, spec["model"]))
        if i >= spec["warmup"]:
            times.append(time.perf_counter() - start)
    out = {"images_per_second": round(spec["batch"] * len(times) / sum(times), 3),
           "seconds_per_step": round(sum(times) / len(times), 5), "fastest_step_s": round(min(times), 5),
           "median_step_s": round(statistics.median(times), 5), "losses": losses, "dropout_modules": dropout,
           "cudnn_benchmark": torch.backends.cudnn.benchmark,
           "peak_memory_mb": round(torch.cuda.max_memory_allocated() / 2**20, 1) if device.type == "cuda" else None}
    del model, batches
    if device.type == "cuda":
        torch.cuda.empty_cache()
    return out


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--reference", type=Path, required=True, help="checkout of pytorch-CycleGAN-and-pix2pix")
    parser.add_argument("--job", type=Path, required=True, help="folder with job.json and one <spec>.pt per spec")
    parser.add_argument("--out", type=Path, required=True)
    args = parser.parse_args()

    ref = args.reference.resolve()
    sys.path.insert(0, str(ref))
    import models  # the reference's package, not ours: checked below

    if not Path(models.__file__).resolve().is_relative_to(ref):
        raise SystemExit(f"'models' resolved to {models.__file__}, not to the reference at {ref}")
    job = json.loads((args.job / "job.json").read_text())
    torch.set_num_threads(job["threads"])
    device = torch.device(job["device"])
    results: dict[str, Any] = {}
    with tempfile.TemporaryDirectory() as workdir:
        for spec in job["specs"]:
            try:
                results[spec["name"]] = run_spec(spec, args.job, device, workdir)
            except Exception as exc:  # one failing spec must not hide the others' numbers
                results[spec["name"]] = {"error": f"{type(exc).__name__}: {exc}"}
    args.out.write_text(json.dumps(results) + "\n")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
