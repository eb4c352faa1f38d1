"""Data-parallel training with two gloo processes on the CPU, against one process.

One run of two processes (`ddp_run`, shared by the tests here) resumes from a checkpoint that one process wrote,
reloads the data up to a broadcast watermark, trains the three models for STEPS steps through the product's plan
loop (stages.train.rank_loop.RankLoop) and saves; each process records the digest of every model's weights after
every step, the digest of the batch it trained on, and every file it opened for writing. Dropout and the image pools are
switched off in both runs (their draws are per process by design), so a global batch must give what one process
gives with that batch.
"""

from __future__ import annotations

import hashlib
import json
import os
import sys
from pathlib import Path

import pytest
import torch
import torch.multiprocessing as mp

from humanstyle.daemon import config
from humanstyle.models.checkpoint import load_checkpoint
from humanstyle.stages.store.catalog import Catalog
from humanstyle.stages.train.trainer import Trainer
from tests.conftest import fast_sections, free_port, write_config
from tests.units.test_trainer import TINY, add_pairs

STEPS = 3  # steps of every model in the two-process run
RESUMED_AT = 2  # steps one process took before (the checkpoint the two processes resume from)
# One process with the global batch against two processes with half of it each: the loss terms of every step, and
# what the trained nets output on fixed inputs. Float sums in another order differ by ~1e-7 relative. (Weights
# themselves are not compared: a conv bias followed by instance norm has a true gradient of 0, and Adam turns the
# float noise on it into steps of up to the learning rate; such a bias changes no output.)
LOSS_RTOL, OUTPUT_ATOL = 1e-5, 1e-5


def settings_for(folder: Path, data: Path, batch_scale: int) -> config.Settings:
    folder.mkdir(parents=True, exist_ok=True)
    train = {**TINY, "enabled": True, "pix2pix_batch_size": 2 * batch_scale, "cyclegan_batch_size": batch_scale,
             "sample_every": 2, "validate_every": 2, "checkpoint_every": 1000, "test_fraction": 0.0}
    sections = fast_sections(folder, train=train, paths={"data_dir": str(data), "runtime_dir": str(folder / "run")})
    return config.load(write_config(folder, sections))


def deterministic(trainer: Trainer) -> None:
    """No dropout, no image pool: a step becomes a function of the weights and the batch."""
    nets = [m.G for m in trainer.pix2pix.values()]
    for net in nets:
        for module in net.modules():
            if isinstance(module, torch.nn.Dropout):
                module.p = 0.0
    trainer.cyclegan.pool_A.pool_size = trainer.cyclegan.pool_B.pool_size = 0


def nets_of(trainer: Trainer, name: str) -> list[torch.nn.Module]:
    if name == "cyclegan":
        c = trainer.cyclegan
        return [c.G_AB, c.G_BA, c.D_A, c.D_B]
    return [trainer.pix2pix[name].G, trainer.pix2pix[name].D]


def digest(tensors) -> str:
    h = hashlib.sha256()
    for t in tensors:
        h.update(t.detach().contiguous().cpu().numpy().tobytes())
    return h.hexdigest()[:16]


def weights_digest(nets: list[torch.nn.Module]) -> str:
    return digest([t for net in nets for t in (*net.parameters(), *net.buffers())])


