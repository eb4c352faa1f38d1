"""The pairing stage follows the catalog: batches of unpaired patches, runs by view and domain, pairs recorded once
each whatever the batch size or a crash at any point (killed between its writes, or at a random moment)."""

from __future__ import annotations

import csv
import os
import shutil
import signal
import sqlite3
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest

from bench.pairing import random_keypoints
from humanstyle.daemon import config
from humanstyle.stages import counters
from humanstyle.stages.handler import ListOutbox
from humanstyle.stages.pairing.stage import PairingHandler, runs
from humanstyle.stages.records import PairsAppended
from humanstyle.stages.store.catalog import Catalog
from tests.catalog_rows import add_patch
from tests.conftest import fast_sections, write_config

ROOT = Path(__file__).resolve().parents[2]
VIEWS = ("FULL-BODY-FRONT", "FULL-BODY-BACK")


def settings_for(folder: Path, batch: int = 64) -> config.Settings:
    sections = fast_sections(folder, pair={"min_similarity": 0.95, "top_k": 3, "batch": batch})
    return config.load(write_config(folder, sections))


def fill(settings: config.Settings, n: int, seed: int = 0) -> None:
    """n patches from videos of alternating domains (runs of 1-40 patches), two views and a few rejects."""
    rng = np.random.default_rng(seed)
    settings.paths.data_dir.mkdir(parents=True, exist_ok=True)
    cat = Catalog(settings.paths.catalog)
    videos = {d: cat.add_video(f"fp-{d}", f"/w/{d}.mp4", d, 1, 0.0)[0] for d in ("movie", "game")}
    keypoints = random_keypoints(rng, n).astype(np.float32)
    frame, domain = 0, "movie"
    while frame < n:
        for _ in range(int(rng.integers(1, 40))):
            if frame >= n:
                break
            view = "REJECTED" if rng.random() < 0.05 else VIEWS[int(rng.random() < 0.3)]
            add_patch(cat, videos[domain].id, domain, frame, view, keypoints=keypoints[frame])
            frame += 1
        domain = "game" if domain == "movie" else "movie"
    cat.close()


def outcome(settings: config.Settings) -> tuple[set, list[int]]:
    """(pairs as (movie id, game id, view, similarity, mirrored), ids still unpaired) and pairs.csv's check."""
    db = sqlite3.connect(settings.paths.catalog)
    pairs = db.execute("SELECT a_patch_id, b_patch_id, view, ROUND(similarity, 9), mirrored FROM pairs").fetchall()
    unpaired = [r[0] for r in db.execute("SELECT id FROM patches WHERE indexed = 0 AND view != 'REJECTED'")]
    ids = sorted(r[0] for r in db.execute("SELECT id FROM pairs"))
    db.close()
    with open(settings.paths.data_dir / "pairs.csv", newline="") as fh:
        assert sorted(int(r["pair_id"]) for r in csv.DictReader(fh)) == ids  # once each, none missing
    assert len(set(pairs)) == len(pairs)
    return set(pairs), unpaired


def pair_everything(settings: config.Settings) -> int:
    handler = PairingHandler(settings)
    try:
        handler.start(ListOutbox())
        return handler.pair_all()
    finally:
        handler.close()


@pytest.fixture(scope="module")
def baseline(tmp_path_factory) -> tuple[Path, set]:
    folder = tmp_path_factory.mktemp("baseline")
    settings = settings_for(folder, batch=65536)  # everything in one batch
    fill(settings, 1500)
    shutil.copytree(folder / "data", folder / "unpaired")
    pair_everything(settings)
    pairs, unpaired = outcome(settings)
    assert len(pairs) > 200 and not unpaired
    return folder / "unpaired", pairs


def fresh(baseline_data: Path, tmp_path: Path, batch: int) -> config.Settings:
    settings = settings_for(tmp_path, batch)
    shutil.copytree(baseline_data, settings.paths.data_dir)
    return settings


