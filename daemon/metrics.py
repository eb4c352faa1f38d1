"""Every Prometheus metric of the daemon, defined in one place.

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

VIEWS = ("FULL-BODY-FRONT", "HEAD-AND-SHOULDER-FRONT", "FULL-BODY-BACK", "HEAD-AND-SHOULDER-BACK", "REJECTED")
STAGES = ("watch", "index", "decode", "detect", "classify", "train")
QUEUES = ("discovered", "jobs", "windows", "patches", "classified")
VIDEO_STATUSES = ("queued", "processing", "done", "partial", "failed", "duplicate")
LATENCY_BUCKETS = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 120)

# --- ingestion -------------------------------------------------------------------------------------------------
VIDEOS = Counter("humanstyle_videos", "Videos that entered each status", ["domain", "status"])
FILES_REJECTED = Counter("humanstyle_files_rejected", "Files refused before or while decoding, by reason",
                         ["reason"])
FRAMES_DECODED = Counter("humanstyle_frames_decoded", "Frames converted to images (grab-only frames excluded)",
                         ["domain"])
FRAMES_GRABBED = Counter("humanstyle_frames_grabbed", "Frames read from the stream, converted or not", ["domain"])
WINDOWS_SENT = Counter("humanstyle_windows_sent", "One-second windows sent to the detectors", ["domain"])
DECODE_SECONDS = Counter("humanstyle_decode_seconds", "Wall time spent decoding", ["domain"])
VIDEOS_UNFINISHED = Gauge("humanstyle_videos_unfinished", "Videos queued or processing, from the catalog",
                          ["domain", "status"], multiprocess_mode="livemax")
VIDEO_SECONDS = Counter("humanstyle_video_seconds_ingested", "Seconds of footage fully processed", ["domain"])

# --- detection and classification -----------------------------------------------------------------------------
FRAMES_DETECTED = Counter("humanstyle_frames_detected", "Frames run through the person detector",
                          ["domain", "kind"])
PERSONS_DETECTED = Counter("humanstyle_persons_detected", "Persons kept by the detector (above threshold, capped)",
                           ["domain"])
BOXES_SKIPPED = Counter("humanstyle_boxes_skipped", "Person boxes dropped by the detector", ["reason"])
PATCHES = Counter("humanstyle_patches", "Classified patches by view (REJECTED included)", ["domain", "view"])
REJECTIONS = Counter("humanstyle_rejections", "Rejected patches by reason", ["domain", "reason"])
MODEL_CALLS = Counter("humanstyle_model_calls", "Forward passes of the detection models", ["model"])

# --- pairing ---------------------------------------------------------------------------------------------------
PAIRS = Counter("humanstyle_pairs", "Movie-game pairs recorded", ["view"])
INDEX_SIZE = Gauge("humanstyle_index_patches", "Patches in the pairing index", ["domain", "view"],
                   multiprocess_mode="livemax")

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
MESSAGES_REJECTED = Counter("humanstyle_messages_rejected", "Received messages refused as malformed",
                            ["stage", "reason"])
ERRORS = Counter("humanstyle_errors", "Units of work that failed with an error", ["stage", "kind"])

# --- training --------------------------------------------------------------------------------------------------
TRAIN_STEPS = Counter("humanstyle_train_steps", "Optimisation steps", ["model"])
TRAIN_IMAGES = Counter("humanstyle_train_images", "Training images consumed", ["model"])
TRAIN_LOSS = Gauge("humanstyle_train_loss", "Latest value of each loss term", ["model", "term"],
                   multiprocess_mode="mostrecent")
TRAIN_DATASET = Gauge("humanstyle_train_dataset_items", "Items in the training datasets", ["model", "split"],
                      multiprocess_mode="mostrecent")
TRAIN_VAL_L1 = Gauge("humanstyle_train_validation_l1", "Validation L1 of pix2pix", ["model"],
                     multiprocess_mode="mostrecent")
TRAIN_BRIGHTNESS = Gauge("humanstyle_train_brightness", "Mean brightness in [0,1] of generated vs target images",
                         ["model", "which"], multiprocess_mode="mostrecent")
TRAIN_READY = Gauge("humanstyle_train_ready", "1 when a model has enough data to train", ["model"],
                    multiprocess_mode="mostrecent")
CHECKPOINTS = Counter("humanstyle_checkpoints_written", "Checkpoints written", ["model"])


def init_known_series(domains: tuple[str, ...]) -> None:
    """Create every series whose labels are known at start, at zero."""
    for domain in domains:
        for status in VIDEO_STATUSES:
            VIDEOS.labels(domain, status)
        for kind in ("anchor", "burst"):
            FRAMES_DETECTED.labels(domain, kind)
        for view in VIEWS:
            PATCHES.labels(domain, view)
        for metric in (FRAMES_DECODED, FRAMES_GRABBED, WINDOWS_SENT, DECODE_SECONDS, VIDEO_SECONDS,
                       PERSONS_DETECTED):
            metric.labels(domain)
    for view in VIEWS[:-1]:
        PAIRS.labels(view)
    for stage in STAGES:
        STAGE_RESTARTS.labels(stage)
    for queue in QUEUES:
        QUEUE_MESSAGES.labels(queue)
    for model in train_model_names(domains):
        TRAIN_STEPS.labels(model)


def train_model_names(domains: tuple[str, ...]) -> tuple[str, str, str]:
    """The trainer's models as metric labels: pix2pix per direction, and CycleGAN (both directions at once)."""
    a, b = domains[:2]
    return f"pix2pix-{a}2{b}", f"pix2pix-{b}2{a}", "cyclegan"


def mark_work_done(stage: str, started: float) -> None:
    """Record one finished unit of work of `stage` that began at time.monotonic() `started`."""
    STAGE_SECONDS.labels(stage).observe(time.monotonic() - started)
    STAGE_LAST_WORK.labels(stage).set(time.time())
