"""Shared helpers for the reliability suite (tests/test_reliability_*.py): a configuration that makes patches
and pairs exist with random-init models, clips dropped into both domains, a snapshot of everything the index
wrote, and the invariants that must hold after any fault:

- every video ended done / partial / failed, and failed ones say why;
- no duplicate videos (fingerprint), patches (video, frame, person) or pairs (the two patches);
- no orphans: every file under data/patches belongs to a catalog row (image or its mask), every row's file exists;
- pairs.csv holds exactly the catalog's pairs, once each, and every column of it (whatever its header holds)
  agrees with the catalog (see `csv_mismatches`).

Patches and pairs are compared across runs by content keys that do not depend on the order of discovery:
(video fingerprint, frame, person, view) and the pair of such keys with its view.
"""

from __future__ import annotations

import contextlib
import csv
import os
import shutil
import signal
import sqlite3
import time
from collections import Counter
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

from tests.conftest import fast_sections, write_config
from tests.harness import Daemon
from tests.media import make_clip

TERMINAL = ("done", "partial", "failed")
STAGES = ("watch", "index", "pairing", "decode", "detect", "classify")

# Clips small enough that a fault run takes tens of seconds on two shared cores, long enough (2 windows of
# 3 frames) that a kill lands in the middle of a video.
CLIP_SECONDS, CLIP_FPS, CLIP_SIZE = 2.0, 8, (160, 120)


def reliability_sections(tmp: Path, **overrides: dict) -> dict[str, dict]:
    """fast_sections plus: score threshold 0 and 2 persons (from fast_sections) so patches exist; every
    cross-domain pair of a view recorded (min_similarity -1, top_k above any patch count here) so the pair SET
    does not depend on the order patches arrive in; 2 burst frames to keep runs short."""
    base = {
        "decode": {"burst_frames": 2, "max_side": 320},
        "pair": {"min_similarity": -1.0, "top_k": 100},
        "classify": {"min_keypoint_confidence": 0.0},
        "supervisor": {"restart_backoff_s": 0.2, "shutdown_timeout_s": 10.0, "crash_loop_restarts": 8},
    }
    for name, values in overrides.items():
        base.setdefault(name, {}).update(values)
    return fast_sections(tmp, **base)


@contextlib.contextmanager
def running_daemon(tmp: Path, log_name: str = "daemon.log", **overrides: dict) -> Iterator[Daemon]:
    """A started daemon on tmp (config written there); killed with all its children afterwards."""
    cfg = write_config(tmp, reliability_sections(tmp, **overrides))
    d = Daemon(cfg, tmp / log_name)
    try:
        yield d.start()
    finally:
        kill_daemon(d)


def kill_daemon(d: Daemon) -> None:
    with contextlib.suppress(Exception):
        d.health()
    if d.proc is not None and d.proc.poll() is None:
        d.proc.kill()
        d.proc.wait(10)
    for pid in d.alive_children():
        with contextlib.suppress(ProcessLookupError):
            os.kill(pid, signal.SIGKILL)
    with contextlib.suppress(Exception):
        d.log.close()


def wait_children_gone(d: Daemon, timeout: float = 30) -> None:
    deadline = time.monotonic() + timeout
    while d.alive_children():
        if time.monotonic() > deadline:
            survivors = d.alive_children()
            for pid in survivors:  # their stacks to the log (stage_main registers faulthandler on SIGUSR1)
                with contextlib.suppress(ProcessLookupError):
                    os.kill(pid, signal.SIGUSR1)
            time.sleep(1)
            raise AssertionError(f"stage processes {survivors} outlived the supervisor:\n" + d.log_text()[-8000:])
        time.sleep(0.1)


def stage_pid(d: Daemon, stage: str) -> int:
    pids = d.health()["stages"][stage]["pids"]
    assert pids, f"no running {stage} process"
    return pids[0]


