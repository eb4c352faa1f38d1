"""The HTTP side of metrics: /metrics (all processes merged) and /healthz, served beside the web page."""

from __future__ import annotations

import glob
import json
import logging
import os
from collections.abc import Callable

from prometheus_client import CONTENT_TYPE_LATEST, CollectorRegistry, generate_latest
from prometheus_client.multiprocess import MultiProcessCollector

log = logging.getLogger("humanstyle.metrics")

class MetricFiles:
    """prometheus_client's multiprocess merge, less the files a process has created but not yet sized.

    A process creates its metric file and sizes it a moment later; read in between, the empty file raises
    struct.error in prometheus_client and takes the whole scrape with it (HTTP 500 on /metrics and /healthz while
    stages start; for good if a process is killed in that window; prometheus/client_python#1199, open). An empty
    file holds no sample, so leaving it out loses nothing."""

    def __init__(self, path: str) -> None:
        self.path = path

    def collect(self):
        for attempt in range(3):
            files = [f for f in glob.glob(os.path.join(self.path, "*.db")) if _sized(f)]
            try:
                return MultiProcessCollector.merge(files, accumulate=True)
            except FileNotFoundError:  # a dead process's file removed between listing and reading: list again
                if attempt == 2:
                    raise


def _sized(path: str) -> bool:
    try:
        return os.stat(path).st_size > 0
    except FileNotFoundError:
        return False


def registry() -> CollectorRegistry:
    """Every process's metrics merged."""
    if path := os.environ.get("PROMETHEUS_MULTIPROC_DIR"):
        reg = CollectorRegistry()
        reg.register(MetricFiles(path))
        return reg
    from prometheus_client import REGISTRY

    return REGISTRY


def process_samples() -> list:
    """The samples of every process's metrics, merged: what /healthz reads, collected once per call (merging reads
    every process's metric file)."""
    return [sample for family in registry().collect() for sample in family.samples]


def stage_gauges(samples: list) -> tuple[dict[str, float], dict[str, int]]:
    """Per stage, from the merged samples: the unix time it last finished a unit of work, and how many of its
    processes are ready."""
    last: dict[str, float] = {}
    ready: dict[str, int] = {}
    for sample in samples:
        stage = sample.labels.get("stage")
        if not stage:
            continue
        if sample.name == "humanstyle_stage_last_work_timestamp_seconds":
            last[stage] = max(last.get(stage, 0.0), sample.value)
        elif sample.name == "humanstyle_stage_ready":
            ready[stage] = ready.get(stage, 0) + int(sample.value)
    return last, ready


def gauge_value(samples: list, name: str) -> float | None:
    """The largest value of an unlabelled gauge among the merged samples (None when no process set it yet)."""
    values = [sample.value for sample in samples if sample.name == name]
    return max(values) if values else None


def register_metrics_routes(app, health: Callable[[], dict]) -> None:
    """/metrics (every process merged) and /healthz (JSON; HTTP 503 unless its status is "ok") on the web app."""
    from flask import Response

    @app.get("/metrics")
    def metrics() -> Response:
        return Response(generate_latest(registry()), 200, {"Content-Type": CONTENT_TYPE_LATEST})

    @app.get("/healthz")
    def healthz() -> Response:
        try:
            data = health()
        except Exception as exc:  # a probe and a person both read JSON; the traceback goes to the log
            log.exception("/healthz could not be computed")
            return Response(json.dumps({"status": "error", "error": f"{type(exc).__name__}: {exc}"}), 500,
                            mimetype="application/json")
        return Response(json.dumps(data, indent=2), 200 if data["status"] == "ok" else 503,
                        mimetype="application/json")
