"""The catalog: videos, patches and pairs, in a SQLite file (the default) or a PostgreSQL database (`catalog.url`).

Two processes write: the index stage (videos, patches, verdicts) and the pairing stage (pairs, and the `indexed` flag
of the patches it paired); any process may read (`humanstyle status`, `export`, the trainer, on this
machine or, with PostgreSQL, on others). Writes are idempotent: a video is keyed by its content fingerprint, a
patch by (video, frame, person), a pair by its two patches, so replaying work after a crash never duplicates a row.

Every query is here, once, in the SQL both backends speak; their differences (types, placeholders, transactions,
reconnecting) are in stages/store/catalog_sql.py, with the schema as versioned migrations that the writer applies at
open. A reader of a catalog its writer has not upgraded yet reads the defaults of the columns it lacks.
"""

from __future__ import annotations

import json
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from humanstyle.stages.settings import PipelineSettings
from humanstyle.stages.store.catalog_sql import (
    LATEST,
    MIGRATIONS,
    CatalogError,
    Dialect,
    Row,
    SQLiteDialect,
    connect,
    migrate,
    missing_columns,
    redact,
    schema_version,
    transient_errors,
)
from humanstyle.stages.vocabulary import NUM_KEYPOINTS

__all__ = ["Catalog", "CatalogError", "Video", "UNFINISHED", "SCHEMA", "catalog_errors", "catalog_exists",
           "catalog_target", "open_catalog"]

# The first version's tables in SQLite's words (what a catalog of the first release holds; tests build one from it).
SCHEMA = "".join(ddl.format(**SQLiteDialect.types) + ";\n" for ddl in MIGRATIONS[0].statements)

