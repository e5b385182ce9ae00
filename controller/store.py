"""The results history: runs, the devices they measured and their cells, in SQLite.

Each cell is committed in its own transaction as it arrives, so an interrupted run
keeps everything measured until then. Cells are stored whole as JSON (the CONTRACT
shape) next to the columns queries filter on.
"""

from __future__ import annotations

import sqlite3
from pathlib import Path
from typing import Optional

import msgspec

from agent.schema import Cell, DeviceInfo, RunReport, Transfer

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
"""


class RunNotFound(LookupError):
    """No run matches a run reference."""


class ResultStore:
    """A SQLite results database."""

    def __init__(self, path: Path):
        self.path = Path(path)
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self._db = sqlite3.connect(str(self.path), check_same_thread=False)
        self._db.execute("PRAGMA journal_mode=WAL")
        self._db.execute("PRAGMA foreign_keys=ON")
        self._db.executescript(_SCHEMA)
        self._add_cell_index()

    def _add_cell_index(self) -> None:
        """Cells carry their index in the run's matrix: stored at most once per (run, device, index)."""
        columns = {row[1] for row in self._db.execute("PRAGMA table_info(cells)")}
        with self._db:
            if "cell_index" not in columns:  # a database from before cell indices
                self._db.execute("ALTER TABLE cells ADD COLUMN cell_index INTEGER")
            self._db.execute("CREATE UNIQUE INDEX IF NOT EXISTS cells_once"
                             " ON cells(run_id, device, cell_index)")

    def close(self) -> None:
        self._db.close()

    def __enter__(self) -> ResultStore:
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    def start_run(self, run_id: str, tag: Optional[str], started_at: str) -> None:
        with self._db:
            self._db.execute("INSERT INTO runs (run_id, tag, started_at) VALUES (?, ?, ?)",
                             (run_id, tag, started_at))

    def add_device(self, run_id: str, device: str, info: DeviceInfo) -> None:
        with self._db:
            self._db.execute(
                "INSERT OR REPLACE INTO run_devices (run_id, device, info) VALUES (?, ?, ?)",
                (run_id, device, msgspec.json.encode(info).decode()))

    def add_cell(self, run_id: str, cell: Cell, index: Optional[int] = None) -> bool:
        """Store a cell in its own transaction; False when cell `index` of that device is stored already."""
        with self._db:
            inserted = self._db.execute(
                "INSERT OR IGNORE INTO cells (run_id, device, model, model_sha256, variant, delegate,"
                " threads, round, status, p50_us, cell, cell_index)"
                " VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
                (run_id, cell.device, cell.model, cell.model_sha256, cell.variant, cell.delegate,
                 cell.threads, cell.round, cell.status,
                 cell.latency_us.p50 if cell.latency_us else None,
                 msgspec.json.encode(cell).decode(), index)).rowcount
        return inserted == 1

    def cell_indices(self, run_id: str, device: str) -> set[int]:
        """Indices of the cells of a run already stored for a device."""
        return {row[0] for row in self._db.execute(
            "SELECT cell_index FROM cells WHERE run_id = ? AND device = ? AND cell_index IS NOT NULL",
            (run_id, device))}

    def save_request(self, run_id: str, request: str) -> None:
        """What a run asked for (JSON), so that it can be resumed."""
        with self._db:
            self._db.execute("INSERT OR REPLACE INTO run_requests (run_id, request) VALUES (?, ?)",
                             (run_id, request))

    def load_request(self, run_id: str) -> Optional[str]:
        row = self._db.execute("SELECT request FROM run_requests WHERE run_id = ?", (run_id,)).fetchone()
        return row[0] if row else None

    def set_job(self, run_id: str, device: str, job_id: str) -> None:
        """The agent job currently measuring a run on a device."""
        with self._db:
            self._db.execute("INSERT OR REPLACE INTO run_jobs (run_id, device, job_id) VALUES (?, ?, ?)",
                             (run_id, device, job_id))

    def job(self, run_id: str, device: str) -> Optional[str]:
        row = self._db.execute("SELECT job_id FROM run_jobs WHERE run_id = ? AND device = ?",
                               (run_id, device)).fetchone()
        return row[0] if row else None

    def finish_run(self, run_id: str, finished_at: str, transfer: Transfer,
                   errors: list[str]) -> None:
        with self._db:
            self._db.execute(
                "UPDATE runs SET finished_at = ?, transfer = ?, errors = ? WHERE run_id = ?",
                (finished_at, msgspec.json.encode(transfer).decode(),
                 msgspec.json.encode(errors).decode(), run_id))

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

    def load_run(self, ref: str) -> RunReport:
        """A stored run, as the RunReport `controller run --json` printed for it."""
        run_id = self.resolve(ref)
        tag, started, finished, transfer, errors = self._db.execute(
            "SELECT tag, started_at, finished_at, transfer, errors FROM runs WHERE run_id = ?",
            (run_id,)).fetchone()
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
        )
