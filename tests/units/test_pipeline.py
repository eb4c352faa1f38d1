"""The pipeline declaration (daemon/pipeline.py) and what derives from it: the README's diagram, the supervisor's
plan for each machine role, the sockets each stage opens, their ports."""

from __future__ import annotations

import dataclasses
import re
from pathlib import Path

import pytest

from humanstyle.daemon import config, pipeline
from humanstyle.daemon.runtime.fabric import endpoint
from humanstyle.daemon.runtime.supervisor import plan_children

README = Path(__file__).resolve().parents[2] / "README.md"


def settings_with(tmp_path, **sections):
    return config.from_dict({"paths": {"data_dir": str(tmp_path / "data"), "watch_dir": str(tmp_path)}, **sections},
                            tmp_path)


def test_the_readme_shows_the_diagram_the_declaration_draws():
    text = README.read_text()
    shown = re.search(r"<!-- pipeline:begin -->\n```\n(.*?)\n```\n<!-- pipeline:end -->", text, re.S)
    assert shown, "README.md has no pipeline block"
    assert shown.group(1) == pipeline.diagram(), "run `python -m humanstyle.daemon.pipeline` and paste its output"


def test_every_queue_has_a_binder_a_writer_and_a_reader_and_records_of_one_queue_only():
    for queue in pipeline.QUEUES.values():
        assert queue.binder in pipeline.STAGES
        assert pipeline.writers(queue.name) and pipeline.readers(queue.name), queue.name
        assert queue.binder in pipeline.writers(queue.name) + [s.name for s in pipeline.readers(queue.name)]
    for stage in pipeline.STAGES.values():
        assert set(stage.reads) | set(stage.writes) <= set(pipeline.QUEUES), stage.name
        # The stage loop sends a record to the one output that carries its type.
        carried = [r for name in stage.writes for r in pipeline.QUEUES[name].records]
        assert len(carried) == len(set(carried)), stage.name


@pytest.mark.parametrize("role, expected", [
    ("all", {"index": 1, "watch": 1, "decode": 2, "detect": 3, "classify": 1, "pairing": 1, "train": 1}),
    ("coordinator", {"index": 1, "watch": 1, "pairing": 1, "train": 1}),
    ("ingest", {"index": 1, "decode": 2, "detect": 3, "classify": 1}),
])
def test_each_role_runs_its_stages_with_the_configured_counts_those_that_stop_last_first(tmp_path, role, expected):
    extra = {} if role == "all" else {"catalog": {"url": "postgresql://u@127.0.0.1/db"}}
    s = settings_with(tmp_path, ingest={"role": role}, decode={"workers": 2}, detect={"workers": 3}, **extra)
    children = plan_children(s)
    counts: dict[str, int] = {}
    for child in children:
        counts[child.stage] = counts.get(child.stage, 0) + 1
    assert counts == expected
    assert children[0].stage == "index"  # binds the queues the others connect to, and stops after them
    detectors = [c.name for c in children if c.stage == "detect"]
    assert detectors == [f"detect-{i}" for i in range(expected.get("detect", 0))]


def test_the_trainer_runs_only_when_enabled(tmp_path):
    assert "train" not in {c.stage for c in plan_children(settings_with(tmp_path, train={"enabled": False}))}


def test_per_replica_queues_bind_one_socket_per_process_and_readers_connect_to_all(tmp_path):
    s = settings_with(tmp_path, decode={"workers": 3})
    assert pipeline.socket_names(s, "decode", "windows", 1) == ["windows.1"]
    assert pipeline.socket_names(s, "detect", "windows", 0) == ["windows.0", "windows.1", "windows.2"]
    assert pipeline.socket_names(s, "classify", "classified", 0) == ["classified"]


def test_tcp_ports_are_the_documented_offsets_and_never_overlap(tmp_path):
    s = settings_with(tmp_path, queues={"transport": "tcp", "tcp_base_port": 40000})
    # The offsets deployments open in their firewalls: they must not move.
    assert {name: q.port for name, q in pipeline.QUEUES.items()} == {
        "discovered": 0, "jobs": 1, "classified": 2, "events": 3, "control": 4, "windows": 10, "patches": 80}
    assert endpoint(s, "windows.3") == "tcp://127.0.0.1:40013"
    ports = [pipeline.port_offset(f"{q.name}.{i}" if q.per_replica else q.name)
             for q in pipeline.QUEUES.values() for i in range(pipeline.MAX_REPLICAS if q.per_replica else 1)]
    assert len(ports) == len(set(ports))


def test_a_stage_loop_opens_the_sockets_its_stage_declares(tmp_path, monkeypatch):
    """The index binds what it reads and what it writes; a decoder connects to jobs and binds its own windows."""
    from humanstyle.daemon.runtime import stage_loop
    from humanstyle.daemon.runtime.fabric import StopFlag
    from humanstyle.stages.handler import Handler

    s = settings_with(tmp_path, paths={"data_dir": str(tmp_path / "data"), "watch_dir": str(tmp_path),
                                       "runtime_dir": str(tmp_path / "run")})
    opened = []

    class Recording(stage_loop.Fabric):
        def _attach(self, sock, names, bind):
            opened.append((self.stage, tuple(names), bind))
            super()._attach(sock, names, bind)

    monkeypatch.setattr(stage_loop, "Fabric", Recording)
    (tmp_path / "run").mkdir(mode=0o700)
    for name, replica in (("index", 0), ("decode", 1)):
        # The declared stage with a handler that needs no model and no thread setup: only its sockets matter here.
        stage = dataclasses.replace(pipeline.STAGES[name], handler=lambda *_: Handler(), setup=None)
        loop = stage_loop.StageLoop(stage, s, replica, StopFlag())
        loop.fab.close()
    assert opened == [("index", ("discovered",), True), ("index", ("classified",), True),
                      ("index", ("control",), True), ("index", ("jobs",), True),
                      ("decode", ("jobs",), False), ("decode", ("windows.1",), True)]
