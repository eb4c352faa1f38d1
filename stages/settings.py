"""Typed settings of the pipeline's stages: every key declared once with its default, its allowed range and a
one-line description.

The daemon's own sections (queues, metrics, supervisor, log), the file loader and the shipped `config.toml` are in
humanstyle's daemon/config.py, which extends `PipelineSettings`; stage logic only ever sees these.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from humanstyle.stages.vocabulary import SEARCH_METHODS

# Keys that moved to another section: a config that still names them is refused with the new name (a silently
# ignored key would run with a default the user did not choose).
MOVED_KEYS = {
    "watch.max_in_flight": "index.max_in_flight",
    "watch.stall_timeout_s": "index.stall_timeout_s",
    "pair.save_rejected": "index.save_rejected",
}


class ConfigError(ValueError):
    """A config file that cannot be used; the message names the offending key."""


class StageFatal(Exception):
    """The stage cannot work with this configuration (missing weights, a checkpoint that does not fit): restarting
    it would not help."""


def opt(default: Any, help: str, *, min: float | None = None, max: float | None = None,
        choices: tuple[str, ...] | None = None, path: bool = False) -> Any:
    """Declare a setting: default, bounds and the description shown in docs and errors."""
    meta = {"help": help, "min": min, "max": max, "choices": choices, "path": path}
    if isinstance(default, list):
        return field(default_factory=lambda: list(default), metadata=meta)
    return field(default=default, metadata=meta)


WEIGHTS_HELP = '"DEFAULT" (torchvision COCO weights via the torch hub cache), a path to a .pth file, or "none"'


@dataclass(frozen=True)
class PathsSettings:
    watch_dir: Path = opt("watch", "folder whose subfolders (one per domain) are watched for new videos", path=True)
    data_dir: Path = opt("data", "patches, catalog, index, checkpoints and samples go here", path=True)
    runtime_dir: str = opt("", "private folder (mode 0700) for ipc:// sockets; empty = a per-user folder in /tmp")

    @property
    def catalog(self) -> Path:
        return self.data_dir / "catalog.sqlite"


@dataclass(frozen=True)
class CatalogSettings:
    url: str = opt("", 'empty = a SQLite file in the data folder (nothing to install); "postgresql://user@host/db" = '
                   "a PostgreSQL server (psycopg 3; the password from PGPASSWORD or ~/.pgpass), for a trainer, status "
                   "or export on other machines")


@dataclass(frozen=True)
class StorageSettings:
    url: str = opt("", "where patches, masks, checkpoints and samples live: empty = the data folder; an fsspec URL "
                   'such as "s3://bucket/prefix" (s3fs; credentials from the AWS_* variables or ~/.aws) to share them '
                   "with machines that have no access to the data folder")
    endpoint_url: str = opt("", "S3 endpoint for S3-compatible servers (MinIO, Ceph, a test server); empty = AWS")
    cache_dir: str = opt("", "folder for local copies of what is read from storage.url (patches never change once "
                         "written, so each is fetched once); empty = <data_dir>/cache")


@dataclass(frozen=True)
class WatchSettings:
    domains: list[str] = opt(["movie", "game"], "exactly two domain names; the first is pix2pix side A")
    stable_s: float = opt(2.0, "a file is ingested once its size and mtime stayed unchanged this long", min=0, max=3600)
    poll_interval_s: float = opt(2.0, "full rescan period; inotify events wake the watcher earlier", min=0.05, max=600)
    extensions: list[str] = opt(
        [".mp4", ".mov", ".mkv", ".avi", ".webm", ".m4v", ".mpg", ".mpeg", ".ts", ".wmv"],
        "file suffixes considered; other files are recorded as failed (not_a_video) once",
    )


@dataclass(frozen=True)
class IndexSettings:
    """The index stage's: how many videos it hands to the decoders at once, when it redoes one, what it writes."""

    max_in_flight: int = opt(2, "videos decoded at once; the rest wait in the catalog (bounds memory)", min=1, max=64)
    stall_timeout_s: float = opt(
        600.0, "a video with no progress for this long is redone (idempotently)", min=10, max=86400)
    save_rejected: bool = opt(True, "also keep patch files of rejected patches (under patches/<domain>/REJECTED)")


@dataclass(frozen=True)
class DecodeSettings:
    workers: int = opt(1, "decoder processes", min=1, max=64)
    anchor_every_s: float = opt(1.0, "seconds of video per window; the window's last frame is the anchor",
                                min=0.04, max=60)
    burst_frames: int = opt(4, "extra frames of the window detected when its anchor has a person", min=0, max=32)
    max_side: int = opt(1280, "frames larger than this on their long side are downsized before detection; 0 = never",
                        min=0, max=8192)


