"""The daemon's own metrics (stage processes up and ready, restarts, queue depths, latency per unit of work) and the
zero-initialisation of every series whose labels are known at start. What the stages count is in
stages/counters.py; /metrics serves both (daemon/web/metrics_server.py).

All stage processes write through prometheus_client's multiprocess mode: the supervisor points
PROMETHEUS_MULTIPROC_DIR at a private folder before any child starts (prometheus_client reads it at import time),
and serves the merged view on /metrics. Outside the daemon (tests, `humanstyle extract`) the same objects are plain
in-process metrics.

Naming: `humanstyle_` prefix, base units, `_total` for counters, low-cardinality labels. Series whose label values
are known at start are initialised at zero by `init_known_series` so dashboards and alerts see them immediately.
"""

from __future__ import annotations

import time

from prometheus_client import Counter, Gauge, Histogram

from humanstyle.stages.counters import (
    DECODE_SECONDS,
    FILES_REJECTED,
    FRAMES_DECODED,
    FRAMES_DETECTED,
    FRAMES_GRABBED,
    MESSAGES_REJECTED,
    PAIRS,
    PAIRS_CURATED,
    PATCHES,
    PERSONS_DETECTED,
    REJECTIONS,
    TRAIN_STEPS,
    VIDEO_SECONDS,
    VIDEO_STATUSES,
    VIDEOS,
    WINDOWS_SENT,
    train_model_names,
)
from humanstyle.stages.vocabulary import FILE_REASONS, LABELS, MESSAGE_REASONS, PATCH_REASONS, VERDICTS, VIEWS

STAGES = ("watch", "index", "pairing", "decode", "detect", "classify", "train")
RECEIVING_STAGES = ("index", "decode", "detect", "classify", "train")  # the stages with input queues
QUEUES = ("discovered", "jobs", "windows", "patches", "classified")
LATENCY_BUCKETS = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 120)

# --- the process fabric ----------------------------------------------------------------------------------------
STAGE_RESTARTS = Counter("humanstyle_stage_restarts", "Stage processes restarted after they died", ["stage"])
STAGE_UP = Gauge("humanstyle_stage_up", "Stage processes running", ["stage"], multiprocess_mode="livesum")
STAGE_SECONDS = Histogram("humanstyle_stage_seconds", "Time to process one unit of work", ["stage"],
                          buckets=LATENCY_BUCKETS)
STAGE_PROCESSES = Gauge("humanstyle_stage_processes", "Processes configured per stage", ["stage"],
                        multiprocess_mode="max")
STAGE_READY = Gauge("humanstyle_stage_ready", "Stage processes that finished starting (sockets up, models loaded)",
                    ["stage"], multiprocess_mode="livesum")
STAGE_LAST_WORK = Gauge("humanstyle_stage_last_work_timestamp_seconds",
                        "Unix time a stage last finished a unit of work", ["stage"], multiprocess_mode="max")
QUEUE_MESSAGES = Gauge("humanstyle_queue_messages", "Messages sent on a queue and not yet received",
                       ["queue"], multiprocess_mode="sum")


def init_known_series(domains: tuple[str, ...]) -> None:
    """Create every series whose labels are known at start, at zero."""
    for domain in domains:
        for status in VIDEO_STATUSES:
            VIDEOS.labels(domain, status)
        for kind in ("anchor", "burst"):
            FRAMES_DETECTED.labels(domain, kind)
        for view in LABELS:
            PATCHES.labels(domain, view)
        for reason in PATCH_REASONS:
            REJECTIONS.labels(domain, reason)
        for metric in (FRAMES_DECODED, FRAMES_GRABBED, WINDOWS_SENT, DECODE_SECONDS, VIDEO_SECONDS,
                       PERSONS_DETECTED):
            metric.labels(domain)
    for view in VIEWS:
        PAIRS.labels(view)
    for stage in STAGES:
        STAGE_RESTARTS.labels(stage)
        STAGE_SECONDS.labels(stage)
    for stage in RECEIVING_STAGES:
        for reason in MESSAGE_REASONS:
            MESSAGES_REJECTED.labels(stage, reason)
    for reason in FILE_REASONS:
        FILES_REJECTED.labels(reason)
    for verdict in VERDICTS:
        PAIRS_CURATED.labels(verdict)
    for queue in QUEUES:
        QUEUE_MESSAGES.labels(queue)
    for model in train_model_names(domains):
        TRAIN_STEPS.labels(model)


def mark_work_done(stage: str, started: float) -> None:
    """Record one finished unit of work of `stage` that began at time.monotonic() `started`."""
    STAGE_SECONDS.labels(stage).observe(time.monotonic() - started)
    STAGE_LAST_WORK.labels(stage).set(time.time())
