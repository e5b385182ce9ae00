"""The shared back end: one PostgreSQL database for a team's controllers (`postgresql://...`).

Same tables and semantics as the SQLite file, so every command works on either. The
schema version lives in the table `edgebench_schema`; migrations run under a
transaction-scoped advisory lock, so controllers that start together against a new
database do not race each other. Each cell is its own transaction, and the unique
(run, device, index) key keeps a cell from being stored twice, whoever sends it.
psycopg 3 comes with the `postgres` extra and is imported only when a URL names it.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from typing import Any

from controller.store.base import ResultStore, StoreError, redacted

log = logging.getLogger(__name__)

# Any fixed number: the key of the advisory lock migrations hold.
_MIGRATION_LOCK = 0x6564_6765  # "edge"

_VERSION_1 = """
CREATE TABLE runs (
    seq BIGSERIAL UNIQUE,
    run_id TEXT PRIMARY KEY,
    tag TEXT,
    started_at TEXT NOT NULL,
    finished_at TEXT,
    transfer TEXT,
    errors TEXT,
    meta TEXT,
    complete INTEGER,
    variants TEXT
);
CREATE INDEX runs_by_tag ON runs(tag, started_at);
CREATE TABLE run_devices (
    run_id TEXT NOT NULL REFERENCES runs(run_id),
    device TEXT NOT NULL,
    info TEXT NOT NULL,
    PRIMARY KEY (run_id, device)
);
CREATE TABLE cells (
    id BIGSERIAL PRIMARY KEY,
    run_id TEXT NOT NULL REFERENCES runs(run_id),
    device TEXT NOT NULL,
    model TEXT NOT NULL,
    model_sha256 TEXT NOT NULL,
    variant TEXT,
    delegate TEXT NOT NULL,
    threads INTEGER NOT NULL,
    round INTEGER NOT NULL,
    status TEXT NOT NULL,
    p50_us DOUBLE PRECISION,
    cell TEXT NOT NULL,
    cell_index INTEGER,
    fingerprint TEXT
);
CREATE INDEX cells_by_run ON cells(run_id);
CREATE UNIQUE INDEX cells_once ON cells(run_id, device, cell_index);
CREATE INDEX cells_by_fingerprint ON cells(fingerprint);
CREATE TABLE run_requests (
    run_id TEXT PRIMARY KEY REFERENCES runs(run_id),
    request TEXT NOT NULL
);
CREATE TABLE run_jobs (
    run_id TEXT NOT NULL REFERENCES runs(run_id),
    device TEXT NOT NULL,
    job_id TEXT NOT NULL,
    PRIMARY KEY (run_id, device)
);
CREATE TABLE regress_checks (
    candidate TEXT NOT NULL REFERENCES runs(run_id),
    baseline TEXT NOT NULL REFERENCES runs(run_id),
    regressed INTEGER NOT NULL,
    report TEXT NOT NULL,
    PRIMARY KEY (candidate, baseline)
)
"""

# MIGRATIONS[n] takes a database from version n to n + 1 (SQL statements).
MIGRATIONS = (_VERSION_1,)
SCHEMA_VERSION = len(MIGRATIONS)


def _psycopg():
    try:
        import psycopg
    except ImportError:
        raise StoreError("a postgresql:// database needs psycopg 3: "
                         "pip install 'edgebench[postgres]'") from None
    return psycopg


class PostgresStore(ResultStore):
    """A PostgreSQL results database, shared by any number of controllers."""

    run_order = "seq"

    def __init__(self, url: str):
        super().__init__(url)
        psycopg = _psycopg()
        try:
            # autocommit: reads leave no transaction open; writes use explicit transactions.
            self._db = psycopg.connect(url, autocommit=True, connect_timeout=15)
        except psycopg.Error as exc:
            raise StoreError(f"cannot connect to {redacted(url)}: {_first_line(exc)}") from None
        try:
            self._migrate()
        except psycopg.Error as exc:
            self._db.close()
            raise StoreError(f"{redacted(url)}: {_first_line(exc)}") from None

    def _migrate(self) -> None:
        """Apply the steps this database lacks, under a lock that other controllers wait for."""
        with self._db.transaction():
            self._db.execute("SELECT pg_advisory_xact_lock(%s)", (_MIGRATION_LOCK,))
            self._db.execute("CREATE TABLE IF NOT EXISTS edgebench_schema (version INTEGER NOT NULL)")
            version = self.schema_version()
            if version > SCHEMA_VERSION:
                raise StoreError(f"{redacted(self.location)} has schema version {version}, newer than this "
                                 f"edgebench knows ({SCHEMA_VERSION}): upgrade edgebench to use it")
            if version < SCHEMA_VERSION:
                log.info("%s: schema version %d -> %d", redacted(self.location), version, SCHEMA_VERSION)
            for step in range(version, SCHEMA_VERSION):
                for statement in MIGRATIONS[step].split(";"):
                    if statement.strip():
                        self._db.execute(statement)
                self._db.execute("DELETE FROM edgebench_schema")
                self._db.execute("INSERT INTO edgebench_schema (version) VALUES (%s)", (step + 1,))

    def schema_version(self) -> int:
        """The version recorded in `edgebench_schema` (0 for a new database)."""
        row = self._db.execute("SELECT max(version) FROM edgebench_schema").fetchone()
        return row[0] or 0

    def _transaction(self):
        return self._db.transaction()

    def _execute(self, sql: str, params: Sequence[Any] = ()) -> Any:
        # The shared SQL uses `?`; psycopg wants `%s`.
        return self._db.execute(sql.replace("?", "%s"), tuple(params))

    def close(self) -> None:
        """Close the connection."""
        self._db.close()


def _first_line(exc: Exception) -> str:
    return str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__

