"""The two ways to start data-parallel training, each with two gloo processes on the CPU:

- the trainer stage with `train.gpus = 2` (its own process 0 starts process 1) while pairs keep arriving: new pairs
  reach both processes at the same step, without a hang;
- `humanstyle train` under torch's launcher (torchrun).
"""

from __future__ import annotations

import ast
import os
import re
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import zmq

from humanstyle.daemon import config
from humanstyle.daemon.runtime import fabric, wire
from humanstyle.daemon.runtime.paths import prepare_runtime_dir
from humanstyle.models.checkpoint import load_checkpoint
from humanstyle.stages.records import PairsAppended
from tests.conftest import fast_sections, write_config
from tests.units.test_trainer import TINY, add_pairs

ROOT = Path(__file__).resolve().parents[2]
pytestmark = pytest.mark.timeout(240)
STAGE = """
import sys
from humanstyle.daemon import config
from humanstyle.daemon.runtime.fabric import StopFlag
from humanstyle.daemon.runtime.logs import setup_logging
from tests.harness import run_stage
setup_logging("INFO", "train-0")
run_stage("train", config.load(sys.argv[1]), 0, StopFlag().install())
"""
LOADED = re.compile(r"train process (\d)/2: data up to pair (\d+), patch \d+: (\d+) training pairs.* at steps (\{.*\})")


def settings_for(tmp: Path, **train) -> config.Settings:
    sections = fast_sections(tmp, train={**TINY, "enabled": True, "gpus": 2, "test_fraction": 0.0,
                                         "val_fraction": 0.0, "sample_every": 1000, "validate_every": 1000,
                                         "checkpoint_every": 1000, **train})
    return config.load(write_config(tmp, sections))


def env() -> dict[str, str]:
    return {**os.environ, "PYTHONPATH": str(ROOT), "OMP_NUM_THREADS": "1"}


def loads(log: Path) -> list[tuple[int, int, int, dict]]:
    """(process, pair watermark, training pairs, steps) of every data reload the log reports."""
    out = []
    for m in LOADED.finditer(log.read_text(errors="replace")):
        out.append((int(m.group(1)), int(m.group(2)), int(m.group(3)), ast.literal_eval(m.group(4))))
    return out


def wait_for(predicate, timeout: float, what: str, log: Path, proc: subprocess.Popen) -> None:
    deadline = time.monotonic() + timeout
    while not predicate():
        if proc.poll() is not None:
            raise AssertionError(f"exited with {proc.returncode} waiting for {what}:\n{log.read_text()[-3000:]}")
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out waiting for {what}:\n{log.read_text()[-3000:]}")
        time.sleep(0.2)


def test_pairs_arriving_mid_run_reach_both_processes_at_the_same_step(tmp_path):
    s = settings_for(tmp_path, refresh_every_s=3600.0)  # only the index's events bring new pairs in
    add_pairs(s, 6, 0)
    prepare_runtime_dir(s)
    ctx = zmq.Context()
    events = ctx.socket(zmq.PUB)
    events.bind(fabric.endpoint(s, "events"))
    log = tmp_path / "train.log"
    with open(log, "wb") as out:
        proc = subprocess.Popen([sys.executable, "-c", STAGE, str(s.source)], stdout=out, stderr=subprocess.STDOUT,
                                env=env(), cwd=ROOT)
    try:
        wait_for(lambda: {p for p, *_ in loads(log)} == {0, 1}, 120, "both processes to load 6 pairs", log, proc)
        assert {(p, w, n) for p, w, n, _ in loads(log)} == {(0, 6, 6), (1, 6, 6)}
        time.sleep(2.0)  # let them train on the first pairs
        add_pairs(s, 6, 100)
        started = time.monotonic()

        def both_have_12() -> bool:
            events.send_multipart(wire.encode(PairsAppended(count=6, total=12)))
            return {p for p, w, *_ in loads(log) if w == 12} == {0, 1}

        wait_for(both_have_12, 60, "both processes to load the new pairs", log, proc)
        took = time.monotonic() - started
        new = {p: (n, steps) for p, w, n, steps in loads(log) if w == 12}
        print(f"new pairs reached both processes {took:.1f} s after they were added, at steps {new[0][1]}")
        assert new[0] == new[1], f"process 0 and 1 reloaded at different steps: {new}"
        assert new[0][0] == 12 and min(new[0][1].values()) > 0, "they must have been training before"
        before = new[0][1]
        time.sleep(2.0)  # and they keep training together on the new data
        proc.send_signal(signal.SIGTERM)
        assert proc.wait(60) == 0, log.read_text()[-3000:]
    finally:
        if proc.poll() is None:
            proc.kill()
        events.close()
        ctx.term()
    text = log.read_text()
    assert "Traceback" not in text, text[-3000:]
    assert "still held" not in text, text[-3000:]  # each process freed its group (stages/train/distributed.py)
    state = load_checkpoint(s.paths.data_dir / "train" / "checkpoints" / "latest.pt")
    assert all(state["models"][n]["step"] > before[n] for n in before), "training stopped at the reload"
    assert text.count("resumed from") == 0 and "training process 1 of 2" in text


def test_humanstyle_train_under_torchrun(tmp_path):
    s = settings_for(tmp_path, gpus=1)  # the launcher decides the number of processes
    add_pairs(s, 8, 0)
    log = tmp_path / "torchrun.log"
    cmd = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node=2",
           "-m", "humanstyle.daemon.cli", "train", "--steps", "3", "--config", str(s.source)]
    with open(log, "wb") as out:
        proc = subprocess.run(cmd, stdout=out, stderr=subprocess.STDOUT, env=env(), cwd=ROOT, timeout=180)
    text = log.read_text(errors="replace")
    assert proc.returncode == 0, text[-3000:]
    assert "for 3 steps each on 2 process(es)" in text
    assert "still held" not in text, text[-3000:]
    assert {(p, w, n) for p, w, n, _ in loads(log)} == {(0, 8, 8), (1, 8, 8)}
    state = load_checkpoint(s.paths.data_dir / "train" / "checkpoints" / "latest.pt")
    assert {m["step"] for m in state["models"].values()} == {3}
