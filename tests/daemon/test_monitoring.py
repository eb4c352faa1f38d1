"""The monitoring kit under monitoring/: every metric the Grafana dashboard and the Prometheus rules query is one
the daemon exports (from a live scrape, and from daemon.runtime.metrics without a daemon), the dashboard is portable
(a `datasource` variable, no fixed data source uid), the compose file wires the pieces together, and promtool
accepts the Prometheus files and passes the alert unit tests."""

from __future__ import annotations

import json
import os
import re
import shutil
import signal
import subprocess
import urllib.request
from pathlib import Path

import pytest
import yaml

from tests.conftest import fast_sections, write_config

ROOT = Path(__file__).resolve().parents[2]
MONITORING = ROOT / "monitoring"
DASHBOARD = MONITORING / "grafana" / "dashboards" / "humanstyle.json"
RULES = MONITORING / "prometheus" / "rules.yml"

METRIC = re.compile(r"\bhumanstyle_[a-z0-9_]+")
RECORDED = re.compile(r"\bhumanstyle:[a-zA-Z0-9_]+:[a-zA-Z0-9_]+")
TYPE_LINE = re.compile(r"^# TYPE (\S+) (\S+)$", re.MULTILINE)
SAMPLE_LINE = re.compile(r"^([a-zA-Z_:][a-zA-Z0-9_:]*)[{ ]", re.MULTILINE)
DATASOURCE_REFS = {"${datasource}", "$datasource"}

# Series a fast test daemon (random weights, training off, one clean clip) has no reason to create: each appears
# on its first event. The fallback test still proves these names are defined in daemon/runtime/metrics.py.
EVENT_ONLY = {
    "humanstyle_errors_total": "a unit of work failing",
    "humanstyle_index_patches": "a patch entering the pairing index (random weights may produce none)",
    "humanstyle_train_loss": "a training step (train.enabled = false)",
    "humanstyle_train_brightness": "a training step (train.enabled = false)",
    "humanstyle_train_validation_l1": "a validation run (train.enabled = false)",
    "humanstyle_train_validation": "a validation run (train.enabled = false)",
    "humanstyle_train_dataset_items": "a trainer refresh (train.enabled = false)",
    "humanstyle_train_ready": "a trainer (train.enabled = false)",
}


# --- what the kit queries --------------------------------------------------------------------------------------
def _walk(node):
    """Every dict inside a JSON document."""
    if isinstance(node, dict):
        yield node
        for value in node.values():
            yield from _walk(value)
    elif isinstance(node, list):
        for value in node:
            yield from _walk(value)


def dashboard() -> dict:
    return json.loads(DASHBOARD.read_text())


def dashboard_queries() -> list[str]:
    """PromQL of every panel target and of every query variable."""
    out = []
    for node in _walk(dashboard()):
        if isinstance(node.get("expr"), str):
            out.append(node["expr"])
        if node.get("type") == "query":  # a template variable
            query = node.get("query")
            out.append(query["query"] if isinstance(query, dict) else query)
    return out


def rules() -> list[dict]:
    return [rule for group in yaml.safe_load(RULES.read_text())["groups"] for rule in group["rules"]]


def rule_queries() -> list[str]:
    return [rule["expr"] for rule in rules()]


def recorded_names() -> set[str]:
    return {rule["record"] for rule in rules() if "record" in rule}


def used_metrics() -> dict[str, set[str]]:
    """humanstyle_* name -> where it is used. Recording rule names (humanstyle:...) are not daemon metrics: they are
    checked against rules.yml instead, and the metrics inside their expressions are counted with the rules'."""
    used: dict[str, set[str]] = {}
    for where, queries in (("dashboard", dashboard_queries()), ("rules.yml", rule_queries())):
        for query in queries:
            for name in METRIC.findall(query):
                used.setdefault(name, set()).add(where)
    return used


def exported_names(exposition: str) -> set[str]:
    """Series names a Prometheus scrape of `exposition` yields: every sample name, plus what each declared family
    expands to (a histogram declared without samples still exports _bucket, _sum and _count)."""
    names = set(SAMPLE_LINE.findall(exposition))
    for name, kind in TYPE_LINE.findall(exposition):
        if kind == "histogram":
            names.update(f"{name}{suffix}" for suffix in ("_bucket", "_sum", "_count"))
        elif kind == "summary":
            names.update((name, f"{name}_sum", f"{name}_count"))
        else:  # prometheus_client declares counters with their _total name already
            names.add(name)
    return {n for n in names if n.startswith("humanstyle_")}


def test_the_kit_queries_daemon_metrics_at_all():
    used = used_metrics()
    # A guard against the regex silently matching nothing: the headline metrics must be found.
    for name in ("humanstyle_stage_up", "humanstyle_stage_seconds_bucket", "humanstyle_train_brightness",
                 "humanstyle_video_seconds_ingested_total", "humanstyle_queue_messages"):
        assert name in used, name


