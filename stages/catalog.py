"""The SQLite catalog: videos, patches and pairs.

One process writes (the index stage); any process may read (`humanstyle status`, the trainer) thanks to WAL mode.
Writes are idempotent: a video is keyed by its content fingerprint, a patch by (video, frame, person), a pair by its
two patches, so replaying work after a crash never duplicates a row.
"""

from __future__ import annotations

import json
import sqlite3
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

import numpy as np

SCHEMA = """
CREATE TABLE IF NOT EXISTS videos (
    id INTEGER PRIMARY KEY,
    fingerprint TEXT NOT NULL UNIQUE,
    path TEXT NOT NULL,
    domain TEXT NOT NULL,
    size INTEGER NOT NULL,
    status TEXT NOT NULL,          -- queued | processing | done | partial | failed
    reason TEXT NOT NULL DEFAULT '',
    attempt INTEGER NOT NULL DEFAULT 0,
    windows INTEGER NOT NULL DEFAULT 0,
    frames_read INTEGER NOT NULL DEFAULT 0,
    created_at REAL NOT NULL,
    updated_at REAL NOT NULL
);
CREATE TABLE IF NOT EXISTS files (
    path TEXT PRIMARY KEY,          -- every path seen, duplicates included
    size INTEGER NOT NULL,
    mtime REAL NOT NULL,
    video_id INTEGER NOT NULL REFERENCES videos(id)
);
CREATE TABLE IF NOT EXISTS patches (
    id INTEGER PRIMARY KEY,
    video_id INTEGER NOT NULL REFERENCES videos(id),
    domain TEXT NOT NULL,
    window_index INTEGER NOT NULL,
    frame_index INTEGER NOT NULL,
    person_index INTEGER NOT NULL,
    kind TEXT NOT NULL,              -- anchor | burst
    timestamp REAL NOT NULL,
    box TEXT NOT NULL,               -- JSON [x1, y1, x2, y2] in frame pixels
    square TEXT NOT NULL,            -- JSON square crop in frame pixels
    score REAL NOT NULL,
    view TEXT NOT NULL,
    reason TEXT NOT NULL DEFAULT '',
    keypoint_score REAL NOT NULL,
    keypoints BLOB,                  -- float32 (17, 3): x, y in patch pixels, confidence in [0, 1]
    path TEXT NOT NULL,              -- relative to data_dir
    indexed INTEGER NOT NULL DEFAULT 0,
    created_at REAL NOT NULL,
    UNIQUE (video_id, frame_index, person_index)
);
CREATE INDEX IF NOT EXISTS patches_by_view ON patches (domain, view);
CREATE TABLE IF NOT EXISTS pairs (
    id INTEGER PRIMARY KEY,
    a_patch_id INTEGER NOT NULL REFERENCES patches(id),   -- first domain (movie)
    b_patch_id INTEGER NOT NULL REFERENCES patches(id),   -- second domain (game)
    view TEXT NOT NULL,
    similarity REAL NOT NULL,
    created_at REAL NOT NULL,
    mirrored INTEGER NOT NULL DEFAULT 0,  -- 1: same pose once the second domain's image is flipped horizontally
    verdict TEXT NOT NULL DEFAULT '',     -- a person's judgement: '' (none) | good | bad; bad pairs leave training
    curated_at REAL NOT NULL DEFAULT 0,   -- when the verdict was last set
    UNIQUE (a_patch_id, b_patch_id)
);
"""
# Indexes for the web page's keyset-paged pair lists and rejection examples (see Catalog.pair_page).
INDEXES = """
CREATE INDEX IF NOT EXISTS pairs_by_similarity ON pairs (similarity, id);
CREATE INDEX IF NOT EXISTS pairs_by_view_similarity ON pairs (view, similarity, id);
CREATE INDEX IF NOT EXISTS pairs_by_view_id ON pairs (view, id);
CREATE INDEX IF NOT EXISTS patches_by_reason ON patches (view, reason, id);
"""
# Columns added after the first release, as (table, column, definition): a catalog written by an older version
# gets them at open (ALTER TABLE ... ADD COLUMN keeps every row, with the default).
ADDED_COLUMNS = (("pairs", "mirrored", "INTEGER NOT NULL DEFAULT 0"),
                 ("pairs", "verdict", "TEXT NOT NULL DEFAULT ''"),
                 ("pairs", "curated_at", "REAL NOT NULL DEFAULT 0"))
