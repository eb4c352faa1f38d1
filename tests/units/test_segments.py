"""Segments and their leases (stages/store/segments.py), on SQLite and on PostgreSQL:

- a video splits into whole-window segments, the last one open-ended; registering twice adds nothing;
- a claim takes pending segments oldest first, and a segment whose lease ran out (counted as taken over), never one
  another machine holds; renewing keeps it, and tells a machine which segments it lost;
- finishing needs the lease; a video is finished with its segments (done, partial, failed) and counted once;
- machines claiming at once on PostgreSQL (FOR UPDATE SKIP LOCKED) each get different segments, none twice;
- the coordinator's view: machines from the leases, the backlog in windows.
"""

from __future__ import annotations

import threading
import time

import pytest

from humanstyle.stages.store.catalog import Catalog
from humanstyle.stages.store.segments import Segments, plan


@pytest.fixture(params=["sqlite", "postgresql"])
def catalog(request, tmp_path):
    if request.param == "sqlite":
        cat = Catalog(tmp_path / "catalog.sqlite")
    else:
        cat = Catalog(request.getfixturevalue("postgres_url"))
    yield cat
    cat.close()


def video(cat: Catalog, name: str) -> int:
    return cat.add_video(f"fp-{name}", f"/w/movie/{name}.mp4", "movie", 1, 0.0)[0].id


def test_plan_cuts_whole_windows_and_leaves_the_end_open():
    assert plan(0, 60) == [(0, 0)]  # no length: one segment, to the end
    assert plan(60, 60) == [(0, 0)]
    assert plan(61, 60) == [(0, 60), (60, 0)]
    assert plan(150, 60) == [(0, 60), (60, 120), (120, 0)]


def test_claim_renew_expire_and_finish(catalog):
    segs = Segments(catalog)
    a, b = video(catalog, "a"), video(catalog, "b")
    assert segs.register(a, 150, 60) == 3 and segs.register(a, 150, 60) == 3
    segs.register(b, 10, 60)
    assert segs.backlog_windows() == 150 + 10
    got = segs.claim("m1", 2, lease_s=30.0)
    assert [(s.video_id, s.seq, s.start_window, s.end_window, s.attempt) for s in got] == \
           [(a, 0, 0, 60, 1), (a, 1, 60, 120, 1)]
    assert not any(s.taken_over for s in got)
    assert catalog.video(a).status == "processing"
    other = segs.claim("m2", 5, lease_s=30.0)  # what m1 holds is not offered
    assert [s.key for s in other] == [(a, 2), (b, 0)]
    assert segs.renew("m1", {(a, 0): 12, (a, 1): 0}, 30.0) == []
    # m1 falls silent: its leases run out and m2 takes them over.
    catalog._q("UPDATE segments SET lease_until = ? WHERE owner = 'm1'", (time.time() - 1,))
    taken = segs.claim("m2", 5, lease_s=30.0)
    assert [s.key for s in taken] == [(a, 0), (a, 1)] and all(s.taken_over and s.attempt == 2 for s in taken)
    assert segs.renew("m1", {(a, 0): 20}, 30.0) == [(a, 0)]  # m1 learns it lost it...
    assert not segs.finish("m1", (a, 0), "done", "", 60, 60.0)  # ...and cannot finish it
    assert segs.expired_total() == 2
    for key, status, reason in (((a, 0), "done", ""), ((a, 1), "partial", "decode_error"), ((a, 2), "done", ""),
                                ((b, 0), "failed", "not_a_video")):
        assert segs.finish("m2", key, status, reason, 30, 30.0)
    finished = {v.id: (v.status, v.reason, v.windows) for v in segs.finish_videos()}
    assert finished == {a: ("partial", "decode_error", 90), b: ("failed", "not_a_video", 30)}
    assert segs.finish_videos() == []  # once
    assert catalog.video(a).status == "partial" and segs.backlog_windows() == 0
    machines = {m["name"]: m for m in segs.machines()}
    assert machines["m2"]["segments_done"] == 4 and machines["m2"]["holding"] == []


def test_release_gives_segments_back_and_a_restart_releases_its_own(catalog):
    segs = Segments(catalog)
    a = video(catalog, "a")
    segs.register(a, 120, 60)
    held = segs.claim("m1", 2, 30.0)
    assert segs.release("m1", held[0].key) == 1
    assert [s.key for s in segs.claim("m2", 2, 30.0)] == [held[0].key]
    assert segs.release("m1") == 1  # m1 restarted: what it still held is claimable at once
    assert [(s.key, s.attempt) for s in segs.claim("m1", 2, 30.0)] == [(held[1].key, 2)]
    machines = {m["name"]: m for m in segs.machines()}
    assert machines["m1"]["holding"] == [f"{a}:1"] and machines["m2"]["holding"] == [f"{a}:0"]


def test_machines_claiming_at_once_on_postgresql_never_share_a_segment(postgres_url):
    setup = Catalog(postgres_url)
    segs = Segments(setup)
    for i in range(20):
        segs.register(video(setup, f"v{i}"), 300, 60)  # 100 segments
    claimed: dict[str, list] = {}

    def machine(name: str) -> None:
        cat = Catalog(postgres_url)
        mine = claimed.setdefault(name, [])
        try:
            while batch := Segments(cat).claim(name, 3, 30.0):
                mine += [s.key for s in batch]
        finally:
            cat.close()

    threads = [threading.Thread(target=machine, args=(f"m{i}",)) for i in range(6)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=60)
    keys = [k for mine in claimed.values() for k in mine]
    assert len(keys) == 100 and len(set(keys)) == 100
    assert sum(1 for mine in claimed.values() if mine) >= 2  # they really claimed side by side
    setup.close()


def test_a_claim_no_decoder_took_is_not_an_attempt(catalog):
    segs = Segments(catalog)
    a = video(catalog, "a")
    segs.register(a, 10, 60)
    for _ in range(5):  # the decoders are restarting: every claim goes straight back
        [held] = segs.claim("m1", 1, 30.0)
        segs.release("m1", held.key, unused=True)
    assert segs.claim("m1", 1, 30.0)[0].attempt == 1