def test_runs_keep_id_order_within_a_view_and_split_at_domain_changes() -> None:
    rows = [{"id": i, "domain": d, "view": v} for i, (d, v) in enumerate(
        [("movie", "A"), ("movie", "B"), ("game", "A"), ("movie", "A"), ("movie", "B"), ("game", "B")])]
    assert [[r["id"] for r in run] for run in runs(rows)] == [[0], [2], [3], [1, 4], [5]]


@pytest.mark.parametrize("batch", [1, 7, 256])
def test_the_batch_size_does_not_change_the_pairs(baseline, tmp_path, batch) -> None:
    data, expected = baseline
    settings = fresh(data, tmp_path, batch)
    pair_everything(settings)
    assert outcome(settings) == (expected, [])


CHILD = """
import os, sys
from humanstyle.daemon import config
from humanstyle.stages.store.catalog import Catalog
from humanstyle.stages.handler import ListOutbox
from humanstyle.stages.pairing.stage import PairingHandler
from humanstyle.stages.pairing.pose_store import PoseStore

settings = config.load(sys.argv[1])
where, after = sys.argv[2], int(sys.argv[3])
calls = {"n": 0}

def dying(original):
    def call(*args, **kwargs):
        calls["n"] += 1
        if calls["n"] > after:
            os._exit(9)  # as kill -9: nothing flushed, nothing closed
        return original(*args, **kwargs)
    return call

if where == "before_commit":  # pairs inserted and in pairs.csv, the poses not in the pose store
    PoseStore.append = dying(PoseStore.append)
elif where == "before_marking":  # the poses committed, the rows not marked paired
    Catalog.mark_indexed = dying(Catalog.mark_indexed)
handler = PairingHandler(settings)
handler.start(ListOutbox())
handler.pair_all()
"""


def run_child(settings: config.Settings, where: str = "", after: int = 0) -> subprocess.Popen:
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    return subprocess.Popen([sys.executable, "-c", CHILD, str(settings.paths.data_dir.parent / "config.toml"), where,
                             str(after)], env=env, cwd=ROOT)


@pytest.mark.parametrize("where", ["before_commit", "before_marking"])
def test_killed_between_its_writes_it_resumes_with_no_pair_twice_and_none_missed(baseline, tmp_path, where) -> None:
    data, expected = baseline
    settings = fresh(data, tmp_path, batch=50)
    child = run_child(settings, where, after=5)
    assert child.wait(120) == 9
    pairs, unpaired = outcome(settings)
    assert unpaired and pairs < expected  # it died part of the way
    assert run_child(settings).wait(120) == 0
    assert outcome(settings) == (expected, [])


def test_killed_at_a_random_moment_it_resumes_with_no_pair_twice_and_none_missed(baseline, tmp_path) -> None:
    data, expected = baseline
    settings = fresh(data, tmp_path, batch=20)
    child = run_child(settings)
    deadline = time.monotonic() + 120
    while outcome_count(settings) < 100:
        assert child.poll() is None and time.monotonic() < deadline, "the child finished before it was killed"
        time.sleep(0.02)
    child.send_signal(signal.SIGKILL)
    child.wait(30)
    assert run_child(settings).wait(120) == 0
    assert outcome(settings) == (expected, [])


def outcome_count(settings: config.Settings) -> int:
    db = sqlite3.connect(settings.paths.catalog, timeout=5)
    try:
        return db.execute("SELECT COUNT(*) FROM patches WHERE indexed = 1 AND view != 'REJECTED'").fetchone()[0]
    finally:
        db.close()


def test_a_step_sends_one_event_per_batch_and_publishes_the_backlog(baseline, tmp_path) -> None:
    data, _ = baseline
    settings = fresh(data, tmp_path, batch=400)
    handler = PairingHandler(settings)
    out = ListOutbox()
    handler.start(out)
    waiting = handler.catalog.unindexed_count()
    handler.step(out)
    events = out.take()
    assert len(events) == 1 and isinstance(events[0], PairsAppended) and events[0].count > 0
    assert events[0].total == handler.catalog.pair_count()  # kept by the stage, not counted per batch
    assert counters.PAIRING_BACKLOG._value.get() == waiting - 400
    handler.close()
