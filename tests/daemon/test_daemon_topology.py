"""One daemon run in the other topology the README promises: queues over TCP (queues.transport = "tcp") and two
processes for each of decode, detect and classify, with the trainer on. From that single run:

- every queue is a TCP socket on queues.tcp_host at its documented port, and no ipc socket exists;
- every stage process did work (read from its own multiprocess metrics file), and the results are exact:
  all videos done, every patch once, every same-view cross-domain pair once;
- the trainer learns of the pairs from the real index's `pairs_appended` events: train.refresh_every_s is a
  day, so nothing else refreshes its datasets after start;
- `humanstyle status` reports the pairs while the daemon runs.

Why each process must get work: ZeroMQ's PUSH sockets deal messages round-robin over their connected peers. The
index's first two jobs go one to each decoder; each decoder's first two windows (every clip here has two) go
one to each detector; each detector's two patches of a window (two persons) go one to each classifier.
"""

from __future__ import annotations

import random
import socket
from pathlib import Path

import pytest
from prometheus_client.multiprocess import MultiProcessCollector

from humanstyle.daemon import pipeline
from tests.faults.test_reliability_trainer import TINY_TRAINING
from tests.reliability_helpers import (
    all_finished,
    assert_invariants,
    catalog_value,
    drop_in_both_domains,
    every_cross_domain_pair,
    running_daemon,
    snapshot,
    tcp_listeners,
)

pytestmark = [pytest.mark.slow, pytest.mark.timeout(400)]

WORKERS = 2
CLIPS = 2  # each dropped as a movie and as a game video: 4 videos of 2 windows x 2 persons
LOCALHOST = "0100007F"  # 127.0.0.1 as /proc/net/tcp writes it


def free_port_block(size: int) -> int:
    """A base port with `size` consecutive free ports above it (other daemons may run tests meanwhile)."""
    for _ in range(100):
        base = random.randrange(20000, 60000 - size)
        socks = []
        try:
            for port in range(base, base + size):
                s = socket.socket()
                socks.append(s)
                s.bind(("127.0.0.1", port))
            return base
        except OSError:
            continue
        finally:
            for s in socks:
                s.close()
    raise AssertionError("no block of free ports")


def work_done(metrics_dir: Path, pid: int, name: str, **labels: str) -> float:
    """The sum of counter `name` (with these labels) that process `pid` wrote to its own multiprocess file."""
    files = [str(p) for p in metrics_dir.glob(f"counter_{pid}.db")]
    total = 0.0
    for family in MultiProcessCollector.merge(files, accumulate=True):
        for sample in family.samples:
            if sample.name == name and all(sample.labels.get(k) == v for k, v in labels.items()):
                total += sample.value
    return total


def test_tcp_transport_several_workers_and_the_trainer_fed_by_the_pairing_stage(tmp_path, capsys):
    base = free_port_block(max(q.port for q in pipeline.QUEUES.values()) + WORKERS)
    train = {**TINY_TRAINING, "refresh_every_s": 86400.0, "checkpoint_every": 1_000_000}
    data = tmp_path / "data"
    with running_daemon(tmp_path, queues={"transport": "tcp", "tcp_base_port": base},
                        decode={"workers": WORKERS, "burst_frames": 0}, detect={"workers": WORKERS, "patch_size": 64},
                        classify={"workers": WORKERS}, train=train) as d:
        stages = d.health()["stages"]
        assert {name: s["processes"] for name, s in stages.items()} == {
            "index": 1, "pairing": 1, "watch": 1, "decode": WORKERS, "detect": WORKERS, "classify": WORKERS,
            "train": 1}

        # Every queue on its documented TCP port of 127.0.0.1, next to the metrics port; no ipc socket.
        pids = [d.proc.pid] + [pid for s in stages.values() for pid in s["pids"]]
        queues = {base + q.port + i for q in pipeline.QUEUES.values() for i in range(WORKERS if q.per_replica else 1)}
        metrics_port = int(d.listen.rsplit(":", 1)[1])
        assert tcp_listeners(pids) == sorted((LOCALHOST, p) for p in queues | {metrics_port})
        assert not list((tmp_path / "run").glob("*.sock"))

        for i in range(CLIPS):
            drop_in_both_domains(tmp_path, f"clip{i}.mp4", size=(160 + 16 * i, 120))
        d.wait_for(lambda: all_finished(data, 2 * CLIPS), 240, "every video")

        # Each stage process did its share.
        metrics_dir = tmp_path / "run" / "metrics"
        work = {"decode": ("humanstyle_windows_sent_total", {}),
                "detect": ("humanstyle_frames_detected_total", {"kind": "anchor"}),
                "classify": ("humanstyle_model_calls_total", {"model": "keypointrcnn"})}
        done = {(stage, pid): work_done(metrics_dir, pid, name, **labels)
                for stage, (name, labels) in work.items() for pid in stages[stage]["pids"]}
        assert all(n > 0 for n in done.values()), f"idle workers: {done}"

        # The trainer's datasets follow the pairing stage's events (nothing else refreshes them within a day).
        (pairs,), = catalog_value(data, "SELECT COUNT(*) FROM pairs")
        assert pairs > 0

        def trainer_has_every_pair() -> bool:
            return sum(d.value("humanstyle_train_dataset_items", model="pix2pix", split=s)
                       for s in ("train", "val", "test")) == pairs
        d.wait_for(trainer_has_every_pair, 120, f"the trainer to refresh to {pairs} pairs")
        d.wait_for(lambda: d.value("humanstyle_train_steps_total", model="pix2pix-movie2game") > 0, 120,
                   "pix2pix to train")

        from humanstyle.daemon.cli.main import main

        assert main(["status", "--config", str(d.config_path)]) == 0
        assert f"pairs: {pairs}\n" in capsys.readouterr().out
        assert d.value("humanstyle_stage_restarts_total") == 0
        snap = snapshot(data)
    assert_invariants(snap)
    assert {s for s, _ in snap.videos.values()} == {"done"}
    assert snap.counts["patches"] == 2 * CLIPS * 2 * 2  # videos x windows x persons
    assert snap.pairs == every_cross_domain_pair(snap) and len(snap.pairs) == pairs