# --- media -----------------------------------------------------------------------------------------------------
def staged_clip(tmp: Path, name: str, seconds: float = CLIP_SECONDS, fps: float = CLIP_FPS,
                size: tuple[int, int] = CLIP_SIZE, **kwargs) -> Path:
    staging = tmp / "staging"
    staging.mkdir(exist_ok=True)
    return make_clip(staging / name, seconds, fps=fps, size=size, **kwargs)


def drop(tmp: Path, src: Path, domain: str, name: str | None = None, trailer: bytes = b"") -> Path:
    """Move (atomically, as a finished copy) a file into watch/<domain>/; `trailer` bytes appended on the way
    change the fingerprint without changing a single decoded frame."""
    dest = tmp / "watch" / domain / (name or src.name)
    dest.parent.mkdir(parents=True, exist_ok=True)
    tmp_copy = src.with_name(src.name + ".copy")
    shutil.copyfile(src, tmp_copy)
    if trailer:
        with open(tmp_copy, "ab") as fh:
            fh.write(trailer)
    os.replace(tmp_copy, dest)
    return dest


def drop_both(tmp: Path, clip: Path, domains: tuple[str, ...] = ("movie", "game")) -> list[Path]:
    """`clip` as a movie video and, with 16 trailing bytes (another fingerprint, the same frames), as a game video:
    identical patches on both sides, so every non-rejected view yields pairs."""
    return [drop(tmp, clip, domain, trailer=b"\0" * 16 if domain == "game" else b"") for domain in domains]


def drop_in_both_domains(tmp: Path, name: str, **clip_kwargs) -> tuple[Path, Path]:
    """A new clip dropped into both domains (`drop_both`)."""
    movie, game = drop_both(tmp, staged_clip(tmp, name, **clip_kwargs))
    return movie, game


def undisturbed_run(tmp: Path, clip: Path, timeout: float, **overrides: dict) -> Snapshot:
    """What a daemon with these settings makes of `clip` in both domains when nothing goes wrong: the baseline a
    faulted run must equal."""
    with running_daemon(tmp, **overrides) as d:
        drop_both(tmp, clip)
        d.wait_for(lambda: all_finished(tmp / "data", 2), timeout, "the undisturbed run")
        return snapshot(tmp / "data")


# --- what the index wrote --------------------------------------------------------------------------------------
@dataclass
class Snapshot:
    videos: dict[str, tuple[str, str]]  # fingerprint -> (status, reason)
    video_paths: dict[str, str]  # fingerprint -> path
    video_domains: dict[str, str]  # fingerprint -> domain
    patches: set[tuple]  # (fingerprint, frame, person, view)
    pairs: set[tuple]  # ((fp, frame, person), (fp, frame, person), view)
    duplicates: dict[str, int] = field(default_factory=dict)
    orphan_files: list[str] = field(default_factory=list)
    rows_without_files: list[str] = field(default_factory=list)
    csv_rows: int = 0
    csv_mismatches: list[str] = field(default_factory=list)
    counts: dict[str, int] = field(default_factory=dict)

    def status_of(self, name: str) -> tuple[str, str] | None:
        for fp, path in self.video_paths.items():
            if Path(path).name == name:
                return self.videos[fp]
        return None

    def rows_for(self, name: str) -> int:
        return sum(Path(p).name == name for p in self.video_paths.values())


def connect_catalog(data_dir: Path, catalog_url: str = ""):
    """A read-only DB-API connection to the catalog: the SQLite file in data_dir, or catalog_url (PostgreSQL)."""
    if catalog_url:
        import psycopg

        return psycopg.connect(catalog_url, autocommit=True, options="-c default_transaction_read_only=on")
    return sqlite3.connect(f"file:{data_dir / 'catalog.sqlite'}?mode=ro", uri=True, timeout=5)


