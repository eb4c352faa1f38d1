"""Typed settings read from config.toml.

Every key is declared once here with its default, its allowed range and a one-line description; the shipped
`config.toml` and `humanstyle check-config` are generated from / checked against these declarations. A config file
only needs the keys it changes. Errors name the key, the value and what was expected, and happen before anything
starts (the CLI turns `ConfigError` into exit code 2).
"""

from __future__ import annotations

import dataclasses
import tomllib
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, get_type_hints

WEIGHTS_HELP = '"DEFAULT" (torchvision COCO weights via the torch hub cache), a path to a .pth file, or "none"'


class ConfigError(ValueError):
    """A config file that cannot be used; the message names the offending key."""


def opt(default: Any, help: str, *, min: float | None = None, max: float | None = None,
        choices: tuple[str, ...] | None = None, path: bool = False) -> Any:
    """Declare a setting: default, bounds and the description shown in docs and errors."""
    meta = {"help": help, "min": min, "max": max, "choices": choices, "path": path}
    if isinstance(default, list):
        return field(default_factory=lambda: list(default), metadata=meta)
    return field(default=default, metadata=meta)


@dataclass(frozen=True)
class PathsSettings:
    watch_dir: Path = opt("watch", "folder whose subfolders (one per domain) are watched for new videos", path=True)
    data_dir: Path = opt("data", "patches, catalog, index, checkpoints and samples go here", path=True)
    runtime_dir: str = opt("", "private folder (mode 0700) for ipc:// sockets; empty = a per-user folder in /tmp")


@dataclass(frozen=True)
class WatchSettings:
    domains: list[str] = opt(["movie", "game"], "exactly two domain names; the first is pix2pix side A")
    stable_s: float = opt(2.0, "a file is ingested once its size and mtime stayed unchanged this long", min=0, max=3600)
    poll_interval_s: float = opt(2.0, "full rescan period; inotify events wake the watcher earlier", min=0.05, max=600)
    extensions: list[str] = opt(
        [".mp4", ".mov", ".mkv", ".avi", ".webm", ".m4v", ".mpg", ".mpeg", ".ts", ".wmv"],
        "file suffixes considered; other files are recorded as failed (not_a_video) once",
    )
    max_in_flight: int = opt(2, "videos decoded at once; the rest wait in the catalog (bounds memory)", min=1, max=64)
    stall_timeout_s: float = opt(
        600.0, "a video with no progress for this long is redone (idempotently)", min=10, max=86400)


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
    save_rejected: bool = opt(True, "also keep patch files of rejected patches (under patches/<domain>/REJECTED)")


@dataclass(frozen=True)
class TrainSettings:
    enabled: bool = opt(True, "run the continuous trainer process")
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
    checkpoint_every: int = opt(500, "steps between checkpoints (also written on shutdown)", min=1, max=10_000_000)
    sample_every: int = opt(250, "steps between sample-grid PNGs", min=1, max=10_000_000)
    validate_every: int = opt(250, "steps between validation passes", min=1, max=10_000_000)
    refresh_every_s: float = opt(30.0, "dataset refresh period even without pair events", min=1, max=86400)


@dataclass(frozen=True)
class QueueSettings:
    transport: str = opt("ipc", "ipc (private runtime folder) or tcp (stages on other machines)",
                         choices=("ipc", "tcp"))
    tcp_host: str = opt("127.0.0.1", "address tcp endpoints bind to and connect to")
    tcp_base_port: int = opt(5550, "first of the consecutive ports used with transport = tcp", min=1024, max=65000)
    high_water_mark: int = opt(64, "messages a socket buffers before its sender blocks (back-pressure)",
                               min=1, max=100_000)
    window_high_water_mark: int = opt(2, "the same for the decoder->detector queue, whose messages hold several "
                                      "full frames each; small so a long video cannot pile frames up in memory",
                                      min=1, max=100_000)
    max_message_mb: float = opt(64.0, "larger messages are rejected by the receiver", min=1, max=4096)


@dataclass(frozen=True)
class MetricsSettings:
    listen: str = opt("127.0.0.1:9108", '"host:port" of the /metrics and /healthz endpoint')


@dataclass(frozen=True)
class SupervisorSettings:
    restart_backoff_s: float = opt(1.0, "first restart delay; doubles per consecutive crash", min=0, max=600)
    max_backoff_s: float = opt(30.0, "restart delay cap", min=0, max=3600)
    crash_loop_restarts: int = opt(5, "this many crashes of one stage within crash_loop_window_s stop the daemon",
                                   min=1, max=1000)
    crash_loop_window_s: float = opt(60.0, "window for counting crashes", min=1, max=86400)
    shutdown_timeout_s: float = opt(10.0, "drain time on SIGINT/SIGTERM before children are killed",
                                    min=0.5, max=600)