# --- (a) names: without a daemon, then against a live one -------------------------------------------------------
def defined_exposition() -> str:
    """The exposition of daemon.runtime.metrics in this process, with the start-up series initialised."""
    import prometheus_client

    from humanstyle.daemon.runtime import metrics

    metrics.init_known_series(("movie", "game"))
    return prometheus_client.generate_latest().decode()


def test_every_queried_metric_is_defined_by_the_daemon():
    exported = exported_names(defined_exposition())
    unknown = {name: sorted(where) for name, where in used_metrics().items() if name not in exported}
    assert not unknown, f"queried but not exported by daemon/runtime/metrics.py: {unknown}"
    assert set(EVENT_ONLY) <= exported, "EVENT_ONLY names a metric daemon/runtime/metrics.py does not define"


def test_recording_rules_used_by_the_dashboard_are_defined():
    recorded = recorded_names()
    assert recorded and all(RECORDED.fullmatch(name) for name in recorded), recorded
    used = {name for query in dashboard_queries() for name in RECORDED.findall(query)}
    assert used, "the dashboard reads no recording rule"
    assert used <= recorded, f"dashboard reads recording rules missing from rules.yml: {sorted(used - recorded)}"
    # Rates are built on counters, never on gauges.
    for rule in rules():
        if "record" in rule:
            assert all(name.endswith("_total") for name in METRIC.findall(rule["expr"])), rule


def known_series(domains: tuple[str, str]) -> list[tuple[str, dict[str, str]]]:
    """Every series whose labels are known before anything happens: what a panel or a rule may query at 0."""
    from humanstyle.daemon.runtime.metrics import RECEIVING_STAGES, STAGES
    from humanstyle.stages.vocabulary import FILE_REASONS, MESSAGE_REASONS, PATCH_REASONS, VERDICTS

    out = [("humanstyle_rejections_total", {"domain": d, "reason": r}) for d in domains for r in PATCH_REASONS]
    out += [("humanstyle_files_rejected_total", {"reason": r}) for r in FILE_REASONS]
    out += [("humanstyle_messages_rejected_total", {"stage": s, "reason": r})
            for s in RECEIVING_STAGES for r in MESSAGE_REASONS]
    out += [("humanstyle_stage_seconds_bucket", {"stage": s, "le": "+Inf"}) for s in STAGES]
    out += [("humanstyle_stage_seconds_count", {"stage": s}) for s in STAGES]
    out += [("humanstyle_pairs_curated_total", {"verdict": v}) for v in VERDICTS]
    return out


@pytest.mark.timeout(240)
def test_every_queried_metric_is_in_a_live_scrape(tmp_path):
    """A freshly started daemon (nothing ingested yet) exports every series whose labels are known, at 0; after one
    clip, every metric the monitoring kit queries is in the scrape."""
    from tests.harness import Daemon
    from tests.media import make_clip

    cfg = write_config(tmp_path, fast_sections(tmp_path))
    daemon = Daemon(cfg, tmp_path / "daemon.log")
    try:
        daemon.start()
        fresh = daemon.metrics()
        expected = known_series(("movie", "game"))
        assert len(expected) > 50  # a guard against an empty vocabulary
        absent = [(name, labels) for name, labels in expected
                  if fresh.get((name, tuple(sorted(labels.items())))) != 0.0]
        assert not absent, f"{len(absent)} known series missing (or not 0) on a fresh daemon, e.g. {absent[:5]}"
        staging = tmp_path / "staging"
        staging.mkdir()
        clip = make_clip(staging / "clip.mp4", 2, fps=24, size=(320, 240))
        shutil.move(clip, tmp_path / "watch" / "movie" / "clip.mp4")
        # One finished video exercises every pipeline stage, so their latency and last-work series exist.
        daemon.wait_for(lambda: daemon.value("humanstyle_videos_total", status="done") >= 1, 180, "the clip done")
        with urllib.request.urlopen(daemon.url("/metrics"), timeout=5) as resp:
            live = exported_names(resp.read().decode())
    finally:
        if daemon.proc is not None and daemon.proc.poll() is None:
            daemon.stop()
        for pid in daemon.alive_children():
            os.kill(pid, signal.SIGKILL)
    missing = {name: sorted(where) for name, where in used_metrics().items()
               if name not in live and name not in EVENT_ONLY}
    assert not missing, f"queried by the monitoring kit but absent from a live scrape: {missing}"


# --- (b) the dashboard ------------------------------------------------------------------------------------------
def test_dashboard_has_a_prometheus_datasource_variable():
    variables = {v["name"]: v for v in dashboard()["templating"]["list"]}
    assert variables["datasource"]["type"] == "datasource"
    assert variables["datasource"]["query"] == "prometheus"


