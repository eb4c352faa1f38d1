"""The catalog's two SQL dialects, and its schema as a list of versioned migrations.

Every query of the catalog is written once, in stages/store/catalog.py, in the SQL that SQLite (3.35+) and PostgreSQL
share: `?` placeholders, `INSERT ... ON CONFLICT`, `RETURNING`. What differs lives here and is small: column
types (PostgreSQL's REAL is 4 bytes and its INTEGER 4 bytes, so the schema names `{real}`, `{int}`, `{id}` and
`{blob}` and each dialect fills them in), placeholders, transactions, connection handling, which errors mean "the
database is unavailable right now", and how to look at tables and columns.

Schema changes are migrations: a new version appends one `Migration` (DDL in the shared syntax, and for an added
column the value older readers should see). The writer applies what is missing at start, each in its own
transaction, and records it in `schema_migrations`; readers never change the schema.
"""

from __future__ import annotations

import sqlite3
import time
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit, urlunsplit


@dataclass(frozen=True)
class Migration:
    version: int
    description: str
    statements: tuple[str, ...]
    # A column this migration adds, as (table, column, SQL literal a reader of an older catalog reads instead).
    adds_column: tuple[str, str, str] | None = None


MIGRATIONS: tuple[Migration, ...] = (
    Migration(1, "videos, files, patches and pairs", (
        """CREATE TABLE IF NOT EXISTS videos (
    id {id},
    fingerprint TEXT NOT NULL UNIQUE,
    path TEXT NOT NULL,
    domain TEXT NOT NULL,
    size {int} NOT NULL,
    status TEXT NOT NULL,          -- queued | processing | done | partial | failed
    reason TEXT NOT NULL DEFAULT '',
    attempt {int} NOT NULL DEFAULT 0,
    windows {int} NOT NULL DEFAULT 0,
    frames_read {int} NOT NULL DEFAULT 0,
    created_at {real} NOT NULL,
    updated_at {real} NOT NULL
)""",
        """CREATE TABLE IF NOT EXISTS files (
    path TEXT PRIMARY KEY,          -- every path seen, duplicates included
    size {int} NOT NULL,
    mtime {real} NOT NULL,
    video_id {int} NOT NULL REFERENCES videos(id)
)""",
        """CREATE TABLE IF NOT EXISTS patches (
    id {id},
    video_id {int} NOT NULL REFERENCES videos(id),
    domain TEXT NOT NULL,
    window_index {int} NOT NULL,
    frame_index {int} NOT NULL,
    person_index {int} NOT NULL,
    kind TEXT NOT NULL,              -- anchor | burst
    timestamp {real} NOT NULL,
    box TEXT NOT NULL,               -- JSON [x1, y1, x2, y2] in frame pixels
    square TEXT NOT NULL,            -- JSON square crop in frame pixels
    score {real} NOT NULL,
    view TEXT NOT NULL,
    reason TEXT NOT NULL DEFAULT '',
    keypoint_score {real} NOT NULL,
    keypoints {blob},                -- float32 (17, 3): x, y in patch pixels, confidence in [0, 1]
    path TEXT NOT NULL,              -- relative to the data folder (or the storage URL)
    indexed {int} NOT NULL DEFAULT 0,  -- 1 once paired (the pairing stage; REJECTED: at once)
    created_at {real} NOT NULL,
    UNIQUE (video_id, frame_index, person_index)
)""",
        "CREATE INDEX IF NOT EXISTS patches_by_view ON patches (domain, view)",
        """CREATE TABLE IF NOT EXISTS pairs (
    id {id},
    a_patch_id {int} NOT NULL REFERENCES patches(id),   -- first domain (movie)
    b_patch_id {int} NOT NULL REFERENCES patches(id),   -- second domain (game)
    view TEXT NOT NULL,
    similarity {real} NOT NULL,
    created_at {real} NOT NULL,
    UNIQUE (a_patch_id, b_patch_id)
)""",
    )),
    Migration(2, "pairs.mirrored: same pose once the second domain's image is flipped horizontally", (
        "ALTER TABLE pairs ADD COLUMN mirrored {int} NOT NULL DEFAULT 0",
    ), adds_column=("pairs", "mirrored", "0")),
    Migration(3, "pairs.verdict: a person's judgement ('' none | good | bad); bad pairs leave training and exports", (
        "ALTER TABLE pairs ADD COLUMN verdict TEXT NOT NULL DEFAULT ''",
    ), adds_column=("pairs", "verdict", "''")),
    Migration(4, "pairs.curated_at: when the verdict was last set", (
        "ALTER TABLE pairs ADD COLUMN curated_at {real} NOT NULL DEFAULT 0",
    ), adds_column=("pairs", "curated_at", "0")),
    Migration(5, "indexes for the web page's keyset-paged pair lists and rejection examples", (
        "CREATE INDEX IF NOT EXISTS pairs_by_similarity ON pairs (similarity, id)",
        "CREATE INDEX IF NOT EXISTS pairs_by_view_similarity ON pairs (view, similarity, id)",
        "CREATE INDEX IF NOT EXISTS pairs_by_view_id ON pairs (view, id)",
        "CREATE INDEX IF NOT EXISTS patches_by_reason ON patches (view, reason, id)",
    )),
    Migration(6, "pairs.verdict_seq: the order of verdict changes, so the trainer reads only the new ones", (
        "ALTER TABLE pairs ADD COLUMN verdict_seq {int} NOT NULL DEFAULT 0",
        "CREATE INDEX IF NOT EXISTS pairs_by_verdict_seq ON pairs (verdict_seq)",
    ), adds_column=("pairs", "verdict_seq", "0")),
    Migration(7, "patches.indexed means 'paired': the pairing stage follows the unpaired rows by id", (
        "UPDATE patches SET indexed = 1 WHERE view = 'REJECTED'",
        "CREATE INDEX IF NOT EXISTS patches_unpaired ON patches (indexed, id)",
    )),
    Migration(8, "files.domain: the domain folder a file was found in (a copy shows where it was dropped)", (
        "ALTER TABLE files ADD COLUMN domain TEXT NOT NULL DEFAULT ''",
    ), adds_column=("files", "domain", "''")),
    Migration(9, "videos.windows_expected: what the container promises, so progress shows 'done of expected'", (
        "ALTER TABLE videos ADD COLUMN windows_expected {int} NOT NULL DEFAULT 0",
    ), adds_column=("videos", "windows_expected", "0")),
    Migration(10, "videos.started_at: when the current attempt began, so progress shows the time left", (
        "ALTER TABLE videos ADD COLUMN started_at {real} NOT NULL DEFAULT 0",
    ), adds_column=("videos", "started_at", "0")),
    Migration(11, "videos.source: the video's name in shared storage ('' = its path is read where it was found)", (
        "ALTER TABLE videos ADD COLUMN source TEXT NOT NULL DEFAULT ''",
    ), adds_column=("videos", "source", "''")),
    Migration(12, "segments: the unit of ingest work, claimed by a machine with a lease (stages/store/segments.py)", (
        """CREATE TABLE IF NOT EXISTS segments (
    video_id {int} NOT NULL REFERENCES videos(id),
    seq {int} NOT NULL,
    start_window {int} NOT NULL,
    end_window {int} NOT NULL,      -- exclusive; 0 = to the end of the file (its container gave no duration)
    status TEXT NOT NULL,           -- pending | leased | done | partial | failed
    reason TEXT NOT NULL DEFAULT '',
    owner TEXT NOT NULL DEFAULT '', -- the machine holding the lease, then the one that finished it
    lease_until {real} NOT NULL DEFAULT 0,
    renewed_at {real} NOT NULL DEFAULT 0,
    attempt {int} NOT NULL DEFAULT 0,
    expired {int} NOT NULL DEFAULT 0,  -- leases of it that ran out and were taken over
    windows {int} NOT NULL DEFAULT 0,  -- done so far, then in all
    seconds {real} NOT NULL DEFAULT 0, -- of video decoded, once finished
    frames {int} NOT NULL DEFAULT 0,   -- frames of its own the decoder read, once finished
    PRIMARY KEY (video_id, seq)
)""",
        "CREATE INDEX IF NOT EXISTS segments_by_status ON segments (status, video_id, seq)",
    )),
    Migration(13, "patches.paired_seq: the order the pairing stage paired patches in, which the trainer follows "
              "(ids of patches written by several machines do not commit in order)", (
        "ALTER TABLE patches ADD COLUMN paired_seq {int} NOT NULL DEFAULT 0",
        "UPDATE patches SET paired_seq = id WHERE indexed = 1 AND view != 'REJECTED'",  # one writer so far: id order
        "CREATE INDEX IF NOT EXISTS patches_by_paired_seq ON patches (paired_seq)",
    ), adds_column=("patches", "paired_seq", "CASE WHEN indexed = 1 AND view != 'REJECTED' THEN id ELSE 0 END")),
)
LATEST = MIGRATIONS[-1].version

