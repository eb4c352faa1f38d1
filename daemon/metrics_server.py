"""The HTTP side of metrics: /metrics (all processes merged) and /healthz."""

from __future__ import annotations

import json
import os
from collections.abc import Callable
from http.server import BaseHTTPRequestHandler

from prometheus_client import CONTENT_TYPE_LATEST, CollectorRegistry, generate_latest, multiprocess


def registry() -> CollectorRegistry:
    if os.environ.get("PROMETHEUS_MULTIPROC_DIR"):
        reg = CollectorRegistry()
        multiprocess.MultiProcessCollector(reg)
        return reg
    from prometheus_client import REGISTRY

    return REGISTRY


def last_work_times() -> dict[str, float]:
    """stage -> unix time it last finished a unit of work, read from the merged metrics."""
    out: dict[str, float] = {}
    for family in registry().collect():
        if family.name == "humanstyle_stage_last_work_timestamp_seconds":
            for sample in family.samples:
                stage = sample.labels.get("stage")
                if stage:
                    out[stage] = max(out.get(stage, 0.0), sample.value)
    return out


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
