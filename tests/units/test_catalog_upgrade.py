"""Data written by the previous release: a catalog without pairs.mirrored and a format-1 pose store."""

from __future__ import annotations

import json
import sqlite3
from pathlib import Path

import numpy as np

from humanstyle.daemon import config
from humanstyle.stages.handler import ListOutbox
from humanstyle.stages.pairing.stage import PairingHandler
from humanstyle.stages.store.catalog import Catalog
from tests.conftest import fast_sections, write_config
from tests.units.test_pairing import LEFT_UP, mirror, pose

# The pairs table as the previous release created it (the other tables are unchanged).
OLD_PAIRS = """
CREATE TABLE pairs (
    id INTEGER PRIMARY KEY,
    a_patch_id INTEGER NOT NULL REFERENCES patches(id),
    b_patch_id INTEGER NOT NULL REFERENCES patches(id),
    view TEXT NOT NULL,
    similarity REAL NOT NULL,
    created_at REAL NOT NULL,
    UNIQUE (a_patch_id, b_patch_id)
);
"""
VIEW = "FULL-BODY-FRONT"


def old_catalog(path: Path) -> None:
    """A catalog as the previous release wrote it: its schema, two patches, one pair."""
    from humanstyle.stages.store.catalog import SCHEMA

    schema = SCHEMA[: SCHEMA.index("CREATE TABLE IF NOT EXISTS pairs")] + OLD_PAIRS
    db = sqlite3.connect(path)
    db.executescript(schema)
    db.execute("INSERT INTO videos (fingerprint, path, domain, size, status, created_at, updated_at) "
               "VALUES ('fp', '/v.mp4', 'movie', 1, 'done', 0, 0)")
    for i, domain in enumerate(("movie", "game")):
        db.execute("INSERT INTO patches (video_id, domain, window_index, frame_index, person_index, kind, timestamp, "
                   "box, square, score, view, keypoint_score, keypoints, path, indexed, created_at) "
                   "VALUES (1, ?, 0, ?, 0, 'anchor', 0, '[]', '[]', 0.9, ?, 0.9, ?, ?, 1, 0)",
                   (domain, i, VIEW, pose(LEFT_UP, dx=3 * i).astype(np.float32).tobytes(), f"p{i}.png"))
    db.execute("INSERT INTO pairs (a_patch_id, b_patch_id, view, similarity, created_at) VALUES (1, 2, ?, 0.95, 0)",
               (VIEW,))
    db.commit()
    db.close()


def test_old_catalog_gains_the_mirrored_column(tmp_path: Path) -> None:
    path = tmp_path / "catalog.sqlite"
    old_catalog(path)
    reader = Catalog(path, readonly=True)  # a reader that opens it before the writer upgraded it
    assert [(r["id"], r["mirrored"]) for r in reader.pairs()] == [(1, 0)]
    reader.close()
    writer = Catalog(path)
    assert [(r["id"], r["mirrored"], r["similarity"]) for r in writer.pairs()] == [(1, 0, 0.95)]
    assert writer.add_pair(2, 1, VIEW, 0.99, mirrored=True)
    assert not writer.add_pair(1, 2, VIEW, 0.5, mirrored=True)  # already known: unchanged
    assert [(r["a_patch_id"], r["mirrored"]) for r in writer.pairs()] == [(1, 0), (2, 1)]
    writer.close()
    again = Catalog(path)  # a second open finds the column and adds nothing
    assert [r[1] for r in again.db.execute("PRAGMA table_info(pairs)")].count("mirrored") == 1
    again.close()


def test_old_index_is_rebuilt_from_the_catalog(tmp_path: Path) -> None:
    settings = config.load(write_config(tmp_path, fast_sections(tmp_path)))
    data = settings.paths.data_dir
    data.mkdir(parents=True)
    old_catalog(settings.paths.catalog)
    for domain in ("movie", "game"):  # the previous release's index of those two patches
        folder = data / "index" / domain / VIEW
        folder.mkdir(parents=True)
        (folder / "meta.json").write_text(json.dumps({"format": 1, "dim": 34, "chunk_rows": 65536}))
        (folder / "chunk-000000.rec").write_bytes(b"\0" * 144)
        (folder / "committed").write_text("1\n")
    pairing = PairingHandler(settings)
    pairing.start(ListOutbox())
    catalog = pairing.catalog
    assert len(pairing.rule.store("movie", VIEW)) == len(pairing.rule.store("game", VIEW)) == 1
    assert catalog.pair_count() == 1  # rebuilding proposes nothing
    header, row = (data / "pairs.csv").read_text().splitlines()
    assert header.endswith(",mirrored") and row.endswith(",1,2,0")  # the old pair: movie 1, game 2, not mirrored
    # A new patch pairs with the rebuilt entries: the game patch, mirrored.
    pairs = pairing.rule.propose_batch([3], "movie", VIEW, mirror(pose(LEFT_UP, dx=5))[None])
    assert [(p.a_id, p.b_id, p.mirrored) for p in pairs] == [(3, 2, True)]
    pairing.close()
