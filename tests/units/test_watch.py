"""Watch folder logic: fingerprints, scanning rules, stability, and the event-woken watcher."""

from __future__ import annotations

import os
import shutil
import threading
from pathlib import Path

import pytest

from humanstyle.stages import watch
from humanstyle.stages.decode import probe_video
from humanstyle.stages.watch import Candidate, StabilityTracker, Watcher, fingerprint, scan
from tests.media import make_clip

DOMAINS = ("movie", "game")


@pytest.fixture
def root(tmp_path: Path) -> Path:
    for d in DOMAINS:
        (tmp_path / "watch" / d).mkdir(parents=True)
    return tmp_path / "watch"


def write(path: Path, data: bytes = b"video bytes") -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(data)
    return path


def names(cands: list[Candidate], root: Path) -> list[tuple[str, str]]:
    return [(c.domain, c.path.relative_to(root).as_posix()) for c in cands]


# --- fingerprint -----------------------------------------------------------------------------------


def test_fingerprint_follows_content_not_name(tmp_path: Path) -> None:
    big = os.urandom(3 * 1024 * 1024)  # sampled, not hashed whole
    a = write(tmp_path / "a.mp4", big)
    b = tmp_path / "renamed copy.mp4"
    shutil.copyfile(a, b)
    assert fingerprint(a) == fingerprint(b)
    assert len(fingerprint(a)) == 64
    assert fingerprint(write(tmp_path / "c.mp4", big[:-1])) != fingerprint(a)  # size counts
    changed = bytearray(big)
    changed[len(big) // 2] ^= 1  # the middle sample
    assert fingerprint(write(tmp_path / "d.mp4", bytes(changed))) != fingerprint(a)


def test_fingerprint_small_files_are_hashed_whole(tmp_path: Path) -> None:
    data = bytearray(os.urandom(300 * 1024))
    first = fingerprint(write(tmp_path / "s.mp4", bytes(data)))
    data[200_000] ^= 1
    assert fingerprint(write(tmp_path / "s.mp4", bytes(data))) != first


def test_fingerprint_trade_off_is_as_documented(tmp_path: Path) -> None:
    """Bytes between samples are not read: equal-size files differing only there collide."""
    data = bytearray(os.urandom(8 * 1024 * 1024))
    first = fingerprint(write(tmp_path / "x.mp4", bytes(data)))
    data[100 * 1024] ^= 1  # between the first (0..64 KiB) and second (~1 MiB) samples
    assert fingerprint(write(tmp_path / "x.mp4", bytes(data))) == first


def test_fingerprint_refuses_a_fifo(tmp_path: Path) -> None:
    os.mkfifo(tmp_path / "pipe.mp4")
    with pytest.raises(ValueError):
        fingerprint(tmp_path / "pipe.mp4")


# --- scan ------------------------------------------------------------------------------------------


def test_scan_assigns_domains_recursively_and_skips_temp_names(root: Path) -> None:
    for rel in ["movie/a.mp4", "movie/deep/er/b.mkv", "game/c.avi", "game/sub/d.mp4",
                "movie/.hidden.mp4", "movie/~lock.mp4", "movie/e.mp4.part", "movie/f.crdownload",
                "movie/g.MP4.TMP", "movie/backup.mp4~", "movie/.cache/h.mp4", "loose.mp4", "other/i.mp4"]:
        write(root / rel)
    write(root / "game" / "empty.mp4", b"")
    os.mkfifo(root / "movie" / "fifo.mp4")
    found = scan(root, DOMAINS)
    assert names(found, root) == [("game", "game/c.avi"), ("game", "game/empty.mp4"), ("game", "game/sub/d.mp4"),
                                  ("movie", "movie/a.mp4"), ("movie", "movie/deep/er/b.mkv")]
    c = found[0]
    assert c.path.is_absolute() and c.size == len(b"video bytes") and c.mtime == os.stat(c.path).st_mtime


def test_scan_of_a_missing_folder_or_domain(tmp_path: Path) -> None:
    assert scan(tmp_path / "nope", DOMAINS) == []
    write(tmp_path / "w" / "movie" / "a.mp4")
    assert len(scan(tmp_path / "w", DOMAINS)) == 1  # no game folder yet
    with pytest.raises(ValueError):
        scan(tmp_path / "w", ["../etc"])


def test_scan_refuses_symlinks_out_of_the_tree(root: Path, tmp_path: Path) -> None:
    outside = tmp_path / "outside"
    write(outside / "secret.mp4")
    (root / "movie" / "link.mp4").symlink_to(outside / "secret.mp4")
    (root / "movie" / "linkdir").symlink_to(outside)
    (root / "movie" / "relative").symlink_to(Path("..") / ".." / "outside")
    (root / "game").rmdir()
    (root / "game").symlink_to(outside)  # even a whole domain
    (root / "movie" / "dangling.mp4").symlink_to(root / "nowhere.mp4")
    assert scan(root, DOMAINS) == []


def test_scan_follows_links_inside_the_tree_once(root: Path) -> None:
    write(root / "movie" / "real" / "a.mp4")
    (root / "movie" / "alias.mp4").symlink_to(root / "movie" / "real" / "a.mp4")
    (root / "movie" / "zlinked").symlink_to(root / "movie" / "real")
    write(root / "elsewhere" / "b.mp4")  # inside the watch folder, outside any domain
    (root / "game" / "b.mp4").symlink_to(root / "elsewhere" / "b.mp4")
    assert names(scan(root, DOMAINS), root) == [("game", "game/b.mp4"), ("movie", "movie/alias.mp4")]


@pytest.mark.timeout(60)  # bounds a hang; the listing count below is what proves loops are not followed
def test_scan_survives_symlink_loops(root: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    write(root / "movie" / "a" / "x.mp4")
    (root / "movie" / "a" / "loop").symlink_to(root / "movie")
    (root / "movie" / "a" / "self").symlink_to(".")
    (root / "game" / "ping").symlink_to(root / "game" / "pong")
    (root / "game" / "pong").symlink_to(root / "game" / "ping")
    listed: list[str] = []
    real_scandir = os.scandir

    def counting_scandir(path):
        listed.append(os.path.relpath(path, root))
        assert len(listed) < 100, f"scan keeps listing folders: {listed[:20]}"
        return real_scandir(path)

    monkeypatch.setattr(watch.os, "scandir", counting_scandir)
    assert names(scan(root, DOMAINS), root) == [("movie", "movie/a/x.mp4")]
    assert sorted(listed) == ["game", "movie", "movie/a"]  # each real folder once, however many links lead to it


def test_untrusted_names_are_just_names(root: Path, tmp_path: Path) -> None:
    weird = ["Ünïcødé фильм 電影.mp4", "new\nline.mp4", "$(touch pwned) `id`; rm -rf x | y & 'q' \"d\" *.mp4",
             "clip_%03d.mp4", "-rf --help.mp4", " leading and trailing space .mp4"]
    for name in weird:
        write(root / "movie" / name)
    write(root / "game" / os.fsdecode(b"latin1 \xe9t\xe9.mp4"))  # not valid UTF-8
    found = scan(root, DOMAINS)
    assert sorted(c.path.name for c in found if c.domain == "movie") == sorted(weird)
    assert all(len(fingerprint(c.path)) == 64 for c in found)
    assert not (Path.cwd() / "pwned").exists() and not (tmp_path / "pwned").exists()
    clip = make_clip(root / "movie" / "$(touch pwned) 100%d 'clip'.mp4", 0.5)
    assert probe_video(clip).frame_count == 12


# --- stability -------------------------------------------------------------------------------------


def cand(size: int, mtime: float = 1.0, name: str = "a.mp4") -> Candidate:
    return Candidate(Path("/w/movie") / name, "movie", size, mtime)


def test_stability_waits_for_size_and_mtime_to_settle() -> None:
    t = StabilityTracker(stable_s=2.0)
    assert t.update([cand(10)], now=0) == []
    assert t.update([cand(20, 2.0)], now=1.5) == []  # grew: the clock restarts
    assert t.next_due() == 3.5
    assert t.update([cand(20, 2.0)], now=3.0) == []
    assert t.update([cand(20, 2.0)], now=3.5) == [cand(20, 2.0)]
    assert t.update([cand(20, 2.0)], now=9.0) == []  # reported once
    assert t.pending == 0
    assert t.update([cand(20, 3.0)], now=10) == []  # rewritten in place: reported again once stable
    assert t.update([cand(20, 3.0)], now=12) == [cand(20, 3.0)]
    assert t.update([], now=13) == []  # deleted: forgotten
    assert t.update([cand(20, 3.0)], now=13) == []  # back again: a new arrival
    assert t.update([cand(20, 3.0)], now=15) == [cand(20, 3.0)]


def test_an_empty_file_is_reported_after_a_longer_wait() -> None:
    t = StabilityTracker(stable_s=1.0)
    assert t.update([cand(0)], now=0) == []
    assert t.update([cand(0)], now=2.9) == []
    assert t.update([cand(0)], now=3.0) == [cand(0)]
    assert StabilityTracker(0.0).update([cand(5)], now=0) == [cand(5)]


def test_a_slow_copy_is_reported_only_after_it_stops_growing(root: Path) -> None:
    """Real files and scans on a test-driven clock: the copy grows every 0.25 s (less than stable_s), so no scan
    may report it, whatever the machine's load; once it stops, it is reported exactly stable_s later, whole."""
    target = root / "movie" / "slow copy.mp4"
    now = [0.0]
    with Watcher(root, DOMAINS, stable_s=0.5, poll_interval_s=0.1, min_rescan_s=0.0, clock=lambda: now[0]) as w:
        with target.open("wb") as f:
            for _ in range(8):
                f.write(os.urandom(50_000))
                f.flush()
                assert w.poll(timeout=0) == [], "reported while still growing"
                now[0] += 0.25
        assert w.poll(timeout=0) == []  # 0.25 s after the last write
        now[0] += 0.25
        got = w.poll(timeout=0)
        assert w.poll(timeout=0) == []  # reported once
    assert [c.path for c in got] == [target] and got[0].size == 400_000


# --- watcher ---------------------------------------------------------------------------------------


def arrive_later(path: Path, delay: float) -> None:
    threading.Timer(delay, lambda: write(path, b"x" * 1000)).start()


def test_watcher_wakes_on_events(root: Path) -> None:
    # No periodic rescan within the poll (an hour apart): only a filesystem event can make it look again.
    # The 60 s timeout only bounds a hang.
    with Watcher(root, DOMAINS, stable_s=0.2, poll_interval_s=3600, min_rescan_s=0.05) as w:
        assert w.poll(timeout=0) == []
        assert w.mode == "events"
        arrive_later(root / "game" / "new" / "clip.mp4", 0.2)
        got = w.poll(timeout=60)
    assert names(got, root) == [("game", "game/new/clip.mp4")]


def test_watcher_falls_back_to_polling(root: Path) -> None:
    def broken():
        raise OSError(28, "inotify watch limit reached")

    with Watcher(root, DOMAINS, stable_s=0.1, poll_interval_s=0.1, observer_factory=broken) as w:
        assert w.poll(timeout=0) == [] and w.mode == "polling"
        arrive_later(root / "movie" / "a.mp4", 0.1)
        assert names(w.poll(timeout=5), root) == [("movie", "movie/a.mp4")]


def test_watcher_on_a_folder_created_later(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(watch, "OBSERVER_RETRY_S", 0.0)
    with Watcher(tmp_path / "later", DOMAINS, stable_s=0.1, poll_interval_s=0.1) as w:
        assert w.poll(timeout=0) == [] and w.mode == "polling"
        write(tmp_path / "later" / "movie" / "a.mp4")
        assert len(w.poll(timeout=5)) == 1
        w.poll(timeout=0)
        assert w.mode == "events"
    w.close()  # idempotent
