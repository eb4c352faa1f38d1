"""Typed settings read from config.toml: the pipeline's sections (declared in stages.settings) and the daemon's own
(queues, metrics, supervisor, log), the loader and the shipped file.

Every key is declared once with its default, its allowed range and a one-line description; the shipped
`config.toml` and `humanstyle check-config` are generated from / checked against these declarations. A config file
only needs the keys it changes. Errors name the key, the value and what was expected, and happen before anything
starts (the CLI turns `ConfigError` into exit code 2).
"""

from __future__ import annotations

import dataclasses
import ipaddress
import os
import tomllib
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, get_type_hints

from humanstyle.stages.settings import (  # noqa: F401 - ConfigError and the sections are part of this module's interface
    MOVED_KEYS,
    WEIGHTS_HELP,
    ClassifySettings,
    ConfigError,
    DecodeSettings,
    DetectSettings,
    IndexSettings,
    PairSettings,
    PathsSettings,
    PipelineSettings,
    TrainSettings,
    WatchSettings,
    opt,
)


@dataclass(frozen=True)
class QueueSettings:
    transport: str = opt("ipc", "ipc (private runtime folder) or tcp (on loopback, where ipc sockets cannot be used)",
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
    listen: str = opt("127.0.0.1:9108", '"host:port" of the web page, /metrics and /healthz')
    web: bool = opt(True, "serve the web page (pairs, rejections, training) at / beside /metrics and /healthz")
    write_token: str = opt("", "secret a browser must send to mark pairs good or bad when listen is not on loopback "
                           "(empty: curation is off there); on loopback the page's CSRF token is enough")


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
class Settings(PipelineSettings):
    """The pipeline's sections (stages.settings) and the daemon's own."""

    queues: QueueSettings = field(default_factory=QueueSettings)
    metrics: MetricsSettings = field(default_factory=MetricsSettings)
    supervisor: SupervisorSettings = field(default_factory=SupervisorSettings)
    log: LogSettings = field(default_factory=LogSettings)
    source: Path | None = None  # the file these settings came from (None = built-in defaults)


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
        if meta.get("path") and raw:  # an optional path: "" = unset
            p = Path(raw).expanduser()
            return str(p if p.is_absolute() else base / p)
        return raw
    if getattr(hint, "__origin__", None) is list:
        if not isinstance(raw, list) or not all(isinstance(x, str) for x in raw):
            raise ConfigError(f"{key} = {raw!r}: expected a list of strings")
        return list(raw)
    raise ConfigError(f"{key}: unsupported type {expected}")  # pragma: no cover - declaration bug


def cross_check(s: Settings) -> None:
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
    if s.catalog.url and not s.catalog.url.startswith(("postgresql://", "postgres://")):
        raise ConfigError(f"catalog.url = {s.catalog.url!r}: expected empty (SQLite in the data folder) or a "
                          "postgresql:// URL")
    if s.storage.url and not re.fullmatch(r"[a-z][a-z0-9+.-]*://.+", s.storage.url):
        raise ConfigError(f"storage.url = {s.storage.url!r}: expected empty (the data folder) or an fsspec URL such "
                          'as "s3://bucket/prefix"')
    if s.catalog.url:
        check_catalog_tls(s.catalog.url)
    if s.ingest.role != "all" and not s.catalog.url:
        raise ConfigError(f'ingest.role = "{s.ingest.role}": machines share their work through the catalog, so '
                          'catalog.url must name a PostgreSQL server ("postgresql://user@host/db")')
    windows = s.ingest.segment_s / s.decode.anchor_every_s
    if abs(windows - round(windows)) > 1e-6:
        raise ConfigError(f"ingest.segment_s = {s.ingest.segment_s}: expected a multiple of decode.anchor_every_s "
                          f"({s.decode.anchor_every_s}), so that no window straddles two segments")
    if s.detect.max_size < s.detect.min_size:
        raise ConfigError(f"detect.max_size = {s.detect.max_size}: expected >= detect.min_size ({s.detect.min_size})")
    q = s.queues
    if q.transport == "tcp" and not is_loopback(q.tcp_host):
        raise ConfigError(f"queues.tcp_host = {q.tcp_host!r} is not a loopback address: the queues join the processes "
                          "of one machine and are not encrypted; keep them on 127.0.0.1. Machines share work through "
                          "the catalog (ingest.role, catalog.url)")


def check_catalog_tls(url: str) -> None:
    """A catalog on another machine is reached over TLS that verifies the server (sslmode=verify-full), unless the
    URL or libpq's PGSSLMODE says otherwise explicitly: libpq's own default ("prefer") takes any certificate, or
    none, without a word."""
    from urllib.parse import parse_qs, urlsplit

    parts = urlsplit(url)
    host = parts.hostname or ""
    if not host or host.startswith("/") or is_loopback(host) or "sslmode" in parse_qs(parts.query):
        return
    if os.environ.get("PGSSLMODE"):
        return
    raise ConfigError(f"catalog.url names {host}, another machine, without sslmode: add ?sslmode=verify-full (TLS "
                      "that checks the server's certificate; the CA from PGSSLROOTCERT, the password from PGPASSWORD), "
                      "or say another sslmode explicitly")


def is_loopback(host: str) -> bool:
    """True for addresses only this machine can reach. Host names other than localhost count as reachable."""
    host = host.strip("[]")
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


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
        moved = [f"{name}.{k}" for k in unknown_keys if f"{name}.{k}" in MOVED_KEYS]
        if moved:
            new = MOVED_KEYS[moved[0]]
            raise ConfigError(f"{moved[0]} is now {new}: move it to the [{new.split('.')[0]}] section")
        if unknown_keys:
            raise ConfigError(f"unknown key {name}.{unknown_keys[0]}: [{name}] accepts {', '.join(fields)}")
        values = {}
        for key, fld in fields.items():
            raw = raw_section.get(key, _default(fld))
            values[key] = _check_value(f"{name}.{key}", raw, fld, hints[key], base)
        built[name] = cls(**values)
    settings = Settings(**built, source=source)
    cross_check(settings)
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
