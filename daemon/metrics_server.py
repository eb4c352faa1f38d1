"""The HTTP side of metrics: /metrics (all processes merged) and /healthz."""

from __future__ import annotations

import json
import os
from collections.abc import Callable
from http.server import BaseHTTPRequestHandler

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


def make_handler(health: Callable[[], dict]) -> type[BaseHTTPRequestHandler]:
    class Handler(BaseHTTPRequestHandler):
        def do_GET(self) -> None:  # noqa: N802 - http.server's naming
            path = self.path.split("?", 1)[0]
            if path == "/metrics":
                body, ctype, code = generate_latest(registry()), CONTENT_TYPE_LATEST, 200
            elif path == "/healthz":
                data = health()
                body = json.dumps(data, indent=2).encode()
                ctype, code = "application/json", 200 if data["status"] == "ok" else 503
            else:
                body, ctype, code = b"not found: try /metrics or /healthz\n", "text/plain", 404
            self.send_response(code)
            self.send_header("Content-Type", ctype)
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def log_message(self, *_args: object) -> None:  # scrapes every few seconds would flood the log
            pass

    return Handler