MIGRATIONS_TABLE = """CREATE TABLE IF NOT EXISTS schema_migrations (
    version {int} PRIMARY KEY,
    description TEXT NOT NULL,
    applied_at {real} NOT NULL
)"""


class CatalogError(RuntimeError):
    """A catalog that cannot be used (a schema newer than this program, a missing driver, a bad URL)."""


def is_url(target: str | Path) -> bool:
    return isinstance(target, str) and target.startswith(("postgresql://", "postgres://"))


def redact(url: str) -> str:
    """The URL without its password, for logs and messages."""
    parts = urlsplit(url)
    if parts.password is None:
        return url
    netloc = parts.netloc.replace(f":{parts.password}@", ":***@", 1)
    return urlunsplit(parts._replace(netloc=netloc))


class Row(tuple):
    """A result row read by position or by column name, like sqlite3.Row."""

    _index: dict[str, int]

    def __new__(cls, values: Sequence[Any], index: dict[str, int]) -> Row:
        row = super().__new__(cls, values)
        row._index = index
        return row

    def __getitem__(self, key):  # type: ignore[override]
        if isinstance(key, str):
            return super().__getitem__(self._index[key])
        return super().__getitem__(key)

    def keys(self) -> list[str]:
        return list(self._index)


class Dialect:
    """What differs between the backends. `db` is the DB-API connection (sqlite3 or psycopg)."""

    types: dict[str, str] = {}
    errors: tuple[type[BaseException], ...] = ()  # the database is unavailable, full or locked: worth a retry
    skip_locked: str = ""  # appended to a SELECT of rows to claim
    db: Any

    def render(self, ddl: str) -> str:
        return ddl.format(**self.types)

    def execute(self, sql: str, args: Sequence[Any] = ()) -> Any:
        raise NotImplementedError

    @contextmanager
    def transaction(self) -> Iterator[None]:
        raise NotImplementedError
        yield

    def rollback(self) -> None:
        """End a transaction a failure left open (and drop a broken connection), ignoring errors."""

    def close(self) -> None:
        self.db.close()

    def table_exists(self, table: str) -> bool:
        raise NotImplementedError

    def columns(self, table: str) -> set[str]:
        raise NotImplementedError

    def lock_schema(self) -> None:
        """Inside the migration transaction: keep two writers from migrating at once."""

    def describe(self) -> str:
        raise NotImplementedError