def snapshot(data_dir: Path, catalog_url: str = "", stored: set[str] | None = None) -> Snapshot:
    """What the run left: from the catalog (SQLite in the data folder, or `catalog_url`), pairs.csv and the patch
    files (in the data folder, or `stored`: every object name in shared storage)."""
    db = connect_catalog(data_dir, catalog_url)
    try:
        q = db.execute
        videos = {fp: (st, rs) for fp, st, rs in q("SELECT fingerprint, status, reason FROM videos")}
        paths = dict(q("SELECT fingerprint, path FROM videos"))
        domains = dict(q("SELECT fingerprint, domain FROM videos"))
        prow = q("SELECT p.id, v.fingerprint, p.frame_index, p.person_index, p.view, p.path FROM patches p "
                 "JOIN videos v ON v.id = p.video_id").fetchall()
        key = {pid: (fp, fr, pe) for pid, fp, fr, pe, _v, _p in prow}
        patches = {(fp, fr, pe, v) for _pid, fp, fr, pe, v, _p in prow}
        pair_rows = q("SELECT id, a_patch_id, b_patch_id, view FROM pairs").fetchall()
        pairs = {(key[a], key[b], view) for _i, a, b, view in pair_rows}
        duplicates = {
            "videos": q("SELECT COUNT(*) - COUNT(DISTINCT fingerprint) FROM videos").fetchone()[0],
            "patches": q("SELECT COUNT(*) FROM (SELECT 1 FROM patches GROUP BY video_id, frame_index, person_index "
                         "HAVING COUNT(*) > 1) AS dup").fetchone()[0],
            "pairs": q("SELECT COUNT(*) FROM (SELECT 1 FROM pairs GROUP BY a_patch_id, b_patch_id "
                       "HAVING COUNT(*) > 1) AS dup").fetchone()[0],
            "patch_paths": q("SELECT COUNT(*) - COUNT(DISTINCT path) FROM patches WHERE path != ''").fetchone()[0],
        }
        row_paths = {p for *_rest, p in prow if p}
        csv_rows, mismatches = csv_mismatches(data_dir, db)
        unpatched = q("SELECT COUNT(*) FROM patches WHERE video_id NOT IN (SELECT id FROM videos)").fetchone()[0]
    finally:
        db.close()
    expected_files = set()
    for p in row_paths:
        expected_files.add(p)
        expected_files.add(str(Path(p).with_suffix(".mask.png")))
    on_disk = set()
    patch_root = data_dir / "patches"
    if stored is not None:
        on_disk = {name for name in stored if name.startswith("patches/")}
    elif patch_root.exists():
        for f in patch_root.rglob("*"):
            if f.is_file():
                on_disk.add(str(f.relative_to(data_dir)))
    return Snapshot(
        videos=videos, video_paths=paths, video_domains=domains, patches=patches, pairs=pairs,
        duplicates=duplicates, orphan_files=sorted(on_disk - expected_files), rows_without_files=sorted(
            p for p in expected_files if p not in on_disk),
        csv_rows=csv_rows, csv_mismatches=mismatches,
        counts={"videos": len(videos), "patches": len(prow), "pairs": len(pair_rows),
                "patches_of_unknown_videos": unpatched})