def fixed_input(net: torch.nn.Module, x: torch.Tensor) -> torch.Tensor:
    """x, or x twice side by side in channels for a conditional discriminator (input and output)."""
    channels = next(m for m in net.modules() if isinstance(m, torch.nn.Conv2d)).in_channels
    return torch.cat([x] * (channels // x.shape[1]), 1)


def rank_worker(rank: int, world: int, port: int, folder: str, data: str, out: str) -> None:
    """One of the two processes: the product's trainer and plan loop, instrumented."""
    os.environ.update(MASTER_ADDR="127.0.0.1", MASTER_PORT=str(port), RANK=str(rank), WORLD_SIZE=str(world),
                      LOCAL_RANK=str(rank))
    torch.set_num_threads(1)
    writes: list[str] = []
    train_root = str(Path(data) / "train")

    def audit(event: str, args: tuple) -> None:  # every file this process opens for writing under train/
        if event == "open" and str(args[0]).startswith(train_root):
            mode, flags = args[1], args[2] if len(args) > 2 else 0
            if (mode and any(c in mode for c in "wax+")) or (flags and flags & (os.O_WRONLY | os.O_RDWR)):
                writes.append(str(args[0]))

    sys.addaudithook(audit)
    from humanstyle.stages.train.distributed import init_group

    settings = config.load(Path(folder) / "config.toml")
    group = init_group("cpu", 120)
    record = train_as(group, settings)  # returns with its trainer and nets gone: closing frees the group
    record["writes"] = sorted(set(writes))
    group.close()
    record["gloo_threads_left"] = sum(1 for t in Path("/proc/self/task").iterdir()
                                      if (t / "comm").read_text().strip() == "pt_gloo_runloop")
    Path(out, f"rank{rank}.json").write_text(json.dumps(record))


def train_as(group, settings: config.Settings) -> dict:
    from humanstyle.models.parallel import data_parallel
    from humanstyle.models.pix2pix import Pix2Pix, Pix2PixSettings
    from humanstyle.stages import counters
    from humanstyle.stages.train.distributed import Plan
    from humanstyle.stages.train.rank_loop import RankLoop

    rank = group.rank
    trainer = Trainer(settings, group.device, group=group)
    resumed = trainer.resume()
    deterministic(trainer)
    record = {"rank": rank, "resumed": resumed, "resumed_steps": {n: trainer.model(n).step for n in trainer.names},
              "steps": [], "batches": []}
    original = trainer.train_step

    def train_step(name: str) -> dict:
        model = trainer.model(name)
        inner = model.train_step

        def spy(a, b):
            record["batches"].append([name, model.step, digest([a, b])])
            return inner(a, b)

        model.train_step = spy
        try:
            terms = original(name)
        finally:
            del model.train_step
            record["steps"].append([name, model.step, weights_digest(nets_of(trainer, name))])
        record.setdefault("terms", []).append([name, model.step, terms])
        return terms

    trainer.train_step = train_step
    loop = RankLoop(trainer, settings)
    if group.is_main:
        loop.lead(Plan(watermark=loop.watermark()))
        for _ in range(STEPS):
            loop.lead(Plan(models=tuple(range(len(trainer.names)))))
        loop.lead(Plan(stop=True))
    else:
        loop.follow()
    record["pairs"] = len(trainer.data.pairs["train"])
    record["tensorboard"] = trainer._tb is not None
    trainer.save()
    trainer.close()
    record["final"] = {n: weights_digest(nets_of(trainer, n)) for n in trainer.names}
    record["steps_counted"] = {n: counters.TRAIN_STEPS.labels(n)._value.get() for n in trainer.names}

    # A discriminator with BatchNorm, called three times per step (fake, real, then bare in the generator step).
    bn = Pix2Pix(Pix2PixSettings(image_size=32, ngf=4, ndf=4, norm="batch", use_dropout=False), data_parallel("cpu"))
    gen = torch.Generator().manual_seed(100 + rank)  # each process its own data
    for _ in range(2):
        a, b = (torch.rand(2, 3, 32, 32, generator=gen) * 2 - 1 for _ in range(2))
        bn.train_step(a, b)
    record["batchnorm"] = weights_digest([bn.G, bn.D])
    loop.close()
    return record


@pytest.fixture(scope="module")
def ddp_run(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("ddp")
    data = tmp / "data"
    two = settings_for(tmp / "two", data, batch_scale=1)  # per process: pix2pix 2, CycleGAN 1
    one = settings_for(tmp / "one", data, batch_scale=2)  # the same global batch in one process
    add_pairs(two, 12, 0)
    # The checkpoint both runs start from, written by one process: resuming it with two is "another world size".
    first = Trainer(one, "cpu")
    deterministic(first)
    first.refresh(Catalog(two.paths.catalog, readonly=True))
    for _ in range(RESUMED_AT):
        for name in first.ready():
            first.train_step(name)
    first.save()
    first.close()
    start = load_checkpoint(first.latest)
    mp.spawn(rank_worker, args=(2, free_port(), str(tmp / "two"), str(data), str(tmp)), nprocs=2, join=True)
    ranks = [json.loads((tmp / f"rank{r}.json").read_text()) for r in (0, 1)]
    return {"tmp": tmp, "one": one, "two": two, "ranks": ranks, "start": start, "data": data}


def test_both_processes_resume_a_one_process_checkpoint(ddp_run):
    for record in ddp_run["ranks"]:
        assert record["resumed"]
        assert set(record["resumed_steps"].values()) == {RESUMED_AT}


def test_every_process_holds_the_same_weights_after_every_step(ddp_run):
    r0, r1 = ddp_run["ranks"]
    assert len(r0["steps"]) == 3 * STEPS and r0["steps"] == r1["steps"]
    # Not a run where nothing moved: every step changed every model's weights.
    for name in {s[0] for s in r0["steps"]}:
        digests = [d for n, _, d in r0["steps"] if n == name]
        assert len(set(digests)) == STEPS
    # Each process trained on its own share of the batch: equal weights come from averaged gradients.
    assert [b[:2] for b in r0["batches"]] == [b[:2] for b in r1["batches"]]
    assert all(x[2] != y[2] for x, y in zip(r0["batches"], r1["batches"], strict=True))
    assert r0["final"] == r1["final"]


def test_a_global_batch_equals_one_process_with_that_batch(ddp_run):
    one = Trainer(ddp_run["one"], "cpu")
    for name in one.names:  # where the two processes started (their run has replaced latest.pt since)
        one.model(name).load_state_dict(ddp_run["start"]["models"][name])
    deterministic(one)
    one.refresh(Catalog(ddp_run["two"].paths.catalog, readonly=True))
    assert len(one.data.pairs["train"]) == ddp_run["ranks"][0]["pairs"]
    mine = []
    for _ in range(STEPS):
        for name in one.names:
            mine.append([name, one.model(name).step + 1, one.train_step(name)])
    # Loss terms: each process's are means over its half of the batch, so their mean is the global batch's.
    r0, r1 = (r["terms"] for r in ddp_run["ranks"])
    worst = 0.0
    for (name, step, terms), (n0, s0, t0), (n1, s1, t1) in zip(mine, r0, r1, strict=True):
        assert (name, step) == (n0, s0) == (n1, s1)
        for term, value in terms.items():
            if term.startswith("brightness_gap"):
                continue  # a difference of means: compared through its two parts
            mean = 0.5 * (t0[term] + t1[term])
            worst = max(worst, abs(mean - value) / max(abs(value), 1e-3))
            assert mean == pytest.approx(value, rel=LOSS_RTOL, abs=1e-6), f"{name} step {step} {term}"
    # What the trained nets do: outputs of every generator and discriminator on fixed inputs.
    ddp = load_checkpoint(ddp_run["two"].paths.data_dir / "train" / "checkpoints" / "latest.pt")
    two = Trainer(ddp_run["two"], "cpu")
    gen = torch.Generator().manual_seed(7)
    x = torch.rand(3, 3, 32, 32, generator=gen) * 2 - 1
    gaps = {}
    for name in one.names:
        two.model(name).load_state_dict(ddp["models"][name])
        assert two.model(name).step == one.model(name).step == RESUMED_AT + STEPS
        with torch.no_grad():
            outs = [[net.eval()(fixed_input(net, x)) for net in nets_of(t, name)] for t in (one, two)]
        gaps[name] = max((a - b).abs().max().item() for a, b in zip(*outs, strict=True))
    print(f"largest relative loss gap {worst:.2e}; largest output gap {gaps}")
    assert max(gaps.values()) <= OUTPUT_ATOL, gaps


def test_process_0_alone_writes_checkpoints_samples_and_tensorboard_and_counts_steps(ddp_run):
    r0, r1 = ddp_run["ranks"]
    assert r1["writes"] == [], f"process 1 wrote {r1['writes'][:5]}"
    train = str(ddp_run["data"] / "train")
    written = {Path(p).relative_to(train).parts[0] for p in r0["writes"]}
    # state.json (written through a temp file beside it) and validation.jsonl feed the web page's training view.
    written = {"state.json" if w.startswith(".state.json.") else w for w in written}
    assert written == {"checkpoints", "samples", "state.json", "validation.jsonl"}
    assert any("latest.pt" in p for p in r0["writes"]) and any("best-" in p for p in r0["writes"])
    assert r0["tensorboard"] and not r1["tensorboard"]  # a SummaryWriter in process 0 only
    assert set(r1["steps_counted"].values()) == {0}
    assert set(r0["steps_counted"].values()) == {STEPS}


def test_a_two_process_checkpoint_resumes_in_one_process(ddp_run):
    one = Trainer(ddp_run["one"], "cpu")
    assert one.resume()
    for name in one.names:
        assert one.model(name).step == RESUMED_AT + STEPS
        assert weights_digest(nets_of(one, name)) == ddp_run["ranks"][0]["final"][name]


def test_leaving_the_group_joins_its_worker_threads(ddp_run):
    # One still running at exit may take the GIL while the interpreter shuts down and abort a finished run
    # (stages/train/distributed.py); left unjoined, that happened in about 1 of 8 two-process runs on a loaded machine.
    assert [r["gloo_threads_left"] for r in ddp_run["ranks"]] == [0, 0]


def test_a_batchnorm_discriminator_keeps_every_process_identical(ddp_run):
    r0, r1 = ddp_run["ranks"]
    assert r0["batchnorm"] == r1["batchnorm"]
