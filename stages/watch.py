"""Finding new videos in the watch folder: scanning, stability, fingerprints, and a watcher that wakes early.

The functions and classes above the stage loop (at the end of the file) are pure of sockets, catalog and config:
they take plain arguments; the loop does the bookkeeping.

Decisions
- Layout: watch_dir/<domain>/... ; each immediate subfolder named exactly like a domain is that domain and
  every file at any depth below it belongs to it. Files elsewhere are ignored.
- Skipped names (files and folders): hidden ('.name', also rsync's temp files), '~name' and 'name~'
  (office locks, backups), and download/copy temp suffixes (TEMP_SUFFIXES). Only regular files are
  reported: a FIFO or device would block or never end.
- Symlinks are followed only when their fully resolved target lies inside the resolved watch folder; that
  holds for a domain folder that is itself a link too (a domain kept on another disk should be mounted,
  not linked). Each real directory and file is visited once per scan (by device and inode), so link loops
  end and a file reachable by two paths is reported once (under the path found first: depth first, by name).
- Names are untrusted data: they are only ever passed to os/pathlib calls, never to a shell, and any
  bytes the OS allows work (spaces, newlines, '$(...)', '%d', unicode; undecodable bytes arrive as
  surrogate escapes, so callers that store or send a path as UTF-8 text should use os.fsencode()).
- Stability: a file is ready once its (size, mtime) has not changed for stable_s seconds across scans. A
  zero-byte file waits empty_stable_s (default 3 x stable_s, since copy tools often create the file before
  the first byte arrives) and is then reported like any other; the probe rejects it as "empty_file". A file
  that changes after it was reported is reported again when stable again (the fingerprint tells the
  caller whether it is new content).
- Fingerprint: sha256 over the size and FINGERPRINT_SAMPLES (9) evenly spaced 64 KiB samples (first, middle and
  last bytes included); files up to the sample total are hashed whole. Reads at most 576 KiB, so a 50 GB file
  costs as much as a small one. Trade-off: two files of equal size that differ only between samples
  collide. For video that needs in-place edits of the coded data with the size unchanged (re-encodes and
  remuxes change the size; metadata lives in the sampled start/end), which we accept.
- Watcher: the periodic scan is the source of truth; watchdog events only wake it early (and are
  debounced to at most one scan per min_rescan_s). If the observer cannot start (no inotify, watch limit
  reached, folder missing) or dies, the watcher keeps polling and retries the observer every
  OBSERVER_RETRY_S.
"""

from __future__ import annotations

import hashlib
import logging
import os
import stat
import threading
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from humanstyle.stages.handler import Handler, Outbox
from humanstyle.stages.records import Discovered
from humanstyle.stages.settings import PipelineSettings
from humanstyle.stages.store.catalog import Catalog, CatalogError, catalog_errors, catalog_exists, open_catalog

log = logging.getLogger(__name__)

TEMP_SUFFIXES = (".part", ".partial", ".crdownload", ".download", ".opdownload", ".tmp", ".temp", ".filepart",
                 ".!qb", ".!ut", ".aria2", ".swp")
FINGERPRINT_SAMPLES = 9  # odd, so one sample sits exactly in the middle
FINGERPRINT_SAMPLE_BYTES = 64 * 1024
OBSERVER_RETRY_S = 30.0


@dataclass(frozen=True)
class Candidate:
    path: Path  # absolute, as found under the watch folder (not resolved through links)
    domain: str
    size: int
    mtime: float


def is_ignored_name(name: str) -> bool:
    """Hidden, lock/backup or in-progress-download names."""
    return name.startswith((".", "~")) or name.endswith("~") or name.lower().endswith(TEMP_SUFFIXES)