@dataclass(frozen=True)
class LogSettings:
    level: str = opt("INFO", "log level", choices=("DEBUG", "INFO", "WARNING", "ERROR"))


@dataclass(frozen=True)
class Settings:
    paths: PathsSettings = field(default_factory=PathsSettings)
    watch: WatchSettings = field(default_factory=WatchSettings)
    decode: DecodeSettings = field(default_factory=DecodeSettings)
    detect: DetectSettings = field(default_factory=DetectSettings)
    classify: ClassifySettings = field(default_factory=ClassifySettings)
    pair: PairSettings = field(default_factory=PairSettings)
    train: TrainSettings = field(default_factory=TrainSettings)
    queues: QueueSettings = field(default_factory=QueueSettings)
    metrics: MetricsSettings = field(default_factory=MetricsSettings)
    supervisor: SupervisorSettings = field(default_factory=SupervisorSettings)
    log: LogSettings = field(default_factory=LogSettings)
    source: Path | None = None  # the file these settings came from (None = built-in defaults)

    @property
    def domains(self) -> tuple[str, str]:
        return tuple(self.watch.domains)  # type: ignore[return-value]


SECTIONS: dict[str, type] = {f.name: f.type for f in dataclasses.fields(Settings) if f.name != "source"}


def _section_types() -> dict[str, type]:
    hints = get_type_hints(Settings)
    return {name: hints[name] for name in SECTIONS}


def _check_value(key: str, raw: Any, fld: dataclasses.Field, hint: Any, base: Path) -> Any:
    meta = fld.metadata
    expected = getattr(hint, "__name__", str(hint))
    if hint is bool:
        if not isinstance(raw, bool):
            raise ConfigError(f"{key} = {raw!r}: expected true or false")
        return raw
    if hint in (int, float):
        if isinstance(raw, bool) or not isinstance(raw, (int, float)) or (hint is int and isinstance(raw, float)):
            raise ConfigError(f"{key} = {raw!r}: expected {'an integer' if hint is int else 'a number'}")
        lo, hi = meta.get("min"), meta.get("max")
        if (lo is not None and raw < lo) or (hi is not None and raw > hi):
            raise ConfigError(f"{key} = {raw!r}: expected a value in [{lo}, {hi}] ({meta['help']})")
        return hint(raw)
    if hint is Path:
        if not isinstance(raw, str) or not raw:
            raise ConfigError(f"{key} = {raw!r}: expected a non-empty path string")
        p = Path(raw).expanduser()
        return p if p.is_absolute() else (base / p)
    if hint is str:
        if not isinstance(raw, str):
            raise ConfigError(f"{key} = {raw!r}: expected a string ({meta['help']})")
        choices = meta.get("choices")
        if choices and raw not in choices:
            raise ConfigError(f"{key} = {raw!r}: expected one of {', '.join(choices)}")
        return raw
    if getattr(hint, "__origin__", None) is list:
        if not isinstance(raw, list) or not all(isinstance(x, str) for x in raw):
            raise ConfigError(f"{key} = {raw!r}: expected a list of strings")
        return list(raw)
    raise ConfigError(f"{key}: unsupported type {expected}")  # pragma: no cover - declaration bug


def _cross_checks(s: Settings) -> None:
    import re

    domains = s.watch.domains
    if len(domains) != 2 or len(set(domains)) != 2:
        raise ConfigError(f"watch.domains = {domains!r}: expected exactly two different names")
    for d in domains:
        if not re.fullmatch(r"[A-Za-z0-9_-]{1,32}", d):
            raise ConfigError(f"watch.domains: {d!r} is not a plain folder name (letters, digits, _ and -)")
    for section in ("detect", "classify"):
        w = getattr(s, section).weights
        if not w:
            raise ConfigError(f'{section}.weights = "": expected {WEIGHTS_HELP}')
    parse_listen(s.metrics.listen, key="metrics.listen")
    for section in ("detect", "classify", "train"):
        dev = getattr(s, section).device
        if not re.fullmatch(r"auto|cpu|cuda(:\d+)?", dev):
            raise ConfigError(f'{section}.device = {dev!r}: expected "auto", "cpu" or "cuda[:N]"')
    if s.detect.max_size < s.detect.min_size:
        raise ConfigError(f"detect.max_size = {s.detect.max_size}: expected >= detect.min_size ({s.detect.min_size})")