class SQLiteDialect(Dialect):
    types = {"id": "INTEGER PRIMARY KEY", "int": "INTEGER", "real": "REAL", "blob": "BLOB"}
    errors = (sqlite3.OperationalError,)
    skip_locked = ""  # one writer at a time (BEGIN IMMEDIATE): nothing to skip

    def __init__(self, path: Path, readonly: bool) -> None:
        self.path = Path(path)
        if readonly:
            self.db = sqlite3.connect(f"file:{self.path}?mode=ro", uri=True, timeout=30, isolation_level=None)
        else:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            self.db = sqlite3.connect(self.path, timeout=30, isolation_level=None)
            self.db.execute("PRAGMA journal_mode=WAL")
            self.db.execute("PRAGMA synchronous=NORMAL")
        self.db.row_factory = sqlite3.Row

    def execute(self, sql: str, args: Sequence[Any] = ()) -> sqlite3.Cursor:
        return self.db.execute(sql, tuple(args))

    @contextmanager
    def transaction(self) -> Iterator[None]:
        self.db.execute("BEGIN IMMEDIATE")
        try:
            yield
        except BaseException:
            self.db.execute("ROLLBACK")
            raise
        self.db.execute("COMMIT")

    def rollback(self) -> None:
        if self.db.in_transaction:
            try:
                self.db.execute("ROLLBACK")
            except sqlite3.Error:
                pass

    def table_exists(self, table: str) -> bool:
        return self.db.execute("SELECT 1 FROM sqlite_master WHERE type = 'table' AND name = ?",
                               (table,)).fetchone() is not None

    def columns(self, table: str) -> set[str]:
        return {row[1] for row in self.db.execute(f"PRAGMA table_info({table})")}

    def describe(self) -> str:
        return str(self.path)