@dataclass(frozen=True)
class DetectSettings:
    weights: str = opt("DEFAULT", f"Mask R-CNN weights: {WEIGHTS_HELP}")
    allow_download: bool = opt(True, "let DEFAULT weights download into the torch hub cache when missing")
    score_threshold: float = opt(0.7, "minimum person score for an anchor hit and for a patch", min=0, max=1)
    patch_size: int = opt(256, "side of the square patches in pixels", min=32, max=1024)
    margin: float = opt(0.15, "extra side around the person box, as a fraction of its longest side", min=0, max=2)
    max_persons: int = opt(4, "persons kept per frame, highest scores first", min=1, max=100)
    min_box_side: int = opt(48, "boxes whose shorter side is below this many frame pixels are skipped",
                            min=1, max=4096)
    min_size: int = opt(512, "model input short side; frames are never upscaled beyond their size", min=128, max=1600)
    max_size: int = opt(912, "model input long-side cap", min=128, max=2667)
    batch_size: int = opt(5, "frames per model call (an anchor with its burst fits in one)", min=1, max=64)
    proposals: int = opt(300, "region proposals per frame for the box head (torchvision: 1000; 300, the Faster R-CNN "
                         "paper's test setting, is much cheaper on a CPU)", min=10, max=2000)
    device: str = opt("auto", '"auto" (CUDA when present), "cpu" or "cuda[:N]"')
    threads: int = opt(0, "torch CPU threads per detector process; 0 = the cores / detect.workers", min=0, max=256)
    workers: int = opt(1, "detector processes", min=1, max=64)


@dataclass(frozen=True)
class ClassifySettings:
    weights: str = opt("DEFAULT", f"Keypoint R-CNN weights: {WEIGHTS_HELP}")
    allow_download: bool = opt(True, "let DEFAULT weights download into the torch hub cache when missing")
    min_keypoint_confidence: float = opt(0.5, "keypoints below this confidence count as not visible", min=0, max=1)
    person_threshold: float = opt(0.3, "minimum score of the person Keypoint R-CNN finds in a patch", min=0, max=1)
    min_person_overlap: float = opt(0.5, "IoU a person Keypoint R-CNN finds needs with the detector's box the patch "
                                    "was cut around; the best-overlapping person is kept, a patch with none is "
                                    "rejected (no_matching_person)", min=0, max=1)
    batch_size: int = opt(1, "patches per model call. 1 on a CPU: larger batches are no faster there, cost memory, and "
                          "make results depend on how patches happened to arrive together; raise it on a GPU",
                          min=1, max=128)
    proposals: int = opt(100, "region proposals per patch for the box head (a patch holds one main person; "
                         "torchvision: 1000)", min=10, max=2000)
    input_size: int = opt(0, "Keypoint R-CNN input side; 0 = the patch's own size. A larger value enlarges patches "
                          "to it as torchvision's default (800) does: slower, for comparisons only", min=0, max=1600)
    device: str = opt("auto", '"auto" (CUDA when present), "cpu" or "cuda[:N]"')
    threads: int = opt(0, "torch CPU threads per classifier process; 0 = the cores / classify.workers", min=0,
                       max=256)
    workers: int = opt(1, "classifier processes", min=1, max=64)


@dataclass(frozen=True)
class PairSettings:
    min_similarity: float = opt(0.99, "pose similarity a pair needs (shared-keypoint fit, mirror included; "
                                      "see README 'Pairing')", min=-1, max=1)
    top_k: int = opt(3, "best matches recorded per new patch", min=1, max=100)
    mutual_best: bool = opt(False, "record a pair only when each patch is the other's best match so far")
    batch: int = opt(256, "patches the pairing stage reads from the catalog at once (one pose search per view and "
                     "domain among them)", min=1, max=65536)
    search: str = opt("auto", '"exact" (score every stored pose), "faiss" (FAISS proposes candidates, the exact score '
                      'decides) or "auto" (faiss once an index holds search_min_rows poses)', choices=SEARCH_METHODS)
    search_min_rows: int = opt(200_000, "stored poses of one domain and view from which auto searches with FAISS "
                               "(below, the exact scan is as fast: bench/README.md)", min=0, max=10**10)
    search_nprobe: int = opt(32, "FAISS lists visited per query", min=1, max=65536)
    search_candidates: int = opt(256, "FAISS candidates per query and orientation, scored exactly", min=1, max=4096)


