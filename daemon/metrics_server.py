"""The HTTP side of metrics: /metrics (all processes merged) and /healthz, served beside the web page."""

from __future__ import annotations

import json
import os
from collections.abc import Callable

from prometheus_client import CONTENT_TYPE_LATEST, CollectorRegistry, generate_latest, multiprocess

# Collectors of live state kept outside the metric files, read at each scrape (the head's worker table).
EXTRA_COLLECTORS: list = []


def registry() -> CollectorRegistry:
    if os.environ.get("PROMETHEUS_MULTIPROC_DIR"):
        reg = CollectorRegistry()
        multiprocess.MultiProcessCollector(reg)
        for collector in EXTRA_COLLECTORS:
            reg.register(collector)
        return reg
    from prometheus_client import REGISTRY

    return REGISTRY


def stage_gauges() -> tuple[dict[str, float], dict[str, int]]:
    """Per stage, from the merged metrics: the unix time it last finished a unit of work, and how many of its
    processes are ready."""
    last: dict[str, float] = {}
    ready: dict[str, int] = {}
    for family in registry().collect():
        for sample in family.samples:
            stage = sample.labels.get("stage")
            if not stage:
                continue
            if family.name == "humanstyle_stage_last_work_timestamp_seconds":
                last[stage] = max(last.get(stage, 0.0), sample.value)
            elif family.name == "humanstyle_stage_ready":
                ready[stage] = ready.get(stage, 0) + int(sample.value)
    return last, ready


def register_metrics_routes(app, health: Callable[[], dict]) -> None:
    """/metrics (every process merged) and /healthz (JSON; HTTP 503 unless its status is "ok") on the web app."""
    from flask import Response

    @app.get("/metrics")
    def metrics() -> Response:
        return Response(generate_latest(registry()), 200, {"Content-Type": CONTENT_TYPE_LATEST})

    @app.get("/healthz")
    def healthz() -> Response:
        data = health()
        return Response(json.dumps(data, indent=2), 200 if data["status"] == "ok" else 503,
                        mimetype="application/json")
