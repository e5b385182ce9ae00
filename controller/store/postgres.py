"""The shared back end: one PostgreSQL database for a team's controllers (`postgresql://...`).

Same tables and semantics as the SQLite file, so every command works on either. The
schema version lives in the table `edgebench_schema`; migrations run under a
transaction-scoped advisory lock, so controllers that start together against a new
database do not race each other. Each cell is its own transaction, and the unique
(run, device, index) key keeps a cell from being stored twice, whoever sends it.
psycopg 3 comes with the `postgres` extra and is imported only when a URL names it.

A connection that breaks (the server restarts, the connection is terminated, the
network drops) is opened again and the store operation it failed runs again whole,
for up to RECONNECT_S seconds per operation (environment variable
EDGEBENCH_DB_RECONNECT_S; 0 allows one attempt); then a StoreError says so in one line.
"""

from __future__ import annotations

import contextlib
import itertools
import logging
import os
import time
from collections.abc import Callable, Iterator, Sequence
from typing import Any, Optional, TypeVar

from controller.store.base import ResultStore, StoreError, redacted

log = logging.getLogger(__name__)

_T = TypeVar("_T")

#: Seconds an operation keeps reconnecting after its connection broke, unless
#: the environment variable RECONNECT_ENV says otherwise.
RECONNECT_S = 60.0
RECONNECT_ENV = "EDGEBENCH_DB_RECONNECT_S"
# Pauses between reconnect attempts: the first, doubled after each failure up to the last.
_FIRST_PAUSE_S = 0.5
_MAX_PAUSE_S = 8.0
# Seconds one connection attempt may take at most (libpq counts fewer than 2 as 2).
_CONNECT_TIMEOUT_S = 15

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


def _broke(connection: Any, exc: BaseException) -> bool:
    """Whether `exc` is `connection` breaking, as opposed to an SQL error on a working one."""
    psycopg = _psycopg()
    return isinstance(exc, (psycopg.OperationalError, psycopg.InterfaceError)) and connection.broken


def _reconnect_seconds() -> float:
    """How long an operation keeps reconnecting: RECONNECT_ENV if set, else RECONNECT_S."""
    text = os.environ.get(RECONNECT_ENV, "").strip()
    if not text:
        return RECONNECT_S
    try:
        seconds = float(text)
    except ValueError:
        seconds = -1.0
    if not seconds >= 0:  # also refuses nan
        raise StoreError(f"{RECONNECT_ENV}={text!r} is not a number of seconds (0 or more)")
    return seconds


