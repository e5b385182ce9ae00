"""The embedded back end: one SQLite file, the default for a single controller.

The schema version lives in `PRAGMA user_version`. Version 0 is either a new file or
one written before versions existed (tables made as they were needed, columns added
later); step 1 brings both to the same schema. WAL lets readers (`report`) run while
a controller writes; it does not work on network file systems, so a team shares a
PostgreSQL database instead of a file.
"""

from __future__ import annotations

import contextlib
import logging
import sqlite3
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from controller.store.base import ResultStore, StoreError

log = logging.getLogger(__name__)

_TABLES = """
CREATE TABLE IF NOT EXISTS runs (
    run_id TEXT PRIMARY KEY,
    tag TEXT,
    started_at TEXT NOT NULL,
    finished_at TEXT,
    transfer TEXT,
    errors TEXT
);
CREATE TABLE IF NOT EXISTS run_devices (
    run_id TEXT NOT NULL REFERENCES runs(run_id),
    device TEXT NOT NULL,
    info TEXT NOT NULL,
    PRIMARY KEY (run_id, device)
);
CREATE TABLE IF NOT EXISTS cells (
    id INTEGER PRIMARY KEY,
    run_id TEXT NOT NULL REFERENCES runs(run_id),
    device TEXT NOT NULL,
    model TEXT NOT NULL,
    model_sha256 TEXT NOT NULL,
    variant TEXT,
    delegate TEXT NOT NULL,
    threads INTEGER NOT NULL,
    round INTEGER NOT NULL,
    status TEXT NOT NULL,
    p50_us REAL,
    cell TEXT NOT NULL
);
CREATE INDEX IF NOT EXISTS cells_by_run ON cells(run_id);
CREATE TABLE IF NOT EXISTS run_requests (
    run_id TEXT PRIMARY KEY REFERENCES runs(run_id),
    request TEXT NOT NULL
);
CREATE TABLE IF NOT EXISTS run_jobs (
    run_id TEXT NOT NULL REFERENCES runs(run_id),
    device TEXT NOT NULL,
    job_id TEXT NOT NULL,
    PRIMARY KEY (run_id, device)
);
CREATE INDEX IF NOT EXISTS runs_by_tag ON runs(tag, started_at);
CREATE TABLE IF NOT EXISTS regress_checks (
    candidate TEXT NOT NULL REFERENCES runs(run_id),
    baseline TEXT NOT NULL REFERENCES runs(run_id),
    regressed INTEGER NOT NULL,
    report TEXT NOT NULL,
    PRIMARY KEY (candidate, baseline)
);
"""
# Columns files from before schema versions may lack: (table, column, type).
_LATER_COLUMNS = (
    ("cells", "cell_index", "INTEGER"),
    ("cells", "fingerprint", "TEXT"),
    ("runs", "meta", "TEXT"),
    ("runs", "complete", "INTEGER"),
    ("runs", "variants", "TEXT"),
)


def _version_1(db: sqlite3.Connection) -> None:
    """The first versioned schema, from a new file or from any unversioned one."""
    # One statement at a time: executescript() would commit the migration's transaction.
    for statement in _TABLES.split(";"):
        if statement.strip():
            db.execute(statement)
    for table, column, kind in _LATER_COLUMNS:
        if column not in {row[1] for row in db.execute(f"PRAGMA table_info({table})")}:
            db.execute(f"ALTER TABLE {table} ADD COLUMN {column} {kind}")
    # Cells carry their index in the run's matrix: stored at most once per (run, device, index).
    db.execute("CREATE UNIQUE INDEX IF NOT EXISTS cells_once ON cells(run_id, device, cell_index)")
    db.execute("CREATE INDEX IF NOT EXISTS cells_by_fingerprint ON cells(fingerprint)")


# MIGRATIONS[n] takes a database from version n to n + 1.
MIGRATIONS = (_version_1,)
SCHEMA_VERSION = len(MIGRATIONS)