UNFINISHED = ("queued", "processing")
PAIR_ORDERS = ("recent", "similarity", "similarity_asc")  # Catalog.pair_page's sort orders
# A copy: a file whose content is a video already known under another path.
COPIES = "FROM files f JOIN videos v ON v.id = f.video_id WHERE f.path != v.path"


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
    """`target`: a SQLite file path or a postgresql:// URL (see `open_catalog`). `role` names the process in
    PostgreSQL's activity view."""

    def __init__(self, target: Path | str, readonly: bool = False, role: str = "") -> None:
        self.dialect: Dialect = connect(target, readonly, role)
        if not readonly:
            migrate(self.dialect)
        self.version = schema_version(self.dialect)
        self._build_sql()

    def _build_sql(self) -> None:
        """The pair queries. A reader may open a catalog that its writer has not upgraded yet: it reads the defaults
        of the columns it lacks, and looks again on its next pair query (see _current)."""
        absent = missing_columns(self.version)
        mirrored = absent.get(("pairs", "mirrored"), "p.mirrored")
        self.verdict_sql = absent.get(("pairs", "verdict"), "p.verdict")
        self.verdict_seq_sql = absent.get(("pairs", "verdict_seq"), "p.verdict_seq")
        self.files_domain_sql = absent.get(("files", "domain"), "f.domain")
        self.paired_seq_sql = absent.get(("patches", "paired_seq"), "paired_seq")
        # Windows done: those of its segments, finished or in progress (renewed every few seconds).
        done = ("(SELECT COALESCE(SUM(s.windows), 0) FROM segments s WHERE s.video_id = v.id)"
                if self.version >= 12 else "v.windows")
        attempt = ("(SELECT COALESCE(MAX(s.attempt), 0) FROM segments s WHERE s.video_id = v.id)"
                   if self.version >= 12 else "v.attempt")
        self.progress_sql = (f"SELECT v.id, v.path, v.domain, {attempt} AS attempt, {done} AS windows, "
                             f"{absent.get(('videos', 'windows_expected'), 'v.windows_expected')} AS windows_expected, "
                             f"{absent.get(('videos', 'started_at'), 'v.started_at')} AS started_at FROM videos v "
                             "WHERE v.status = 'processing' ORDER BY v.id LIMIT ?")
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
        """A long-lived reader (the trainer, the web page) opened before its writer upgraded the schema sees the new
        columns from its next pair query on, without a restart."""
        if self.version < LATEST:
            version = schema_version(self.dialect)
            if version != self.version:
                self.version = version
                self._build_sql()

    @property
    def db(self):
        """The DB-API connection (sqlite3 or psycopg)."""
        return self.dialect.db

    @property
    def errors(self) -> tuple[type[BaseException], ...]:
        """Errors that mean the database is unavailable, full or locked right now (worth retrying)."""
        return self.dialect.errors

    def _q(self, sql: str, args: tuple = ()):
        return self.dialect.execute(sql, args)

    def close(self) -> None:
        self.dialect.close()

    def rollback(self) -> None:
        """After a failed write: end the transaction it left open; a broken connection is replaced on next use."""
        self.dialect.rollback()

    @contextmanager
    def transaction(self) -> Iterator[None]:
        with self.dialect.transaction():
            yield

    # --- videos ------------------------------------------------------------------------------------------------
    def known_file(self, path: str, size: int, mtime: float) -> bool:
        row = self._q("SELECT size, mtime FROM files WHERE path = ?", (path,)).fetchone()
        return row is not None and row["size"] == size and row["mtime"] == mtime

    def add_video(self, fingerprint: str, path: str, domain: str, size: int, mtime: float,
                  status: str = "queued", reason: str = "") -> tuple[Video, bool]:
        """Insert a video (or find it by fingerprint) and remember the path; returns (video, created)."""
        now = time.time()
        with self.transaction():
            row = self._q("SELECT * FROM videos WHERE fingerprint = ?", (fingerprint,)).fetchone()
            created = row is None
            if created:
                self._q("INSERT INTO videos (fingerprint, path, domain, size, status, reason, created_at, "
                        "updated_at) VALUES (?, ?, ?, ?, ?, ?, ?, ?)",
                        (fingerprint, path, domain, size, status, reason, now, now))
                row = self._q("SELECT * FROM videos WHERE fingerprint = ?", (fingerprint,)).fetchone()
            self._q("INSERT INTO files (path, size, mtime, video_id, domain) VALUES (?, ?, ?, ?, ?) ON CONFLICT (path) "
                    "DO UPDATE SET size = excluded.size, mtime = excluded.mtime, video_id = excluded.video_id, "
                    "domain = excluded.domain", (path, size, mtime, row["id"], domain))
        return _video(row), created

    def copies(self, limit: int = 1000) -> list[Row]:
        """Files found to be copies of a video already in the catalog (same content, another path), by path:
        (path, domain it was dropped into, video_id, original path, original domain). None is processed again."""
        self._current()
        return self._q(f"SELECT f.path, {self.files_domain_sql} AS domain, v.id AS video_id, v.path AS original, "
                       f"v.domain AS original_domain {COPIES} ORDER BY f.path LIMIT ?", (limit,)).fetchall()

    def copy_count(self) -> int:
        return int(self._q(f"SELECT COUNT(*) {COPIES}").fetchone()[0])

    def video(self, video_id: int) -> Video | None:
        row = self._q("SELECT * FROM videos WHERE id = ?", (video_id,)).fetchone()
        return _video(row) if row else None

    def videos_with_status(self, *statuses: str, limit: int = 1_000_000) -> list[Video]:
        marks = ",".join("?" * len(statuses))
        rows = self._q(f"SELECT * FROM videos WHERE status IN ({marks}) ORDER BY id LIMIT ?",
                               (*statuses, limit)).fetchall()
        return [_video(r) for r in rows]

    def preview_candidates(self, domain: str, first: int) -> list[Row]:
        """Among the first `first` finished videos of `domain`: id, path, source and the time of its first person,
        the most person patches first (the trainer's preview clip)."""
        return self._q(
            "SELECT v.id, v.path, v.source, MIN(p.timestamp) AS first_person, COUNT(*) AS persons FROM videos v "
            "JOIN patches p ON p.video_id = v.id WHERE v.id IN (SELECT id FROM videos WHERE domain = ? AND status "
            "IN ('done', 'partial') ORDER BY id LIMIT ?) GROUP BY v.id, v.path, v.source ORDER BY persons DESC, v.id",
            (domain, first)).fetchall()

    def set_video_status(self, video_id: int, status: str, reason: str = "", *, attempt: int | None = None,
                         windows: int | None = None, frames_read: int | None = None) -> None:
        self._q(
            "UPDATE videos SET status = ?, reason = ?, attempt = COALESCE(?, attempt), "
            "windows = COALESCE(?, windows), frames_read = COALESCE(?, frames_read), updated_at = ? WHERE id = ?",
            (status, reason, attempt, windows, frames_read, time.time(), video_id))

    def videos_in_progress(self, limit: int = 50) -> list[Row]:
        """Videos being processed: (id, path, domain, attempt (the highest of its segments'), windows done,
        windows_expected, started_at: when its first segment was claimed)."""
        self._current()
        return self._q(self.progress_sql, (limit,)).fetchall()

    # --- patches -----------------------------------------------------------------------------------------------
    def patch_id(self, video_id: int, frame_index: int, person_index: int) -> int | None:
        row = self._q("SELECT id FROM patches WHERE video_id = ? AND frame_index = ? AND person_index = ?",
                              (video_id, frame_index, person_index)).fetchone()
        return row["id"] if row else None

    def add_patch(self, fields: dict, keypoints: np.ndarray | None, path: str) -> tuple[int, bool]:
        """Insert a patch row unless its key exists; returns (patch id, indexed flag)."""
        key = (fields["video_id"], fields["frame_index"], fields["person_index"])
        find = "SELECT id, indexed FROM patches WHERE video_id = ? AND frame_index = ? AND person_index = ?"
        existing = self._q(find, key).fetchone()
        if existing:
            return existing["id"], bool(existing["indexed"])
        blob = None if keypoints is None else np.asarray(keypoints, np.float32).tobytes()  # keypoints_of reads it
        paired = int(fields["view"] == "REJECTED")  # nothing to pair: the pairing stage never sees it
        # ON CONFLICT: another machine may write the same key meanwhile (a segment whose lease it took over).
        row = self._q(
            "INSERT INTO patches (video_id, domain, window_index, frame_index, person_index, kind, timestamp, "
            "box, square, score, view, reason, keypoint_score, keypoints, path, created_at, indexed) "
            "VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?) "
            "ON CONFLICT (video_id, frame_index, person_index) DO NOTHING RETURNING id",
            (fields["video_id"], fields["domain"], fields["window_index"], fields["frame_index"],
             fields["person_index"], fields["kind"], fields["timestamp"], json.dumps(fields["box"]),
             json.dumps(fields["square"]), fields["score"], fields["view"], fields["reason"],
             fields["keypoint_score"], blob, path, time.time(), paired)).fetchone()
        if row is None:
            existing = self._q(find, key).fetchone()
            return existing["id"], bool(existing["indexed"])
        return int(row[0]), bool(paired)

    def mark_indexed(self, patch_ids: list[int]) -> None:
        """The pairing stage is done with these patches (their pairs are recorded). Kept ones are numbered in
        `paired_seq` in the order given: the pairing stage is their only writer, so the numbers commit in order,
        which is what the trainer's watermark needs (patch ids from several machines do not)."""
        ids = [int(i) for i in patch_ids]
        with self.transaction():
            base = int(self._q("SELECT COALESCE(MAX(paired_seq), 0) FROM patches").fetchone()[0])
            for start in range(0, len(ids), 400):  # 2 parameters a row, under SQLite's older limit of 999
                part = ids[start : start + 400]
                values = ",".join(["(?, ?)"] * len(part))
                args = tuple(v for i, pid in enumerate(part, start=base + start + 1) for v in (pid, i))
                self._q(f"WITH v(id, seq) AS (VALUES {values}) UPDATE patches SET indexed = 1, paired_seq = "
                        "CASE WHEN view = 'REJECTED' THEN 0 ELSE (SELECT seq FROM v WHERE v.id = patches.id) END "
                        "WHERE id IN (SELECT id FROM v)", args)

    def unindexed_patches(self, limit: int = 1_000_000_000) -> list[Row]:
        """The oldest kept patches not paired yet: (id, domain, view, keypoints, created_at)."""
        return self._q("SELECT id, domain, view, keypoints, created_at FROM patches WHERE indexed = 0 "
                       "AND view != 'REJECTED' ORDER BY id LIMIT ?", (limit,)).fetchall()

    def unindexed_count(self) -> int:
        """Kept patches waiting for the pairing stage."""
        return int(self._q("SELECT COUNT(*) FROM patches WHERE indexed = 0 AND view != 'REJECTED'").fetchone()[0])

    def indexed_keypoints(self) -> Iterator[Row]:
        """(id, domain, view, keypoints) of every indexed patch, oldest first (to rebuild the pose store)."""
        yield from self._q("SELECT id, domain, view, keypoints FROM patches "
                           "WHERE indexed = 1 AND view != 'REJECTED' ORDER BY id")

    def patch_paths(self, domain: str | None = None, upto: int | None = None, after: int | None = None
                    ) -> list[tuple[int, str, str]]:
        """(id, path, view) of every kept (non-rejected) patch, oldest first; with `upto`, only ids <= upto (a
        watermark, so that readers at different moments read the same rows); with `after`, only ids > after."""
        sql = "SELECT id, path, view FROM patches WHERE view != 'REJECTED'"
        args: tuple = ()
        if domain is not None:
            sql += " AND domain = ?"
            args = (domain,)
        if upto is not None:
            sql += " AND id <= ?"
            args += (upto,)
        if after is not None:
            sql += " AND id > ?"
            args += (after,)
        return [(r["id"], r["path"], r["view"]) for r in self._q(sql + " ORDER BY id", args)]

    # --- pairs -------------------------------------------------------------------------------------------------
    def add_pair(self, a_patch_id: int, b_patch_id: int, view: str, similarity: float, mirrored: bool = False
                 ) -> bool:
        """Insert a pair; False when it was already known."""
        cur = self._q(
            "INSERT INTO pairs (a_patch_id, b_patch_id, view, similarity, created_at, mirrored) "
            "VALUES (?, ?, ?, ?, ?, ?) ON CONFLICT DO NOTHING",
            (a_patch_id, b_patch_id, view, similarity, time.time(), int(mirrored)))
        return cur.rowcount == 1

    def pairs(self, upto: int | None = None, include_bad: bool = False, after: int | None = None) -> list[Row]:
        """Every pair with both patch paths, oldest first; `mirrored` is 0 or 1. Pairs a person marked bad are left
        out (training, pairs.csv and every export read this) unless `include_bad`. With `upto`, only pair ids <=
        upto (a watermark); with `after`, only ids > after."""
        self._current()
        where, args = [], []
        if not include_bad and self.verdict_sql != "''":
            where.append("p.verdict != 'bad'")
        if upto is not None:
            where.append("p.id <= ?")
            args.append(upto)
        if after is not None:
            where.append("p.id > ?")
            args.append(after)
        sql = self.pair_rows_sql + (" WHERE " + " AND ".join(where) if where else "") + " ORDER BY p.id"
        return self._q(sql, tuple(args)).fetchall()

    def watermark(self) -> tuple[int, int, int]:
        """(highest pair id, highest paired_seq of a kept patch, latest verdict change), read in one statement (one
        snapshot). Both first numbers only grow, in commit order, since one process writes each (the pairing stage):
        reading `pairs(upto=...)` and `training_patches(upto=...)` below a watermark gives every reader the same
        rows, whenever it reads. The third number lets a reader that loaded up to an earlier watermark ask only for
        the verdicts changed since (`verdict_changes`)."""
        self._current()
        seq = self.verdict_seq_sql.replace("p.", "")
        row = self._q("SELECT (SELECT COALESCE(MAX(id), 0) FROM pairs), "
                      f"(SELECT COALESCE(MAX({self.paired_seq_sql}), 0) FROM patches), "
                      f"(SELECT COALESCE(MAX({seq}), 0) FROM pairs)").fetchone()
        return int(row[0]), int(row[1]), int(row[2])

    def training_patches(self, domain: str, upto: int, after: int | None = None) -> list[tuple[int, str, str]]:
        """(id, path, view) of the kept patches of `domain` the pairing stage has paired, in that order, with
        paired_seq <= upto (a watermark's second number) and > after."""
        self._current()
        seq = self.paired_seq_sql
        sql = (f"SELECT id, path, view FROM patches WHERE view != 'REJECTED' AND domain = ? AND {seq} > ? "
               f"AND {seq} <= ? ORDER BY {seq}")
        return [(r["id"], r["path"], r["view"]) for r in self._q(sql, (domain, after or 0, upto))]

    def verdict_changes(self, after_seq: int, upto: int) -> list[Row]:
        """The pairs with id <= upto whose verdict changed after verdict change `after_seq` (a watermark's third
        number), with their current verdict and the columns of `pairs`, oldest first."""
        self._current()
        if self.verdict_seq_sql == "0":
            return []
        sql = (self.pair_rows_sql.replace(" FROM pairs p", f", {self.verdict_sql} AS verdict FROM pairs p", 1)
               + " WHERE p.verdict_seq > ? AND p.id <= ? ORDER BY p.id")
        return self._q(sql, (after_seq, upto)).fetchall()

    def latest_pairs(self, n: int) -> list[Row]:
        """The n most recently inserted pairs, oldest first."""
        rows = self._q(self.pair_rows_sql + " ORDER BY p.id DESC LIMIT ?", (n,)).fetchall()
        return rows[::-1]

    def pair_count(self) -> int:
        return int(self._q("SELECT COUNT(*) FROM pairs").fetchone()[0])

    # --- curation (the index applies verdicts; the web page reads) -------------------------------------------------
    def set_verdict(self, pair_id: int, verdict: str) -> bool:
        """Record a person's verdict on a pair; True when it changed (an unknown pair or the same verdict: False)."""
        # verdict_seq numbers the changes (one writer: the index), so readers ask for those after the last they saw.
        cur = self._q("UPDATE pairs SET verdict = ?, curated_at = ?, verdict_seq = "
                      "(SELECT COALESCE(MAX(verdict_seq), 0) + 1 FROM pairs) WHERE id = ? AND verdict != ?",
                      (verdict, time.time(), pair_id, verdict))
        return cur.rowcount == 1

    def pair(self, pair_id: int) -> Row | None:
        """One pair with its patches and videos (the columns of pair_page)."""
        self._current()
        return self._q(self.pair_page_sql + " WHERE p.id = ?", (pair_id,)).fetchone()

    def pair_page(self, *, view: str | None = None, order: str = "recent", after: tuple | None = None,
                  limit: int = 100, verdict: str | None = None) -> list[Row]:
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
        return self._q(sql, (*args, limit)).fetchall()

    def verdict_counts(self) -> dict[str, int]:
        """Pairs per verdict ('' = not judged)."""
        self._current()
        rows = self._q(f"SELECT {self.verdict_sql.replace('p.', '')} AS v, COUNT(*) FROM pairs GROUP BY 1")
        return {r[0]: r[1] for r in rows}

    # --- what the web page shows ---------------------------------------------------------------------------------
    def patch_file(self, patch_id: int) -> Row | None:
        """(id, domain, view, reason, path) of one patch; path is '' when no file was kept."""
        return self._q("SELECT id, domain, view, reason, path FROM patches WHERE id = ?", (patch_id,)).fetchone()

    def rejection_examples(self, reasons: tuple[str, ...], per_reason: int = 8) -> dict[str, list[Row]]:
        """The newest rejected patches that have a file, per reason."""
        out = {}
        for reason in reasons:
            out[reason] = self._q(
                "SELECT p.id, p.domain, p.reason, p.timestamp, p.video_id, v.path AS video FROM patches p "
                "JOIN videos v ON v.id = p.video_id WHERE p.view = 'REJECTED' AND p.reason = ? AND p.path != '' "
                "ORDER BY p.id DESC LIMIT ?", (reason, per_reason)).fetchall()
        return out

    def videos_needing_attention(self, limit: int = 50) -> list[Row]:
        """The newest failed or partial videos with their reasons."""
        return self._q("SELECT id, path, domain, status, reason, updated_at FROM videos "
                       "WHERE status IN ('failed', 'partial') ORDER BY id DESC LIMIT ?", (limit,)).fetchall()

    def kept_patches(self) -> Iterator[Row]:
        """Every kept (non-rejected) patch with what a COCO export needs, oldest first."""
        yield from self._q("SELECT p.id, p.domain, p.view, p.box, p.square, p.score, p.keypoints, p.path, "
                           "p.video_id, p.frame_index, p.timestamp, v.path AS video FROM patches p "
                           "JOIN videos v ON v.id = p.video_id WHERE p.view != 'REJECTED' ORDER BY p.id")

    # --- summaries ---------------------------------------------------------------------------------------------
    def counts(self) -> dict[str, list[tuple]]:
        q = self._q
        return {
            "videos": [tuple(r) for r in q("SELECT domain, status, COUNT(*) FROM videos GROUP BY 1, 2 ORDER BY 1, 2")],
            "patches": [tuple(r) for r in q("SELECT domain, view, COUNT(*) FROM patches GROUP BY 1, 2 ORDER BY 1, 2")],
            "rejections": [tuple(r) for r in q(
                "SELECT domain, reason, COUNT(*) FROM patches WHERE view = 'REJECTED' GROUP BY 1, 2 ORDER BY 1, 2")],
            "pairs": [tuple(r) for r in q("SELECT view, COUNT(*) FROM pairs GROUP BY 1 ORDER BY 1")],
            "curated": sorted((v, n) for v, n in self.verdict_counts().items() if v),
        }