def csv_mismatches(data_dir: Path, db) -> tuple[int, list[str]]:
    """(rows in pairs.csv, every way it differs from the catalog's pairs). Compared column by column, by header
    name, so a column added to the file later is checked without editing this: `pair_id` is the pair's id,
    `<domain>_patch` and `<domain>_patch_id` the path and id of the pair's patch of that domain, and any other
    name must be a column of the `pairs` table with the same value (numbers to the CSV's 6 decimals)."""
    catalog = {}
    cur = db.execute("SELECT p.*, a.path AS a_path, b.path AS b_path, a.domain AS a_domain, "
                     "b.domain AS b_domain FROM pairs p JOIN patches a ON a.id = p.a_patch_id "
                     "JOIN patches b ON b.id = p.b_patch_id")
    names = [d[0] for d in cur.description]
    for r in (dict(zip(names, values, strict=True)) for values in cur.fetchall()):
        row = {k: r[k] for k in r if k not in ("a_path", "b_path", "a_domain", "b_domain")}
        row["pair_id"] = r["id"]
        for side in ("a", "b"):
            row[f"{r[side + '_domain']}_patch"] = r[side + "_path"]
            row[f"{r[side + '_domain']}_patch_id"] = r[side + "_patch_id"]
        catalog[str(r["id"])] = row
    csv_path = data_dir / "pairs.csv"
    if not csv_path.exists():
        return 0, [] if not catalog else [f"no pairs.csv for {len(catalog)} catalog pairs"]
    with open(csv_path, newline="") as fh:
        rows = list(csv.DictReader(fh))
    problems = []
    ids = Counter(r.get("pair_id") for r in rows)
    problems += [f"pair {i} appears {n} times in pairs.csv" for i, n in ids.items() if n > 1]
    problems += [f"pair {i} is in pairs.csv, not in the catalog" for i in ids.keys() - catalog.keys()]
    problems += [f"pair {i} is in the catalog, not in pairs.csv" for i in catalog.keys() - ids.keys()]
    for r in rows:
        expected = catalog.get(r.get("pair_id"))
        for column, text in r.items() if expected else ():
            if column not in expected:
                problems.append(f"pairs.csv column {column!r} has no catalog counterpart")
            elif not _same_value(text, expected[column]):
                problems.append(f"pair {r['pair_id']}: {column} is {text!r} in pairs.csv, "
                                f"{expected[column]!r} in the catalog")
    return len(rows), sorted(set(problems))


def _same_value(text: str | None, value: object) -> bool:
    if text is None:  # a short row
        return False
    if value is None:
        return text == ""
    if isinstance(value, bool | int) and text.lower() in ("true", "false"):
        return (text.lower() == "true") == bool(value)
    if isinstance(value, int):
        return text.lstrip("-").isdigit() and int(text) == value
    if isinstance(value, float):
        try:
            return abs(float(text) - value) <= 1e-6
        except ValueError:
            return False
    return text == str(value)


def assert_invariants(snap: Snapshot) -> None:
    """What must hold after any fault, whatever the inputs."""
    unfinished = {fp: s for fp, s in snap.videos.items() if s[0] not in TERMINAL}
    assert not unfinished, f"videos not finished: {unfinished}"
    unexplained = [snap.video_paths[fp] for fp, (st, rs) in snap.videos.items() if st == "failed" and not rs]
    assert not unexplained, f"failed without a reason: {unexplained}"
    assert all(n == 0 for n in snap.duplicates.values()), f"duplicates: {snap.duplicates}"
    assert snap.orphan_files == [], f"files without a catalog row: {snap.orphan_files[:10]}"
    assert snap.rows_without_files == [], f"catalog rows without files: {snap.rows_without_files[:10]}"
    assert snap.csv_mismatches == [], f"pairs.csv differs from the catalog: {snap.csv_mismatches[:10]}"
    assert snap.counts["patches_of_unknown_videos"] == 0


def assert_complete_run(snap: Snapshot, patches_per_video: int) -> None:
    """A run of one clip in both domains (`drop_both`) with pair.min_similarity -1 and pair.top_k above the patch
    count: both videos done, the same view for each (frame, person) in both domains (the same frames, seeded
    random-init models), and every same-view cross-domain pair recorded, in the catalog and in pairs.csv."""
    assert_invariants(snap)
    assert {s for s, _ in snap.videos.values()} == {"done"}
    assert snap.counts["patches"] == 2 * patches_per_video, (
        f"{snap.counts['patches']} patches, expected {2 * patches_per_video}")
    views = {d: {(fr, pe): v for fp, fr, pe, v in snap.patches if snap.video_domains[fp] == d}
             for d in ("movie", "game")}
    assert views["movie"] == views["game"] and len(views["movie"]) == patches_per_video
    expected = every_cross_domain_pair(snap)
    assert expected, "the inputs must produce pairs, or the pair checks prove nothing"
    assert snap.pairs == expected
    assert snap.counts["pairs"] == snap.csv_rows == len(expected)