def test_no_panel_or_query_pins_a_datasource():
    for node in _walk(dashboard()):
        if "datasource" not in node:
            continue
        ds = node["datasource"]
        if node.get("builtIn") == 1:  # Grafana's own annotations
            continue
        uid = ds.get("uid") if isinstance(ds, dict) else ds
        assert uid in DATASOURCE_REFS, f"{node.get('title') or node.get('name') or node.get('refId')}: {ds}"
    for panel in _walk(dashboard()):
        if panel.get("targets"):
            assert panel.get("datasource", {}).get("uid") in DATASOURCE_REFS, panel["title"]


def test_dashboard_rows_in_order_and_panels_do_not_overlap():
    panels = dashboard()["panels"]
    rows = [p["title"] for p in panels if p["type"] == "row"]
    assert rows == ["Is it healthy?", "Is it keeping up?", "What is it producing?", "Is the model getting better?"]
    cells: dict[tuple[int, int], str] = {}
    ids = set()
    for panel in panels:
        assert panel["id"] not in ids
        ids.add(panel["id"])
        g = panel["gridPos"]
        assert g["x"] + g["w"] <= 24, panel["title"]
        for x in range(g["x"], g["x"] + g["w"]):
            for y in range(g["y"], g["y"] + g["h"]):
                assert (x, y) not in cells, f"{panel['title']} overlaps {cells[(x, y)]}"
                cells[(x, y)] = panel["title"]
        if panel["type"] != "row":
            assert panel["targets"] and all(t["expr"].strip() for t in panel["targets"]), panel["title"]


# --- the compose stack and Grafana provisioning ------------------------------------------------------------------
def test_compose_file_wires_daemon_prometheus_and_grafana():
    compose = yaml.safe_load((MONITORING / "compose.yaml").read_text())
    services = compose["services"]
    daemon, gpu = services["humanstyle"], services["humanstyle-gpu"]
    assert daemon["build"]["context"] == ".." and (MONITORING / daemon["build"]["context"] / "Dockerfile").is_file()
    assert "profiles" not in daemon and gpu["profiles"] == ["gpu"]
    for service in (daemon, gpu):
        assert all(str(p).startswith("127.0.0.1:") for p in service["ports"]), service["ports"]
        assert {v.rsplit(":", 1)[1] for v in service["volumes"]} == {"/data", "/watch"}
    devices = gpu["deploy"]["resources"]["reservations"]["devices"]
    assert devices[0]["driver"] == "nvidia" and "gpu" in devices[0]["capabilities"]
    assert services["prometheus"]["image"].startswith("prom/prometheus")
    assert services["grafana"]["image"].startswith("grafana/grafana")
    for name in ("prometheus", "grafana"):
        assert all(str(p).startswith("127.0.0.1:") for p in services[name]["ports"])
        for volume in services[name]["volumes"]:
            source = volume.split(":")[0]
            if source.startswith("."):
                assert (MONITORING / source).exists(), volume
    # Prometheus scrapes the daemon by the name both variants answer to.
    prom = yaml.safe_load((MONITORING / "prometheus" / "prometheus.yml").read_text())
    job = next(j for j in prom["scrape_configs"] if j["job_name"] == "humanstyle")
    assert job["static_configs"][0]["targets"] == ["humanstyle:9108"]
    assert "humanstyle" in gpu["networks"]["default"]["aliases"]
    # Grafana's dashboard provider reads the folder compose mounts the dashboards into.
    provider = yaml.safe_load((MONITORING / "grafana" / "provisioning" / "dashboards" / "humanstyle.yml")
                              .read_text())["providers"][0]
    mounts = {v.split(":")[1]: v.split(":")[0] for v in services["grafana"]["volumes"] if v.startswith(".")}
    assert mounts[provider["options"]["path"]] == "./grafana/dashboards"
    datasource = yaml.safe_load((MONITORING / "grafana" / "provisioning" / "datasources" / "prometheus.yml")
                                .read_text())["datasources"][0]
    assert datasource["type"] == "prometheus" and datasource["url"] == "http://prometheus:9090"


# --- (c) promtool -----------------------------------------------------------------------------------------------
@pytest.mark.skipif(shutil.which("promtool") is None,
                    reason="promtool not installed (apt-get install prometheus, or run monitoring/check.sh as root)")
@pytest.mark.timeout(120)
def test_promtool_accepts_config_rules_and_alert_tests():
    result = subprocess.run(["bash", str(MONITORING / "check.sh")], capture_output=True, text=True, timeout=110)
    output = result.stdout + result.stderr
    assert result.returncode == 0, output
    assert "SKIP" not in output
    assert "FAILED" not in output and output.count("SUCCESS") >= 5, output