class SqliteStore(ResultStore):
    """A SQLite results file, safe to share between the threads of one controller."""

    run_order = "rowid"  # runs are inserted as they start: rowid order is start order

    def __init__(self, path: Path | str, must_exist: bool = False):
        super().__init__(str(path))
        self.path = Path(path)
        if self.path.is_dir():
            raise StoreError(f"{self.path} is a directory, not a results database file")
        if must_exist and not self.path.is_file():
            raise StoreError(f"no results database at {self.path} (run `controller run` first, "
                             "or name one with --db / EDGEBENCH_DB)")
        try:
            self.path.parent.mkdir(parents=True, exist_ok=True)
        except OSError as exc:
            reason = exc.strerror or exc
            raise StoreError(f"{self.path}: cannot create directory {self.path.parent}: {reason}") from None
        try:
            # isolation_level=None: transactions are explicit (BEGIN ... COMMIT in `_transaction`).
            self._db = sqlite3.connect(str(self.path), check_same_thread=False, isolation_level=None,
                                       timeout=30)
            self._db.execute("PRAGMA journal_mode=WAL")
            self._db.execute("PRAGMA foreign_keys=ON")
            self._migrate()
            if not must_exist:
                self._check_writable()
        except sqlite3.DatabaseError as exc:
            raise _store_error(self.path, exc) from None

    def _check_writable(self) -> None:
        """Raise SQLite's read-only error now, before a command's work, rather than at its first
        result. A store that may be created is opened to be written; readers (`must_exist`)
        may still read a file they cannot write."""
        self._db.execute("BEGIN IMMEDIATE")
        try:
            # Writes nothing: the same value, rolled back; SQLite refuses it on a read-only file.
            self._db.execute(f"PRAGMA user_version = {self.schema_version()}")
        finally:
            self._db.execute("ROLLBACK")

    def _migrate(self) -> None:
        """Apply the steps this file lacks, each with its version bump in one transaction."""
        # BEGIN IMMEDIATE takes the write lock first: two controllers opening one new file
        # do not both run step 1.
        self._db.execute("BEGIN IMMEDIATE")
        try:
            version = self.schema_version()
            if version > SCHEMA_VERSION:
                raise StoreError(f"{self.path} has schema version {version}, newer than this edgebench "
                                 f"knows ({SCHEMA_VERSION}): upgrade edgebench to use it")
            if version < SCHEMA_VERSION:
                log.info("%s: schema version %d -> %d", self.path, version, SCHEMA_VERSION)
            for step in range(version, SCHEMA_VERSION):
                MIGRATIONS[step](self._db)
                self._db.execute(f"PRAGMA user_version = {step + 1}")
            self._db.execute("COMMIT")
        except BaseException:
            self._db.execute("ROLLBACK")
            raise

    def schema_version(self) -> int:
        """`PRAGMA user_version`."""
        return self._db.execute("PRAGMA user_version").fetchone()[0]

    def _transaction(self):
        return _Transaction(self._db, self.path)

    def _execute(self, sql: str, params: Sequence[Any] = ()) -> sqlite3.Cursor:
        try:
            return self._db.execute(sql, params)
        except sqlite3.OperationalError as exc:
            raise _store_error(self.path, exc) from None

    def close(self) -> None:
        """Close the file."""
        self._db.close()


class _Transaction:
    """BEGIN ... COMMIT, or ROLLBACK when the block raises."""

    def __init__(self, db: sqlite3.Connection, path: Path):
        self._db = db
        self._path = path

    def __enter__(self) -> None:
        try:
            self._db.execute("BEGIN IMMEDIATE")
        except sqlite3.OperationalError as exc:
            raise _store_error(self._path, exc) from None

    def __exit__(self, kind, *exc) -> None:
        if kind:
            # The block's own error is the one to report; SQLite may have rolled back already.
            with contextlib.suppress(sqlite3.OperationalError):
                self._db.execute("ROLLBACK")
            return
        try:
            self._db.execute("COMMIT")
        except sqlite3.OperationalError as exc:
            raise _store_error(self._path, exc) from None


def _store_error(path: Path, exc: sqlite3.DatabaseError) -> StoreError:
    """One line naming the file for what SQLite refused: a read-only file or directory, a full
    disk, a lock held too long. SQLite itself does not say which file it means."""
    if "readonly" in str(exc):
        return StoreError(f"{path} cannot be written ({exc}): the file or its directory is read-only")
    return StoreError(f"{path}: {exc}")