PAIR_ORDERS = ("recent", "similarity", "similarity_asc")  # Catalog.pair_page's sort orders

UNFINISHED = ("queued", "processing")


@dataclass(frozen=True)
class Video:
    id: int
    fingerprint: str
    path: str
    domain: str
    status: str
    reason: str
    attempt: int


class Catalog:
    def __init__(self, path: Path, readonly: bool = False) -> None:
        self.path = Path(path)
        if readonly:
            uri = f"file:{self.path}?mode=ro"
            self.db = sqlite3.connect(uri, uri=True, timeout=30, isolation_level=None)
        else:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            self.db = sqlite3.connect(self.path, timeout=30, isolation_level=None)
            self.db.execute("PRAGMA journal_mode=WAL")
            self.db.execute("PRAGMA synchronous=NORMAL")
            self.db.executescript(SCHEMA)
            self._upgrade()
            self.db.executescript(INDEXES)
        self.db.row_factory = sqlite3.Row
        self._build_sql()

    def _build_sql(self) -> None:
        """The pair queries. A reader may open a catalog that its writer has not upgraded yet: it reads the
        defaults of the missing columns instead, and looks again on its next pair query (see _current)."""
        mirrored = "p.mirrored" if self._has_column("pairs", "mirrored") else "0"
        self.verdict_sql = "p.verdict" if self._has_column("pairs", "verdict") else "''"
        self.pair_rows_sql = (f"SELECT p.id, p.view, p.similarity, p.a_patch_id, p.b_patch_id, {mirrored} AS mirrored, "
                              "a.path AS a_path, b.path AS b_path FROM pairs p JOIN patches a ON a.id = p.a_patch_id "
                              "JOIN patches b ON b.id = p.b_patch_id")
        self.pair_page_sql = (
            f"SELECT p.id, p.view, p.similarity, p.a_patch_id, p.b_patch_id, {mirrored} AS mirrored, "
            f"{self.verdict_sql} AS verdict, p.created_at, a.path AS a_path, b.path AS b_path, "
            "a.video_id AS a_video_id, a.timestamp AS a_timestamp, b.video_id AS b_video_id, "
            "b.timestamp AS b_timestamp, va.path AS a_video, vb.path AS b_video "
            "FROM pairs p JOIN patches a ON a.id = p.a_patch_id JOIN patches b ON b.id = p.b_patch_id "
            "JOIN videos va ON va.id = a.video_id JOIN videos vb ON vb.id = b.video_id")

    def _current(self) -> None:
        if self.verdict_sql == "''":  # opened before its writer upgraded it: a long-lived reader looks again
            self._build_sql()

    def _has_column(self, table: str, column: str) -> bool:
        return any(row[1] == column for row in self.db.execute(f"PRAGMA table_info({table})"))

    def _upgrade(self) -> None:
        for table, column, definition in ADDED_COLUMNS:
            if not self._has_column(table, column):
                self.db.execute(f"ALTER TABLE {table} ADD COLUMN {column} {definition}")

    def close(self) -> None:
        self.db.close()

    @contextmanager
    def transaction(self) -> Iterator[sqlite3.Connection]:
        self.db.execute("BEGIN IMMEDIATE")
        try:
            yield self.db
        except BaseException:
            self.db.execute("ROLLBACK")
            raise
        self.db.execute("COMMIT")

    # --- videos ------------------------------------------------------------------------------------------------
    def known_file(self, path: str, size: int, mtime: float) -> bool:
        row = self.db.execute("SELECT size, mtime FROM files WHERE path = ?", (path,)).fetchone()
        return row is not None and row["size"] == size and row["mtime"] == mtime

    def add_video(self, fingerprint: str, path: str, domain: str, size: int, mtime: float,
                  status: str = "queued", reason: str = "") -> tuple[Video, bool]:
        """Insert a video (or find it by fingerprint) and remember the path; returns (video, created)."""
        now = time.time()
        with self.transaction() as db:
            row = db.execute("SELECT * FROM videos WHERE fingerprint = ?", (fingerprint,)).fetchone()
            created = row is None
            if created:
                db.execute("INSERT INTO videos (fingerprint, path, domain, size, status, reason, created_at, "
                           "updated_at) VALUES (?, ?, ?, ?, ?, ?, ?, ?)",
                           (fingerprint, path, domain, size, status, reason, now, now))
                row = db.execute("SELECT * FROM videos WHERE fingerprint = ?", (fingerprint,)).fetchone()
            db.execute("INSERT OR REPLACE INTO files (path, size, mtime, video_id) VALUES (?, ?, ?, ?)",
                       (path, size, mtime, row["id"]))
        return _video(row), created

    def video(self, video_id: int) -> Video | None:
        row = self.db.execute("SELECT * FROM videos WHERE id = ?", (video_id,)).fetchone()
        return _video(row) if row else None

    def videos_with_status(self, *statuses: str, limit: int = 1_000_000) -> list[Video]:
        marks = ",".join("?" * len(statuses))
        rows = self.db.execute(f"SELECT * FROM videos WHERE status IN ({marks}) ORDER BY id LIMIT ?",
                               (*statuses, limit)).fetchall()
        return [_video(r) for r in rows]

    def set_video_status(self, video_id: int, status: str, reason: str = "", *, attempt: int | None = None,
                         windows: int | None = None, frames_read: int | None = None) -> None:
        self.db.execute(
            "UPDATE videos SET status = ?, reason = ?, attempt = COALESCE(?, attempt), "
            "windows = COALESCE(?, windows), frames_read = COALESCE(?, frames_read), updated_at = ? WHERE id = ?",
            (status, reason, attempt, windows, frames_read, time.time(), video_id))

    # --- patches -----------------------------------------------------------------------------------------------
    def patch_id(self, video_id: int, frame_index: int, person_index: int) -> int | None:
        row = self.db.execute("SELECT id FROM patches WHERE video_id = ? AND frame_index = ? AND person_index = ?",
                              (video_id, frame_index, person_index)).fetchone()
        return row["id"] if row else None

    def add_patch(self, fields: dict, keypoints: np.ndarray | None, path: str) -> tuple[int, bool]:
        """Insert a patch row unless its key exists; returns (patch id, indexed flag)."""
        existing = self.db.execute(
            "SELECT id, indexed FROM patches WHERE video_id = ? AND frame_index = ? AND person_index = ?",
            (fields["video_id"], fields["frame_index"], fields["person_index"])).fetchone()
        if existing:
            return existing["id"], bool(existing["indexed"])
        blob = None if keypoints is None else np.asarray(keypoints, np.float32).tobytes()
        cur = self.db.execute(
            "INSERT INTO patches (video_id, domain, window_index, frame_index, person_index, kind, timestamp, "
            "box, square, score, view, reason, keypoint_score, keypoints, path, created_at) "
            "VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
            (fields["video_id"], fields["domain"], fields["window_index"], fields["frame_index"],
             fields["person_index"], fields["kind"], fields["timestamp"], json.dumps(fields["box"]),
             json.dumps(fields["square"]), fields["score"], fields["view"], fields["reason"],
             fields["keypoint_score"], blob, path, time.time()))
        return int(cur.lastrowid), False

    def mark_indexed(self, patch_id: int) -> None:
        self.db.execute("UPDATE patches SET indexed = 1 WHERE id = ?", (patch_id,))

    def unindexed_patches(self) -> list[sqlite3.Row]:
        return self.db.execute("SELECT * FROM patches WHERE indexed = 0 AND view != 'REJECTED' ORDER BY id").fetchall()

    def indexed_keypoints(self) -> Iterator[sqlite3.Row]:
        """(id, domain, view, keypoints) of every indexed patch, oldest first (to rebuild the pose index)."""
        yield from self.db.execute("SELECT id, domain, view, keypoints FROM patches "
                                   "WHERE indexed = 1 AND view != 'REJECTED' ORDER BY id")

    def patch_paths(self, domain: str | None = None) -> list[tuple[int, str, str]]:
        """(id, path, view) of every kept (non-rejected) patch, oldest first."""
        sql = "SELECT id, path, view FROM patches WHERE view != 'REJECTED'"
        args: tuple = ()
        if domain is not None:
            sql += " AND domain = ?"
            args = (domain,)
        return [(r["id"], r["path"], r["view"]) for r in self.db.execute(sql + " ORDER BY id", args)]

    # --- pairs -------------------------------------------------------------------------------------------------
    def add_pair(self, a_patch_id: int, b_patch_id: int, view: str, similarity: float, mirrored: bool = False
                 ) -> bool:
        """Insert a pair; False when it was already known."""
        cur = self.db.execute(
            "INSERT OR IGNORE INTO pairs (a_patch_id, b_patch_id, view, similarity, created_at, mirrored) "
            "VALUES (?, ?, ?, ?, ?, ?)", (a_patch_id, b_patch_id, view, similarity, time.time(), int(mirrored)))
        return cur.rowcount == 1

    def pairs(self, include_bad: bool = False) -> list[sqlite3.Row]:
        """Every pair with both patch paths, oldest first; `mirrored` is 0 or 1. Pairs a person marked bad are left
        out (training, pairs.csv and every export read this) unless `include_bad`."""
        self._current()
        where = "" if include_bad or self.verdict_sql == "''" else " WHERE p.verdict != 'bad'"
        return self.db.execute(self.pair_rows_sql + where + " ORDER BY p.id").fetchall()

    def pairs_since(self, n: int) -> list[sqlite3.Row]:
        """The n most recently inserted pairs, oldest first."""
        rows = self.db.execute(self.pair_rows_sql + " ORDER BY p.id DESC LIMIT ?", (n,)).fetchall()
        return rows[::-1]

    def pair_count(self) -> int:
        return int(self.db.execute("SELECT COUNT(*) FROM pairs").fetchone()[0])

    # --- curation (the index applies verdicts; the web page reads) -------------------------------------------------
    def set_verdict(self, pair_id: int, verdict: str) -> bool:
        """Record a person's verdict on a pair; True when it changed (an unknown pair or the same verdict: False)."""
        cur = self.db.execute("UPDATE pairs SET verdict = ?, curated_at = ? WHERE id = ? AND verdict != ?",
                              (verdict, time.time(), pair_id, verdict))
        return cur.rowcount == 1

    def pair(self, pair_id: int) -> sqlite3.Row | None:
        """One pair with its patches and videos (the columns of pair_page)."""
        self._current()
        return self.db.execute(self.pair_page_sql + " WHERE p.id = ?", (pair_id,)).fetchone()

    def pair_page(self, *, view: str | None = None, order: str = "recent", after: tuple | None = None,
                  limit: int = 100, verdict: str | None = None) -> list[sqlite3.Row]:
        """One page of pairs for the web page, by keyset: `after` is the (similarity, id) of the previous page's
        last row (only id is used for "recent"), so a page costs the same however deep it is (no OFFSET).
        order: recent (newest first), similarity (best first) or similarity_asc (worst first, where bad pairs
        hide). verdict: None for all, or '' / good / bad."""
        if order not in PAIR_ORDERS:
            raise ValueError(f"order {order!r}: expected one of {', '.join(PAIR_ORDERS)}")
        self._current()
        where, args = [], []
        if view is not None:
            where.append("p.view = ?")
            args.append(view)
        if verdict is not None:
            where.append(f"{self.verdict_sql} = ?")
            args.append(verdict)
        if order == "recent":
            if after is not None:
                where.append("p.id < ?")
                args.append(int(after[1]))
            sort = "p.id DESC"
        else:
            op, direction = ("<", "DESC") if order == "similarity" else (">", "ASC")
            if after is not None:
                sim, pid = float(after[0]), int(after[1])
                where.append(f"(p.similarity {op} ? OR (p.similarity = ? AND p.id {op} ?))")
                args += [sim, sim, pid]
            sort = f"p.similarity {direction}, p.id {direction}"
        sql = self.pair_page_sql + (" WHERE " + " AND ".join(where) if where else "") + f" ORDER BY {sort} LIMIT ?"
        return self.db.execute(sql, (*args, limit)).fetchall()

    def verdict_counts(self) -> dict[str, int]:
        """Pairs per verdict ('' = not judged)."""
        self._current()
        rows = self.db.execute(f"SELECT {self.verdict_sql.replace('p.', '')} AS v, COUNT(*) FROM pairs GROUP BY 1")
        return {r[0]: r[1] for r in rows}

    # --- what the web page shows ---------------------------------------------------------------------------------
    def patch_file(self, patch_id: int) -> sqlite3.Row | None:
        """(id, domain, view, reason, path) of one patch; path is '' when no file was kept."""
        return self.db.execute("SELECT id, domain, view, reason, path FROM patches WHERE id = ?",
                               (patch_id,)).fetchone()

    def rejection_examples(self, reasons: tuple[str, ...], per_reason: int = 8) -> dict[str, list[sqlite3.Row]]:
        """The newest rejected patches that have a file, per reason."""
        out = {}
        for reason in reasons:
            out[reason] = self.db.execute(
                "SELECT p.id, p.domain, p.reason, p.timestamp, p.video_id, v.path AS video FROM patches p "
                "JOIN videos v ON v.id = p.video_id WHERE p.view = 'REJECTED' AND p.reason = ? AND p.path != '' "
                "ORDER BY p.id DESC LIMIT ?", (reason, per_reason)).fetchall()
        return out

    def videos_needing_attention(self, limit: int = 50) -> list[sqlite3.Row]:
        """The newest failed or partial videos with their reasons."""
        return self.db.execute("SELECT id, path, domain, status, reason, updated_at FROM videos "
                               "WHERE status IN ('failed', 'partial') ORDER BY id DESC LIMIT ?", (limit,)).fetchall()

    def kept_patches(self) -> Iterator[sqlite3.Row]:
        """Every kept (non-rejected) patch with what a COCO export needs, oldest first."""
        yield from self.db.execute("SELECT p.id, p.domain, p.view, p.box, p.square, p.score, p.keypoints, p.path, "
                                   "p.video_id, p.frame_index, p.timestamp, v.path AS video FROM patches p "
                                   "JOIN videos v ON v.id = p.video_id WHERE p.view != 'REJECTED' ORDER BY p.id")

    # --- summaries ---------------------------------------------------------------------------------------------
    def counts(self) -> dict[str, list[tuple]]:
        q = self.db.execute
        return {
            "videos": [tuple(r) for r in q("SELECT domain, status, COUNT(*) FROM videos GROUP BY 1, 2 ORDER BY 1, 2")],
            "patches": [tuple(r) for r in q("SELECT domain, view, COUNT(*) FROM patches GROUP BY 1, 2 ORDER BY 1, 2")],
            "rejections": [tuple(r) for r in q(
                "SELECT domain, reason, COUNT(*) FROM patches WHERE view = 'REJECTED' GROUP BY 1, 2 ORDER BY 1, 2")],
            "pairs": [tuple(r) for r in q("SELECT view, COUNT(*) FROM pairs GROUP BY 1 ORDER BY 1")],
            "curated": sorted((v, n) for v, n in self.verdict_counts().items() if v),
        }


def _video(row: sqlite3.Row) -> Video:
    return Video(row["id"], row["fingerprint"], row["path"], row["domain"], row["status"], row["reason"],
                 row["attempt"])