def keypoints_of(blob: bytes | None) -> np.ndarray | None:
    """A patch row's keypoints column as (17, 3) [x, y, confidence] float32 (None where none were found)."""
    return None if blob is None else np.frombuffer(blob, np.float32).reshape(NUM_KEYPOINTS, 3)


def catalog_target(settings: PipelineSettings) -> Path | str:
    """Where the settings put the catalog: `catalog.url` when set, else the SQLite file in the data folder."""
    return settings.catalog.url or settings.paths.catalog


def catalog_exists(settings: PipelineSettings) -> bool:
    """Whether there is a catalog to read yet (a SQLite file, or a PostgreSQL database holding the schema)."""
    target = catalog_target(settings)
    if isinstance(target, Path):
        return target.exists()
    try:
        catalog = Catalog(target, readonly=True)
    except transient_errors(target) as exc:
        raise CatalogError(f"cannot reach the catalog at {redact(target)}: "
                           f"{str(exc).strip()}") from None
    try:
        return catalog.version > 0
    finally:
        catalog.close()


def catalog_errors(settings: PipelineSettings) -> tuple[type[BaseException], ...]:
    """What reading or writing the configured catalog raises while it is unavailable (a restarting server)."""
    return transient_errors(catalog_target(settings))


def open_catalog(settings: PipelineSettings, readonly: bool = False, role: str = "") -> Catalog:
    """The catalog the settings name; the writer (readonly False) creates or upgrades its schema."""
    return Catalog(catalog_target(settings), readonly=readonly, role=role)


def _video(row: Row) -> Video:
    return Video(row["id"], row["fingerprint"], row["path"], row["domain"], row["status"], row["reason"],
                 row["attempt"])