def assert_same_results(snap: Snapshot, baseline: Snapshot) -> None:
    """A faulted run ended with exactly the undisturbed run's videos, patches and pairs, none twice."""
    assert_invariants(snap)
    assert snap.videos == baseline.videos
    assert snap.patches == baseline.patches, (
        f"missing {sorted(baseline.patches - snap.patches)[:5]}, extra {sorted(snap.patches - baseline.patches)[:5]}")
    assert snap.pairs == baseline.pairs
    assert snap.counts["pairs"] == len(baseline.pairs) and snap.csv_rows == len(baseline.pairs)


def every_cross_domain_pair(snap: Snapshot, domains: tuple[str, str] = ("movie", "game")) -> set[tuple]:
    """The pairs a run with pair.min_similarity = -1 and pair.top_k above the patch count must hold exactly: every
    (first-domain patch, second-domain patch) of the same kept view, whatever the order patches arrived in."""
    sides: dict[str, dict[str, list]] = {}
    for fp, frame, person, view in snap.patches:
        if view != "REJECTED":
            sides.setdefault(view, {}).setdefault(snap.video_domains[fp], []).append((fp, frame, person))
    a, b = domains
    return {(x, y, view) for view, side in sides.items() for x in side.get(a, ()) for y in side.get(b, ())}


def all_finished(data_dir: Path, expected_videos: int, catalog_url: str = "") -> bool:
    if not catalog_url and not (data_dir / "catalog.sqlite").exists():
        return False
    try:
        db = connect_catalog(data_dir, catalog_url)
        try:
            rows = db.execute("SELECT status FROM videos").fetchall()
            # Pairing follows the catalog in its own stage: finished once it has paired every kept patch.
            unpaired = db.execute("SELECT COUNT(*) FROM patches WHERE indexed = 0 AND view != 'REJECTED'").fetchone()
        finally:
            db.close()
    except Exception:  # a PostgreSQL server restarting, or no tables yet: not finished as far as we can tell
        return False
    return len(rows) == expected_videos and all(r[0] in TERMINAL for r in rows) and unpaired[0] == 0


def catalog_value(data_dir: Path, sql: str, args: tuple = ()) -> list[tuple]:
    db = sqlite3.connect(f"file:{data_dir / 'catalog.sqlite'}?mode=ro", uri=True, timeout=5)
    try:
        return db.execute(sql, args).fetchall()
    finally:
        db.close()


# --- processes -------------------------------------------------------------------------------------------------
def tcp_listeners(pids: list[int]) -> list[tuple[str, int]]:
    """(address, port) of every TCP socket in LISTEN state owned by these processes (/proc/net/tcp inodes matched
    to /proc/<pid>/fd), sorted. Addresses as /proc writes them: 0100007F is 127.0.0.1."""
    inodes = set()
    for pid in pids:
        for fd in Path(f"/proc/{pid}/fd").iterdir():
            with contextlib.suppress(OSError):
                target = os.readlink(fd)
                if target.startswith("socket:["):
                    inodes.add(target[8:-1])
    listening = []
    for table in ("/proc/net/tcp", "/proc/net/tcp6"):
        for line in Path(table).read_text().splitlines()[1:]:
            cols = line.split()
            if cols[3] == "0A" and cols[9] in inodes:  # state LISTEN, owned by one of the pids
                address, port = cols[1].split(":")
                listening.append((address, int(port, 16)))
    return sorted(listening)


def peak_rss_mib(pid: int) -> float | None:
    """VmHWM (peak resident set) of a live process in MiB, None once it is gone."""
    try:
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            if line.startswith("VmHWM:"):
                return int(line.split()[1]) / 1024
    except OSError:
        return None
    return None