@dataclass(frozen=True)
class TrainSettings:
    enabled: bool = opt(True, "run the continuous trainer process")
    gpus: int = opt(1, "training processes on this machine, data-parallel (DDP): one per GPU with NCCL, or gloo "
                    "processes on a CPU; 1 = the single-process trainer", min=1, max=64)
    ddp_timeout_s: float = opt(600.0, "a data-parallel process waiting this long for the others gives up (so a "
                               "dead peer cannot hang training forever)", min=10, max=86400)
    device: str = opt("auto", '"auto" (CUDA when present), "cpu" or "cuda[:N]"')
    threads: int = opt(1, "torch CPU threads for training on the CPU", min=1, max=256)
    nice: int = opt(10, "CPU priority increment for the trainer so ingestion keeps up", min=0, max=19)
    amp: bool = opt(True, "mixed precision on CUDA")
    pix2pix_image_size: int = opt(64, "pix2pix training resolution (the PatchGAN needs at least 32)", min=32,
                                  max=1024)
    pix2pix_batch_size: int = opt(32, "pix2pix batch size", min=1, max=1024)
    pix2pix_ngf: int = opt(64, "pix2pix generator width", min=4, max=256)
    pix2pix_ndf: int = opt(64, "pix2pix discriminator width", min=4, max=256)
    cyclegan_image_size: int = opt(200, "CycleGAN training resolution (the PatchGAN needs at least 32)", min=32,
                                   max=1024)
    cyclegan_batch_size: int = opt(1, "CycleGAN batch size", min=1, max=256)
    cyclegan_ngf: int = opt(64, "CycleGAN generator width", min=4, max=256)
    cyclegan_ndf: int = opt(64, "CycleGAN discriminator width", min=4, max=256)
    cyclegan_blocks: int = opt(9, "ResNet blocks in each CycleGAN generator", min=1, max=32)
    lambda_luminance: float = opt(0.0, "weight of a loss matching the mean brightness of outputs to targets "
                                  "(a remedy for dark outputs; 0 = off)", min=0, max=1000)
    min_pairs: int = opt(8, "pix2pix waits until this many pairs exist", min=1, max=1_000_000)
    min_patches: int = opt(8, "CycleGAN waits until each domain has this many patches", min=1, max=1_000_000)
    val_fraction: float = opt(0.1, "share of pairs/patches held out for validation (stable by patch id)",
                              min=0, max=0.5)
    test_fraction: float = opt(0.1, "share of pairs/patches held out as a test set: never trained on, and the test "
                               "split of every export (stable by patch id)", min=0, max=0.5)
    checkpoint_every: int = opt(500, "steps between checkpoints (also written on shutdown)", min=1, max=10_000_000)
    sample_every: int = opt(250, "steps between sample-grid PNGs", min=1, max=10_000_000)
    validate_every: int = opt(250, "steps between validation passes", min=1, max=10_000_000)
    refresh_every_s: float = opt(30.0, "dataset refresh period even without pair events", min=1, max=86400)
    preview_s: float = opt(4.0, "seconds of one watched video per domain rendered by a model after each new best "
                           "checkpoint, shown on the training page (0 = off)", min=0, max=600)
    preview_on_cpu: bool = opt(False, "render previews when training runs on the CPU too (each runs Mask R-CNN on "
                               "every frame: minutes of training time there)")


ROLES = ("all", "coordinator", "ingest")


@dataclass(frozen=True)
class IngestSettings:
    role: str = opt("all", 'what this machine does: "all" (one machine: everything), "coordinator" (watches, splits '
                    'videos into segments, pairs, trains, serves the page; needs catalog.url) or "ingest" (claims '
                    'segments from the shared catalog and decodes, detects and classifies them; needs catalog.url)',
                    choices=ROLES)
    segment_s: float = opt(60.0, "seconds of video per segment, the unit of work a machine claims (whole windows: a "
                           "multiple of decode.anchor_every_s)", min=1, max=86400)
    lease_s: float = opt(30.0, "a segment whose machine did not renew its lease this long goes to another machine",
                         min=3, max=3600)
    name: str = opt("", "this machine's name in the leases (/healthz, the status page); empty = the host name. "
                    "Unique per machine: a restarted machine takes its own segments back at once")


@dataclass(frozen=True)
class PipelineSettings:
    paths: PathsSettings = field(default_factory=PathsSettings)
    catalog: CatalogSettings = field(default_factory=CatalogSettings)
    storage: StorageSettings = field(default_factory=StorageSettings)
    watch: WatchSettings = field(default_factory=WatchSettings)
    index: IndexSettings = field(default_factory=IndexSettings)
    decode: DecodeSettings = field(default_factory=DecodeSettings)
    detect: DetectSettings = field(default_factory=DetectSettings)
    classify: ClassifySettings = field(default_factory=ClassifySettings)
    pair: PairSettings = field(default_factory=PairSettings)
    train: TrainSettings = field(default_factory=TrainSettings)
    ingest: IngestSettings = field(default_factory=IngestSettings)

    @property
    def domains(self) -> tuple[str, str]:
        return tuple(self.watch.domains)  # type: ignore[return-value]