def fingerprint(path: str | os.PathLike[str]) -> str:
    """Hex sha256 of the size and sampled content (see module docstring); raises OSError/ValueError."""
    # O_NONBLOCK: opening a FIFO put in place of the file must fail fast rather than hang.
    fd = os.open(path, os.O_RDONLY | os.O_NONBLOCK)
    with os.fdopen(fd, "rb") as f:
        st = os.fstat(fd)
        if not stat.S_ISREG(st.st_mode):
            raise ValueError(f"not a regular file: {os.fspath(path)!r}")
        size = st.st_size
        h = hashlib.sha256(b"humanstyle-fingerprint-v1\0" + size.to_bytes(8, "big"))
        n, chunk = FINGERPRINT_SAMPLES, FINGERPRINT_SAMPLE_BYTES
        if size <= n * chunk:
            h.update(f.read(size))
        else:
            for k in range(n):
                f.seek((size - chunk) * k // (n - 1))
                h.update(f.read(chunk))
    return h.hexdigest()


def scan(watch_dir: str | os.PathLike[str], domains: Iterable[str]) -> list[Candidate]:
    """Every regular, non-temporary file under watch_dir/<domain>/, sorted by path; [] if watch_dir is missing."""
    base = os.path.abspath(watch_dir)
    root = os.path.realpath(base)
    if not os.path.isdir(root):
        return []
    seen: set[tuple[int, int]] = set()
    found: list[Candidate] = []
    for domain in domains:
        if not domain or domain in (".", "..") or "/" in domain or is_ignored_name(domain):
            raise ValueError(f"bad domain name {domain!r}")
        top = os.path.join(base, domain)
        st = _contained_stat(top, root)
        if st is None or not stat.S_ISDIR(st.st_mode):
            continue
        seen.add((st.st_dev, st.st_ino))
        stack = [top]
        while stack:
            folder = stack.pop()
            try:
                with os.scandir(folder) as it:
                    entries = sorted(it, key=lambda e: e.name)
            except OSError as e:
                log.debug("cannot list %r: %s", folder, e)
                continue
            subfolders = []
            for entry in entries:
                if is_ignored_name(entry.name):
                    continue
                st = _contained_stat(entry.path, root) if entry.is_symlink() else _stat(entry.path)
                if st is None or (st.st_dev, st.st_ino) in seen:
                    continue
                if stat.S_ISDIR(st.st_mode):
                    seen.add((st.st_dev, st.st_ino))
                    subfolders.append(entry.path)
                elif stat.S_ISREG(st.st_mode):
                    seen.add((st.st_dev, st.st_ino))
                    found.append(Candidate(Path(entry.path), domain, st.st_size, st.st_mtime))
            stack.extend(reversed(subfolders))  # depth first, in name order
    found.sort(key=lambda c: c.path)
    return found


def _stat(path: str) -> os.stat_result | None:
    try:
        return os.stat(path)
    except OSError:
        return None  # vanished, dangling or unreadable: the next scan will see


def _contained_stat(path: str, root: str) -> os.stat_result | None:
    """stat of path's target, or None when that target resolves outside root (or does not exist)."""
    real = os.path.realpath(path)
    if real != root and not real.startswith(root.rstrip(os.sep) + os.sep):
        log.debug("skipping %r: resolves outside the watch folder", path)
        return None
    return _stat(real)


@dataclass
class _Seen:
    size: int
    mtime: float
    since: float
    reported: bool = False


class StabilityTracker:
    """Feed it every scan; it returns the files whose size and mtime have just stayed put long enough."""

    def __init__(self, stable_s: float, empty_stable_s: float | None = None,
                 clock: Callable[[], float] = time.monotonic) -> None:
        if stable_s < 0:
            raise ValueError("stable_s must be >= 0")
        self.stable_s = stable_s
        self.empty_stable_s = 3 * stable_s if empty_stable_s is None else empty_stable_s
        self._clock = clock
        self._seen: dict[Path, _Seen] = {}

    def update(self, candidates: Iterable[Candidate], now: float | None = None) -> list[Candidate]:
        """Newly stable candidates; files missing from this scan are forgotten (a re-added file counts anew)."""
        now = self._clock() if now is None else now
        ready, present = [], set()
        for c in candidates:
            present.add(c.path)
            seen = self._seen.get(c.path)
            if seen is None or (seen.size, seen.mtime) != (c.size, c.mtime):
                seen = self._seen[c.path] = _Seen(c.size, c.mtime, now)
            if not seen.reported and now - seen.since >= self._wait(c.size):
                seen.reported = True
                ready.append(c)
        for gone in self._seen.keys() - present:
            del self._seen[gone]
        return ready

    def next_due(self) -> float | None:
        """Clock time at which the earliest unreported file could become ready, or None."""
        due = [s.since + self._wait(s.size) for s in self._seen.values() if not s.reported]
        return min(due, default=None)

    @property
    def pending(self) -> int:
        """Files seen but not yet stable (e.g. for a gauge)."""
        return sum(not s.reported for s in self._seen.values())

    def _wait(self, size: int) -> float:
        return self.empty_stable_s if size == 0 else self.stable_s


def _default_observer() -> Any:
    from watchdog.observers import Observer  # inotify on Linux

    return Observer()


class Watcher:
    """Scan + StabilityTracker, woken early by filesystem events. Not thread-safe: one caller polls."""

    def __init__(self, watch_dir: str | os.PathLike[str], domains: Iterable[str], stable_s: float,
                 poll_interval_s: float, *, min_rescan_s: float = 0.5,
                 observer_factory: Callable[[], Any] | None = _default_observer,
                 clock: Callable[[], float] = time.monotonic) -> None:
        self.watch_dir = Path(os.path.abspath(watch_dir))
        self.domains = tuple(domains)
        self.poll_interval_s = poll_interval_s
        self.min_rescan_s = min_rescan_s
        self.tracker = StabilityTracker(stable_s, clock=clock)
        self._clock = clock
        self._factory = observer_factory
        self._observer: Any = None
        self._next_attempt = 0.0
        self._wake = threading.Event()
        self._last_scan = -float("inf")
        self._closed = False

    @property
    def mode(self) -> str:
        """"events" while an observer is running, else "polling"."""
        return "events" if self._observer is not None and self._observer.is_alive() else "polling"

    def poll(self, timeout: float) -> list[Candidate]:
        """Files that became stable, returned as soon as there are any, or [] after timeout seconds."""
        deadline = self._clock() + max(0.0, timeout)
        while True:
            self._ensure_observer()
            self._wake.clear()  # before scanning: an event during the scan triggers another one
            now = self._clock()
            self._last_scan = now
            ready = self.tracker.update(scan(self.watch_dir, self.domains), now)
            if ready or self._closed:
                return ready
            wait = min(deadline - now, self.poll_interval_s)
            due = self.tracker.next_due()
            if due is not None:
                wait = min(wait, max(0.0, due - now) + 0.005)
            if wait <= 0:
                return []
            if self._wake.wait(wait):
                # Debounce: a copy in progress fires events continuously.
                pause = min(self._last_scan + self.min_rescan_s, deadline) - self._clock()
                if pause > 0:
                    time.sleep(pause)

    def close(self) -> None:
        self._closed = True
        self._wake.set()
        self._stop_observer()

    def __enter__(self) -> Watcher:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def _ensure_observer(self) -> None:
        if self._factory is None or self._closed or self.mode == "events":
            return
        now = self._clock()
        if now < self._next_attempt:
            return
        self._next_attempt = now + OBSERVER_RETRY_S
        self._stop_observer()
        observer = None
        try:
            from watchdog import events as ev

            handler = ev.FileSystemEventHandler()
            handler.on_any_event = lambda _event: self._wake.set()  # type: ignore[method-assign]
            observer = self._factory()
            # Only changes can make a file new or unstable; our own reads (opened/closed_no_write) must
            # not wake us, or reading a file would trigger a rescan.
            kinds = [ev.FileCreatedEvent, ev.FileModifiedEvent, ev.FileMovedEvent, ev.FileDeletedEvent,
                     ev.FileClosedEvent, ev.DirCreatedEvent, ev.DirMovedEvent, ev.DirDeletedEvent]
            observer.schedule(handler, str(self.watch_dir), recursive=True, event_filter=kinds)
            observer.start()
            self._observer = observer
        except Exception as e:  # any failure (no inotify, watch limit, folder missing) means: poll instead
            log.warning("filesystem events unavailable for %s (%s); polling every %.1fs",
                        self.watch_dir, e, self.poll_interval_s)
            self._stop_observer(observer)

    def _stop_observer(self, observer: Any = None) -> None:
        observer = observer or self._observer
        self._observer = None
        if observer is not None:
            try:
                observer.stop()
                if observer.is_alive():
                    observer.join(timeout=2)
            except Exception:  # stopping a broken observer must not raise
                pass


# ---------------------------------------------------------------------------------------------------------------
# The watch stage process: stable files in the watch folder -> "discovered" messages for the index.

def discovered_message(candidate: Candidate, extensions: list[str]) -> Discovered:
    """Fingerprint a stable file; files that cannot be videos are reported as rejected, once."""
    path = Path(candidate.path)
    rejected = ""
    if path.suffix.lower() not in {e.lower() for e in extensions}:
        rejected = "not_a_video"
    elif candidate.size == 0:
        rejected = "empty_file"
    try:
        digest = fingerprint(path) if candidate.size else ""
    except OSError as exc:
        log.warning("cannot read %s: %s", path, exc)
        digest, rejected = "", "unreadable"
    if not digest:  # nothing to fingerprint: key the row on the path so it is recorded once
        digest = "path:" + hashlib.sha256(os.fsencode(path)).hexdigest()
    name = str(path)
    if not is_utf8(name):
        # A name that is not UTF-8 cannot be stored or shown faithfully: record the file once, failed, under an
        # escaped name, rather than guess at an encoding.
        name = os.fsencode(path).decode("utf-8", "backslashreplace")
        rejected = "bad_file_name"
    return Discovered(path=name, domain=candidate.domain, size=int(candidate.size), mtime=float(candidate.mtime),
                      fingerprint=digest, rejected=rejected)


def is_utf8(text: str) -> bool:
    try:
        text.encode("utf-8")
    except UnicodeEncodeError:  # lone surrogates stand for undecodable bytes
        return False
    return True


class KnownFiles:
    """Files the catalog already records with this size and mtime (so a restart does not re-fingerprint). When the
    catalog cannot be read (not created yet, or a PostgreSQL server restarting) a file counts as unknown: the index
    recognises it by its fingerprint anyway."""

    def __init__(self, settings: PipelineSettings) -> None:
        self.settings = settings
        self.catalog: Catalog | None = None

    def __contains__(self, candidate: Candidate) -> bool:
        name = str(candidate.path)
        if not is_utf8(name):
            return False
        try:
            if self.catalog is None:
                if not catalog_exists(self.settings):
                    return False
                self.catalog = open_catalog(self.settings, readonly=True, role="watch")
            return self.catalog.known_file(name, int(candidate.size), float(candidate.mtime))
        except (CatalogError, *catalog_errors(self.settings)):
            return False


class WatchHandler(Handler):
    """No input: each tick scans (waking early on filesystem events) and reports new stable files."""

    routes: dict = {}
    passes = ()

    def __init__(self, settings: PipelineSettings) -> None:
        w = settings.watch
        self.extensions = w.extensions
        self.known = KnownFiles(settings)
        self.sent: dict[str, tuple[int, float]] = {}
        self.watcher = Watcher(settings.paths.watch_dir, settings.domains, w.stable_s, w.poll_interval_s)

    def wait_ms(self) -> int:
        return 0  # the tick waits, on the watcher

    def tick(self, out: Outbox) -> int:
        for candidate in self.watcher.poll(timeout=0.5):
            key, version = str(candidate.path), (int(candidate.size), float(candidate.mtime))
            if self.sent.get(key) == version or candidate in self.known:
                continue
            started = time.monotonic()
            out.send(discovered_message(candidate, self.extensions))
            self.sent[key] = version
            out.unit_done(started)
        return 0  # each file was a unit of its own, reported above

    def close(self) -> None:
        self.watcher.close()