class PostgresDialect(Dialect):
    """psycopg 3, autocommit (each statement commits unless inside `transaction()`), as the SQLite connection.

    A connection that broke (the server restarted) is replaced on the next statement outside a transaction; the
    statement that saw it break raises one of `errors`, which the index retries and readers report."""

    types = {"id": "BIGINT GENERATED BY DEFAULT AS IDENTITY PRIMARY KEY", "int": "BIGINT",
             "real": "DOUBLE PRECISION", "blob": "BYTEA"}
    MIGRATION_LOCK = 0x68756D616E  # any constant: pg_advisory_xact_lock serialises writers starting at once
    skip_locked = " FOR UPDATE SKIP LOCKED"  # machines claiming at once take different rows, none waits

    def __init__(self, url: str, readonly: bool, role: str = "") -> None:
        try:
            import psycopg
        except ImportError:
            raise CatalogError(f"catalog.url = {redact(url)!r} needs psycopg 3: pip install 'humanstyle[scale]'") \
                from None
        self.psycopg = psycopg
        self.url, self.readonly, self.role = url, readonly, role
        self.errors = transient_errors(url)
        self._tx_depth = 0
        self.db = None
        self._connect()

    def _connect(self) -> None:
        options = "-c default_transaction_read_only=on" if self.readonly else ""
        self.db = self.psycopg.connect(self.url, autocommit=True, connect_timeout=10, options=options,
                                       application_name=f"humanstyle{'-' + self.role if self.role else ''}",
                                       row_factory=_row_factory)

    def _usable(self) -> None:
        if self.db.closed or self.db.broken:
            if self._tx_depth:
                raise self.psycopg.OperationalError("the catalog connection broke inside a transaction")
            self._connect()

    def execute(self, sql: str, args: Sequence[Any] = ()) -> Any:
        self._usable()
        # psycopg's placeholders are %s, so a literal % is written %%.
        return self.db.execute(sql.replace("%", "%%").replace("?", "%s"), tuple(args))

    @contextmanager
    def transaction(self) -> Iterator[None]:
        self._usable()
        self._tx_depth += 1
        try:
            with self.db.transaction():
                yield
        finally:
            self._tx_depth -= 1

    def rollback(self) -> None:
        if self.db is not None and not self.db.closed and not self.db.broken:
            try:
                if self.db.info.transaction_status != self.psycopg.pq.TransactionStatus.IDLE:
                    self.db.rollback()
            except self.psycopg.Error:
                pass

    def close(self) -> None:
        if self.db is not None:
            self.db.close()

    def table_exists(self, table: str) -> bool:
        return self.execute("SELECT 1 FROM information_schema.tables WHERE table_schema = current_schema() "
                            "AND table_name = ?", (table,)).fetchone() is not None

    def columns(self, table: str) -> set[str]:
        return {r[0] for r in self.execute("SELECT column_name FROM information_schema.columns "
                                           "WHERE table_schema = current_schema() AND table_name = ?", (table,))}

    def lock_schema(self) -> None:
        self.execute("SELECT pg_advisory_xact_lock(?)", (self.MIGRATION_LOCK,))

    def describe(self) -> str:
        return redact(self.url)