class PostgresStore(ResultStore):
    """A PostgreSQL results database, shared by any number of controllers."""

    run_order = "seq"

    def __init__(self, url: str):
        super().__init__(url)
        psycopg = _psycopg()
        self.reconnect_s = _reconnect_seconds()
        # When the operation under way gives up reconnecting (time.monotonic()).
        self._deadline: Optional[float] = None
        try:
            self._db = self._connect(_CONNECT_TIMEOUT_S)
        except psycopg.Error as exc:
            raise StoreError(f"cannot connect to {redacted(url)}: {_first_line(exc)}") from None
        try:
            self._migrate()
        except psycopg.Error as exc:
            self._db.close()
            raise StoreError(f"{redacted(url)}: {_first_line(exc)}") from None

    def _connect(self, timeout: float) -> Any:
        """A new connection to the database."""
        # autocommit: reads leave no transaction open; writes use explicit transactions.
        return _psycopg().connect(self.location, autocommit=True, connect_timeout=max(2, round(timeout)))

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

    def _retrying(self, operation: Callable[[], _T]) -> _T:
        """Run a store operation; when the connection breaks, reconnect and run it again whole.

        That is safe: every write is one transaction whose inserts use ON CONFLICT, so a
        transaction the server rolled back when the connection went left nothing and runs
        again the same, and one whose COMMIT went unanswered is settled by `_transaction`
        before anything runs again. SQL errors are raised as they are.
        """
        self._deadline = None
        while True:
            connection = self._db
            try:
                return operation()
            except _psycopg().Error as exc:
                if not _broke(connection, exc):
                    raise
                # `_transaction` may have reconnected already, to settle a COMMIT.
                if self._db is connection:
                    self._reconnect(exc)

    @contextlib.contextmanager
    def _transaction(self) -> Iterator[None]:
        # BEGIN and COMMIT by hand: a transaction block would try (and log failing) a
        # ROLLBACK on a connection that is gone, and the server has ended it anyway.
        self._db.execute("BEGIN")
        try:
            yield
            # Asked last: a transaction has an id only once it has written something.
            # (pg_current_xact_id_if_assigned and pg_xact_status need PostgreSQL 13 or later.)
            xid = self._db.execute("SELECT pg_current_xact_id_if_assigned()::text").fetchone()[0]
        except BaseException:
            if not self._db.broken:
                self._db.execute("ROLLBACK")
            raise
        try:
            self._db.execute("COMMIT")
        except _psycopg().Error as exc:
            # When the connection broke after COMMIT was sent, the server may have committed.
            # Running the operation again would then find its own rows and answer "stored
            # already" (add_cell False, start_run RunExists), and a run would drop a cell it
            # stored; so ask the server how the transaction ended before running it again.
            if xid is None or not _broke(self._db, exc) or not self._committed(xid, exc):
                raise

    def _committed(self, xid: str, error: Exception) -> bool:
        """Whether transaction `xid`, whose COMMIT went unanswered, committed; asked on a new connection."""
        pause = _FIRST_PAUSE_S
        while True:
            if self._db.broken:
                self._reconnect(error)
            try:
                status = self._db.execute("SELECT pg_xact_status(%s::xid8)", (xid,)).fetchone()[0]
            except _psycopg().Error as exc:
                if not _broke(self._db, exc):
                    raise
                error = exc
                continue
            # "in progress": the server has not yet read the COMMIT, or noticed the old connection gone.
            if status != "in progress":
                return status == "committed"
            pause = self._pause(pause, error)

    def _reconnect(self, error: Exception) -> None:
        """Replace the broken connection, pausing longer after each failed attempt, until the
        operation has spent `reconnect_s` seconds; then StoreError."""
        psycopg = _psycopg()
        where = redacted(self.location)
        if self._deadline is None:
            self._deadline = time.monotonic() + self.reconnect_s
        lost_at = time.monotonic()
        log.warning("%s: connection lost (%s); reconnecting for up to %g s", where, _first_line(error),
                    self.reconnect_s)
        self._db.close()
        pause = _FIRST_PAUSE_S
        for attempt in itertools.count(1):
            try:
                self._db = self._connect(min(_CONNECT_TIMEOUT_S, self._deadline - time.monotonic()))
            except psycopg.OperationalError as exc:
                error = exc
                log.info("%s: reconnect attempt %d failed: %s", where, attempt, _first_line(exc))
                pause = self._pause(pause, error)
            else:
                log.warning("%s: reconnected after %.1f s", where, time.monotonic() - lost_at)
                return

    def _pause(self, pause: float, error: Exception) -> float:
        """Wait `pause` seconds (less if the operation's time runs out first); the next pause.

        StoreError, in one line and without the chain of errors behind it, once the time is up.
        """
        left = self._deadline - time.monotonic()
        if left <= 0:
            raise StoreError(f"lost the connection to {redacted(self.location)} and could not reconnect within "
                             f"{self.reconnect_s:g} s ({RECONNECT_ENV}): {_first_line(error)}") from None
        time.sleep(min(pause, left))
        return min(2 * pause, _MAX_PAUSE_S)

    def _execute(self, sql: str, params: Sequence[Any] = ()) -> Any:
        # The shared SQL uses `?`; psycopg wants `%s`.
        return self._db.execute(sql.replace("?", "%s"), tuple(params))

    def close(self) -> None:
        """Close the connection."""
        self._db.close()


def _first_line(exc: Exception) -> str:
    return str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__

