"""Metrics of scaling out: the head's work queue and backlog, bytes on the wire, refused connections, and a worker's
link to its head. Per-worker series (name, host, last seen, windows in flight and done) are not here: they come from
the head's worker table at each scrape (daemon.head.WorkerTableCollector), so a worker that left for good does not
stay in /metrics forever.

Same conventions as daemon/metrics.py: `humanstyle_` prefix, base units, `_total` for counters, multiprocess-safe.
"""

from __future__ import annotations

from prometheus_client import Counter, Gauge

BACKLOG = Gauge("humanstyle_backlog_video_seconds", "Seconds of footage the head has not finished yet: queued videos "
                "and the rest of those in progress (the figure to scale workers on)", multiprocess_mode="livemax")
WORKERS = Gauge("humanstyle_remote_workers", "Workers connected to the head", multiprocess_mode="livemax")
QUEUED = Gauge("humanstyle_remote_queued", "Items compressed and waiting at the head for a worker", ["kind"],
               multiprocess_mode="livemax")
IN_FLIGHT = Gauge("humanstyle_remote_in_flight", "Items handed to workers and not returned yet",
                  multiprocess_mode="livemax")
ITEMS = Counter("humanstyle_remote_items", "Remote work items by what happened to them", ["kind", "outcome"])
BYTES = Counter("humanstyle_remote_bytes", "Bytes of messages between head and workers, as seen by this process "
                "(sent or received)", ["direction"])
REFUSED = Counter("humanstyle_remote_refused", "Connections refused: on the head, a worker key not authorized "
                  "(unknown_key), a failed handshake (handshake: a wrong head key, or no CURVE) or model settings "
                  "that differ from the head's (settings); on a worker, refusals by its head", ["reason"])
HEAD_CONNECTED = Gauge("humanstyle_worker_head_connected", "1 while the head answers this worker",
                       multiprocess_mode="livemax")
WORKER_ITEMS = Counter("humanstyle_worker_items", "Items this worker finished and returned", ["kind"])

ITEM_OUTCOMES = ("dispatched", "done", "redone", "duplicate", "bad_result", "abandoned")


def init_head_series() -> None:
    for kind in ("window", "patches"):
        QUEUED.labels(kind)
        for outcome in ITEM_OUTCOMES:
            ITEMS.labels(kind, outcome)
    for direction in ("sent", "received"):
        BYTES.labels(direction)
    for reason in ("unknown_key", "handshake", "settings"):
        REFUSED.labels(reason)
    BACKLOG.set(0)
    WORKERS.set(0)
    IN_FLIGHT.set(0)


def init_worker_series() -> None:
    for direction in ("sent", "received"):
        BYTES.labels(direction)
    for reason in ("unknown_key", "handshake"):
        REFUSED.labels(reason)
    for kind in ("window", "patches"):
        WORKER_ITEMS.labels(kind)
    HEAD_CONNECTED.set(0)