def parse_listen(value: str, key: str = "metrics.listen") -> tuple[str, int]:
    host, sep, port = value.rpartition(":")
    if not sep or not host or not port.isdigit() or not 0 < int(port) < 65536:
        raise ConfigError(f'{key} = {value!r}: expected "host:port", e.g. "127.0.0.1:9108"')
    return host.strip("[]"), int(port)


def from_dict(data: dict[str, Any], base: Path, source: Path | None = None) -> Settings:
    """Validate a parsed TOML document into Settings; relative paths resolve against `base`."""
    sections = _section_types()
    unknown = sorted(set(data) - set(sections))
    if unknown:
        raise ConfigError(f"unknown section [{unknown[0]}]: expected one of {', '.join(sections)}")
    built: dict[str, Any] = {}
    for name, cls in sections.items():
        raw_section = data.get(name, {})
        if not isinstance(raw_section, dict):
            raise ConfigError(f"{name} = {raw_section!r}: expected a [{name}] table")
        fields = {f.name: f for f in dataclasses.fields(cls)}
        hints = get_type_hints(cls)
        unknown_keys = sorted(set(raw_section) - set(fields))
        if unknown_keys:
            raise ConfigError(f"unknown key {name}.{unknown_keys[0]}: [{name}] accepts {', '.join(fields)}")
        values = {}
        for key, fld in fields.items():
            raw = raw_section.get(key, _default(fld))
            values[key] = _check_value(f"{name}.{key}", raw, fld, hints[key], base)
        built[name] = cls(**values)
    settings = Settings(**built, source=source)
    _cross_checks(settings)
    return settings


def _default(fld: dataclasses.Field) -> Any:
    value = fld.default if fld.default is not dataclasses.MISSING else fld.default_factory()  # type: ignore[misc]
    return str(value) if isinstance(value, Path) else value


def load(path: str | Path | None) -> Settings:
    """Read and validate a config file; None means the built-in defaults relative to the working folder."""
    if path is None:
        return from_dict({}, Path.cwd())
    path = Path(path).expanduser().resolve()
    try:
        with open(path, "rb") as fh:
            data = tomllib.load(fh)
    except FileNotFoundError:
        raise ConfigError(f"config file {path} does not exist") from None
    except tomllib.TOMLDecodeError as exc:
        raise ConfigError(f"{path}: not valid TOML: {exc}") from None
    return from_dict(data, path.parent, source=path)


def describe() -> list[tuple[str, Any, str, str]]:
    """(key, default, range/choices, description) for every setting, in declaration order."""
    rows = []
    for name, cls in _section_types().items():
        for fld in dataclasses.fields(cls):
            meta = fld.metadata
            if meta.get("choices"):
                rng = " | ".join(meta["choices"])
            elif meta.get("min") is not None or meta.get("max") is not None:
                rng = f"[{meta.get('min')}, {meta.get('max')}]"
            else:
                rng = ""
            rows.append((f"{name}.{fld.name}", _default(fld), rng, meta["help"]))
    return rows


def to_toml(settings: Settings) -> str:
    """The effective settings as TOML, with each key's description as a comment."""
    lines: list[str] = []
    for name in SECTIONS:
        section = getattr(settings, name)
        lines.append(f"[{name}]")
        for fld in dataclasses.fields(section):
            lines.append(f"# {fld.metadata['help']}")
            lines.append(f"{fld.name} = {_toml_value(getattr(section, fld.name))}")
        lines.append("")
    return "\n".join(lines)


def _toml_value(v: Any) -> str:
    import json

    if isinstance(v, bool):
        return "true" if v else "false"
    if isinstance(v, (int, float)):
        return repr(v)
    if isinstance(v, Path):
        return json.dumps(str(v))
    if isinstance(v, list):
        return "[" + ", ".join(json.dumps(x) for x in v) + "]"
    return json.dumps(v)


def default_toml() -> str:
    """The shipped config.toml: every key at its default, with its description and range."""
    lines = ["# humanstyle configuration. Every key is optional: a missing key takes the default shown here.",
             "# Relative paths resolve against this file's folder. Check a file with: humanstyle check-config -c FILE",
             ""]
    rows = describe()
    for name in SECTIONS:
        lines.append(f"[{name}]")
        for key, default, rng, help_ in rows:
            section, _, short = key.partition(".")
            if section == name:
                lines.append(f"# {help_}" + (f"; allowed: {rng}" if rng else ""))
                lines.append(f"{short} = {_toml_value(default)}")
        lines.append("")
    return "\n".join(lines)