def _row_factory(cursor: Any):
    names = [c.name for c in cursor.description] if cursor.description else []
    index = {n: i for i, n in enumerate(names)}
    return lambda values: Row(values, index)


def transient_errors(target: str | Path) -> tuple[type[BaseException], ...]:
    """The errors meaning "unavailable right now" for a catalog location, without connecting to it."""
    if is_url(target):
        try:
            import psycopg
        except ImportError:
            return ()
        return (psycopg.OperationalError, psycopg.InterfaceError)
    return SQLiteDialect.errors


def connect(target: str | Path, readonly: bool, role: str = "") -> Dialect:
    """The dialect for a catalog location: a postgresql:// URL or a SQLite file path."""
    if is_url(target):
        return PostgresDialect(str(target), readonly, role)
    if isinstance(target, str) and "://" in target:
        raise CatalogError(f"catalog.url = {target!r}: expected empty (SQLite in the data folder) or postgresql://")
    return SQLiteDialect(Path(target), readonly)


# --- versions --------------------------------------------------------------------------------------------------
def recorded_version(d: Dialect) -> int | None:
    """The highest version recorded in schema_migrations; None when the catalog predates versioning."""
    if not d.table_exists("schema_migrations"):
        return None
    row = d.execute("SELECT MAX(version) FROM schema_migrations").fetchone()
    return None if row[0] is None else int(row[0])


def found_version(d: Dialect) -> int:
    """The version of a catalog written before versions were recorded, read from its tables: 0 when empty."""
    if not d.table_exists("videos"):
        return 0
    version = 1
    for m in MIGRATIONS[1:]:
        if m.adds_column is None or m.adds_column[1] not in d.columns(m.adds_column[0]):
            break
        version = m.version
    return version


def schema_version(d: Dialect) -> int:
    recorded = recorded_version(d)
    return found_version(d) if recorded is None else recorded


def migrate(d: Dialect) -> list[int]:
    """Bring the schema to LATEST; returns the versions applied. Refuses a schema newer than this program."""
    applied = []
    with d.transaction():
        d.lock_schema()
        d.execute(d.render(MIGRATIONS_TABLE))
        if recorded_version(d) is None:
            for m in MIGRATIONS[:found_version(d)]:  # what an unversioned catalog already has
                d.execute("INSERT INTO schema_migrations (version, description, applied_at) VALUES (?, ?, ?)",
                          (m.version, f"{m.description} (found)", time.time()))
    current = recorded_version(d) or 0
    if current > LATEST:
        raise CatalogError(f"catalog {d.describe()} has schema version {current}, newer than this humanstyle knows "
                           f"({LATEST}): upgrade humanstyle")
    for m in MIGRATIONS[current:]:
        with d.transaction():
            d.lock_schema()
            if (recorded_version(d) or 0) >= m.version:  # another writer got there first
                continue
            for statement in m.statements:
                d.execute(d.render(statement))
            d.execute("INSERT INTO schema_migrations (version, description, applied_at) VALUES (?, ?, ?)",
                      (m.version, m.description, time.time()))
        applied.append(m.version)
    return applied


def missing_columns(version: int) -> dict[tuple[str, str], str]:
    """(table, column) -> the literal to read instead, for columns added after `version`."""
    return {m.adds_column[:2]: m.adds_column[2] for m in MIGRATIONS if m.version > version and m.adds_column}
