"""The results history: runs, the devices they measured and their cells, in SQLite.

Each cell is committed in its own transaction as it arrives, so an interrupted run
keeps everything measured until then. Cells are stored whole as JSON (the docs/contract.md
shape) next to the columns queries filter on.
"""

from __future__ import annotations

import functools
import sqlite3
import threading
from pathlib import Path
from typing import Optional

import msgspec

from agent.wire.records import Cell
from controller.records import DeviceInfo, FamilyComparison, RegressReport, RunReport, Transfer

_SCHEMA = """
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
# Columns added after the first release: (table, column, type), added to older databases.
_LATER_COLUMNS = (
    ("cells", "cell_index", "INTEGER"),
    ("cells", "fingerprint", "TEXT"),
    ("runs", "meta", "TEXT"),
    ("runs", "complete", "INTEGER"),
    ("runs", "variants", "TEXT"),
)


class RunNotFound(LookupError):
    """No run matches a run reference."""


def _locked(method):
    """One thread at a time: devices of a fleet run store their cells concurrently."""
    @functools.wraps(method)
    def wrapper(self, *args, **kwargs):
        with self._lock:
            return method(self, *args, **kwargs)
    return wrapper


class ResultStore:
    """A SQLite results database, safe to share between the threads of one run."""

    def __init__(self, path: Path):
        self.path = Path(path)
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self._lock = threading.RLock()
        self._db = sqlite3.connect(str(self.path), check_same_thread=False)
        self._db.execute("PRAGMA journal_mode=WAL")
        self._db.execute("PRAGMA foreign_keys=ON")
        self._db.executescript(_SCHEMA)
        self._migrate()

    def _migrate(self) -> None:
        """Bring an older database up to date: add later columns and indices."""
        with self._db:
            for table, column, kind in _LATER_COLUMNS:
                if column not in {row[1] for row in self._db.execute(f"PRAGMA table_info({table})")}:
                    self._db.execute(f"ALTER TABLE {table} ADD COLUMN {column} {kind}")
            # Cells carry their index in the run's matrix: stored at most once per (run, device, index).
            self._db.execute("CREATE UNIQUE INDEX IF NOT EXISTS cells_once"
                             " ON cells(run_id, device, cell_index)")
            self._db.execute("CREATE INDEX IF NOT EXISTS cells_by_fingerprint ON cells(fingerprint)")

    def close(self) -> None:
        """Close the database."""
        self._db.close()

    def __enter__(self) -> ResultStore:
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    @_locked
    def start_run(self, run_id: str, tag: Optional[str], started_at: str,
                  meta: Optional[dict[str, str]] = None) -> None:
        """A new run, incomplete until `finish_run` says otherwise."""
        with self._db:
            self._db.execute("INSERT INTO runs (run_id, tag, started_at, meta, complete) VALUES (?, ?, ?, ?, 0)",
                             (run_id, tag, started_at, msgspec.json.encode(meta or {}).decode()))

    @_locked
    def add_device(self, run_id: str, device: str, info: DeviceInfo) -> None:
        """Record a device's facts for a run."""
        with self._db:
            self._db.execute(
                "INSERT OR REPLACE INTO run_devices (run_id, device, info) VALUES (?, ?, ?)",
                (run_id, device, msgspec.json.encode(info).decode()))

    @_locked
    def add_cell(self, run_id: str, cell: Cell, index: Optional[int] = None) -> bool:
        """Store a cell in its own transaction; False when cell `index` of that device is stored already."""
        with self._db:
            inserted = self._db.execute(
                "INSERT OR IGNORE INTO cells (run_id, device, model, model_sha256, variant, delegate,"
                " threads, round, status, p50_us, cell, cell_index, fingerprint)"
                " VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
                # delegate is an index column here; the cell document keeps a null delegate null
                (run_id, cell.device, cell.model, cell.model_sha256, cell.variant, cell.delegate or "",
                 cell.threads, cell.round, cell.status,
                 cell.latency_us.p50 if cell.latency_us else None,
                 msgspec.json.encode(cell).decode(), index, cell.fingerprint)).rowcount
        return inserted == 1

    @_locked
    def cell_indices(self, run_id: str, device: str) -> set[int]:
        """Indices of the cells of a run already stored for a device."""
        return {row[0] for row in self._db.execute(
            "SELECT cell_index FROM cells WHERE run_id = ? AND device = ? AND cell_index IS NOT NULL",
            (run_id, device))}

    @_locked
    def save_request(self, run_id: str, request: str) -> None:
        """What a run asked for (JSON), so that it can be resumed."""
        with self._db:
            self._db.execute("INSERT OR REPLACE INTO run_requests (run_id, request) VALUES (?, ?)",
                             (run_id, request))

    @_locked
    def load_request(self, run_id: str) -> Optional[str]:
        """The request a run was started with (JSON), for `--resume`."""
        row = self._db.execute("SELECT request FROM run_requests WHERE run_id = ?", (run_id,)).fetchone()
        return row[0] if row else None

    @_locked
    def set_job(self, run_id: str, device: str, job_id: str) -> None:
        """The agent job currently measuring a run on a device."""
        with self._db:
            self._db.execute("INSERT OR REPLACE INTO run_jobs (run_id, device, job_id) VALUES (?, ?, ?)",
                             (run_id, device, job_id))

    @_locked
    def job(self, run_id: str, device: str) -> Optional[str]:
        """The agent job id of a run's device, or None."""
        row = self._db.execute("SELECT job_id FROM run_jobs WHERE run_id = ? AND device = ?",
                               (run_id, device)).fetchone()
        return row[0] if row else None

    @_locked
    def finish_run(self, run_id: str, finished_at: str, transfer: Transfer, errors: list[str],
                   complete: bool = True, variants: Optional[list[FamilyComparison]] = None) -> None:
        """Close a run; `complete` is false when cells are missing or it was interrupted."""
        with self._db:
            self._db.execute(
                "UPDATE runs SET finished_at = ?, transfer = ?, errors = ?, complete = ?, variants = ?"
                " WHERE run_id = ?",
                (finished_at, msgspec.json.encode(transfer).decode(), msgspec.json.encode(errors).decode(),
                 int(complete), msgspec.json.encode(variants or []).decode(), run_id))

    @_locked
    def record_check(self, candidate: str, baseline: str, regressed: bool, report: str) -> None:
        """The outcome of `controller regress` for a candidate run (what `last-good` reads)."""
        with self._db:
            self._db.execute("INSERT OR REPLACE INTO regress_checks (candidate, baseline, regressed, report)"
                             " VALUES (?, ?, ?, ?)", (candidate, baseline, int(regressed), report))

    @_locked
    def last_good(self, tag: Optional[str], before: str) -> str:
        """The newest complete run of `tag` older than run `before` that no check found regressed."""
        # Runs are inserted as they start, so rowid order is start order.
        row = self._db.execute(
            "SELECT run_id FROM runs WHERE tag IS ? AND complete = 1"
            " AND rowid < (SELECT rowid FROM runs WHERE run_id = ?)"
            " AND run_id NOT IN (SELECT candidate FROM regress_checks WHERE regressed = 1)"
            " ORDER BY rowid DESC LIMIT 1", (tag, before)).fetchone()
        if row is None:
            raise RunNotFound(f"no earlier complete run{f' tagged {tag!r}' if tag else ''} "
                              f"without a regression in {self.path}")
        return row[0]

    @_locked
    def run_ids(self, tag: Optional[str] = None, limit: int = 30) -> list[str]:
        """The newest runs (of a tag, if given), oldest first."""
        query = "SELECT run_id FROM runs" + (" WHERE tag = ?" if tag else "") + \
            " ORDER BY started_at DESC, rowid DESC LIMIT ?"
        rows = self._db.execute(query, (tag, limit) if tag else (limit,)).fetchall()
        return [row[0] for row in reversed(rows)]

    @_locked
    def regress_reports(self, candidates: list[str]) -> list[RegressReport]:
        """Every stored regression check whose candidate is one of these runs."""
        marks = ",".join("?" * len(candidates))
        return [msgspec.json.decode(row[0], type=RegressReport) for row in self._db.execute(
            f"SELECT report FROM regress_checks WHERE candidate IN ({marks})", candidates)]

    @_locked
    def resolve(self, ref: str) -> str:
        """The run id a reference names: a run id, a tag (its latest run) or `latest`."""
        if ref == "latest":
            row = self._db.execute(
                "SELECT run_id FROM runs ORDER BY started_at DESC, rowid DESC LIMIT 1").fetchone()
        else:
            row = self._db.execute("SELECT run_id FROM runs WHERE run_id = ?", (ref,)).fetchone()
            if row is None:
                row = self._db.execute(
                    "SELECT run_id FROM runs WHERE tag = ? ORDER BY started_at DESC, rowid DESC"
                    " LIMIT 1", (ref,)).fetchone()
        if row is None:
            raise RunNotFound(f"no run matches {ref!r} in {self.path}")
        return row[0]

    @_locked
    def load_run(self, ref: str) -> RunReport:
        """A stored run, as the RunReport `controller run --json` printed for it."""
        run_id = self.resolve(ref)
        tag, started, finished, transfer, errors, meta, complete, variants = self._db.execute(
            "SELECT tag, started_at, finished_at, transfer, errors, meta, complete, variants"
            " FROM runs WHERE run_id = ?", (run_id,)).fetchone()
        devices: dict[str, DeviceInfo] = {
            name: msgspec.json.decode(info, type=DeviceInfo)
            for name, info in self._db.execute(
                "SELECT device, info FROM run_devices WHERE run_id = ? ORDER BY device", (run_id,))
        }
        cells = [msgspec.json.decode(row[0], type=Cell) for row in self._db.execute(
            "SELECT cell FROM cells WHERE run_id = ? ORDER BY id", (run_id,))]
        return RunReport(
            run_id=run_id, tag=tag, started_at=started, finished_at=finished, devices=devices,
            transfer=msgspec.json.decode(transfer, type=Transfer) if transfer else Transfer(),
            cells=cells, errors=msgspec.json.decode(errors) if errors else [],
            meta=msgspec.json.decode(meta) if meta else {},
            variants=msgspec.json.decode(variants, type=list[FamilyComparison]) if variants else [],
            # Runs from before the flag count as complete once finished.
            complete=finished is not None and complete != 0,
        )
