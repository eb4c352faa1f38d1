"""What the pipeline counts: every Prometheus metric of the stages' work, defined in one place.

The daemon's own metrics (processes up and ready, restarts, queue depths, latency) and the serving of all of them
are in humanstyle's daemon/runtime/metrics.py. In the daemon every process writes through prometheus_client's
multiprocess mode; outside it (tests, `humanstyle extract`) the same objects are plain in-process metrics.

Naming: `humanstyle_` prefix, base units, `_total` for counters, low-cardinality labels.
"""

from __future__ import annotations

from prometheus_client import Counter, Gauge, Histogram

VIDEO_STATUSES = ("queued", "processing", "done", "partial", "failed", "duplicate")

# --- ingestion --------------------------------------------------------------------------------------------------------
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
BACKLOG_SECONDS = Gauge("humanstyle_backlog_video_seconds", "Seconds of footage not ingested yet (pending and leased "
                        "segments), from the catalog: the figure to scale ingest machines on",
                        multiprocess_mode="livemax")
SEGMENTS = Counter("humanstyle_segments", "Segments this machine claimed and finished, by outcome (claimed, done, "
                   "partial, failed, released, lost: its lease ran out and another machine took it)", ["outcome"])
LEASES_TAKEN_OVER = Counter("humanstyle_leases_expired", "Segments this machine claimed after another machine's "
                            "lease on them ran out")

# --- detection and classification -------------------------------------------------------------------------------------
FRAMES_DETECTED = Counter("humanstyle_frames_detected", "Frames run through the person detector",
                          ["domain", "kind"])
PERSONS_DETECTED = Counter("humanstyle_persons_detected", "Persons kept by the detector (above threshold, capped)",
                           ["domain"])
BOXES_SKIPPED = Counter("humanstyle_boxes_skipped", "Person boxes dropped by the detector", ["reason"])
PATCHES = Counter("humanstyle_patches", "Classified patches by view (REJECTED included)", ["domain", "view"])
REJECTIONS = Counter("humanstyle_rejections", "Rejected patches by reason", ["domain", "reason"])
MODEL_CALLS = Counter("humanstyle_model_calls", "Forward passes of the detection models", ["model"])

# --- pairing ----------------------------------------------------------------------------------------------------------
PAIRS = Counter("humanstyle_pairs", "Movie-game pairs recorded", ["view"])
PAIRS_CURATED = Counter("humanstyle_pairs_curated", "Verdicts people gave pairs on the web page (changes only)",
                        ["verdict"])
INDEX_SIZE = Gauge("humanstyle_index_patches", "Patches in the pairing index", ["domain", "view"],
                   multiprocess_mode="livemax")
PAIRING_BACKLOG = Gauge("humanstyle_pairing_backlog_patches", "Kept patches in the catalog not paired yet",
                        multiprocess_mode="livemax")
PAIRING_DELAY = Histogram("humanstyle_pairing_delay_seconds", "From a patch's catalog row to its pairing",
                          buckets=(0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 300, 1800, 3600))
PAIRING_SEARCHES = Counter("humanstyle_pairing_searches", "Batched pose searches, by how candidates were found",
                           ["method"])

# --- units of work refused or failed ----------------------------------------------------------------------------------
MESSAGES_REJECTED = Counter("humanstyle_messages_rejected", "Received messages refused as malformed",
                            ["stage", "reason"])
ERRORS = Counter("humanstyle_errors", "Units of work that failed with an error", ["stage", "kind"])

# --- training ---------------------------------------------------------------------------------------------------------
TRAIN_STEPS = Counter("humanstyle_train_steps", "Optimisation steps", ["model"])
TRAIN_IMAGES = Counter("humanstyle_train_images", "Training images consumed", ["model"])
TRAIN_LOSS = Gauge("humanstyle_train_loss", "Latest value of each loss term", ["model", "term"],
                   multiprocess_mode="mostrecent")
TRAIN_DATASET = Gauge("humanstyle_train_dataset_items", "Items in the training datasets", ["model", "split"],
                      multiprocess_mode="mostrecent")
TRAIN_VAL_L1 = Gauge("humanstyle_train_validation_l1", "Validation L1 of pix2pix", ["model"],
                     multiprocess_mode="mostrecent")
TRAIN_QUALITY = Gauge("humanstyle_train_validation", "The latest validation pass on held-out data, by metric: pix2pix "
                      "l1, psnr (dB), ssim, brightness_gap; CycleGAN cycle_l1 and brightness_gap",
                      ["model", "metric"], multiprocess_mode="mostrecent")
TRAIN_PREVIEWS = Counter("humanstyle_train_previews", "Preview videos rendered after a new best checkpoint, by "
                         "outcome: written, no_video (no finished video of the domain readable yet), failed",
                         ["model", "outcome"])
TRAIN_BRIGHTNESS = Gauge("humanstyle_train_brightness", "Mean brightness in [0,1] of generated vs target images",
                         ["model", "which"], multiprocess_mode="mostrecent")
TRAIN_READY = Gauge("humanstyle_train_ready", "1 when a model has enough data to train", ["model"],
                    multiprocess_mode="mostrecent")
CHECKPOINTS = Counter("humanstyle_checkpoints_written", "Checkpoints written", ["model"])


def train_model_names(domains: tuple[str, ...]) -> tuple[str, str, str]:
    """The trainer's models as metric labels: pix2pix per direction, and CycleGAN (both directions at once)."""
    a, b = domains[:2]
    return f"pix2pix-{a}2{b}", f"pix2pix-{b}2{a}", "cyclegan"
