"""The results history: runs, the devices they measured and their cells, behind one interface.

Each cell is committed in its own transaction as it arrives, so an interrupted run
keeps everything measured until then, and several controllers can write into one
database at once. Cells are stored whole as JSON (the CONTRACT shape) next to the
columns queries filter on. The SQL here is shared by every back end: statements use
`?` placeholders and the SQL both SQLite (3.24+) and PostgreSQL understand; a back
end supplies the connection, its schema migrations and the column that orders runs
by the time they were stored.
"""

from __future__ import annotations

import contextlib
import functools
import threading
from collections.abc import Callable, Sequence
from typing import Any, Optional, TypeVar

import msgspec

from agent.wire.records import Cell
from controller.records import DeviceInfo, FamilyComparison, RegressReport, RunReport, Transfer

_T = TypeVar("_T")


class StoreError(RuntimeError):
    """The results database cannot be opened or used; the message says why in one line."""


class RunNotFound(LookupError):
    """No run matches a run reference."""


class RunExists(StoreError):
    """A run with this id is stored already (run ids are meant to be unique across hosts)."""


def redacted(location: str) -> str:
    """A location fit for messages: a URL's password replaced by `***`."""
    scheme, sep, rest = location.partition("://")
    userinfo, at, host = rest.rpartition("@")
    if not sep or not at or ":" not in userinfo:
        return location
    return f"{scheme}{sep}{userinfo.split(':', 1)[0]}:***@{host}"


def _locked(method):
    """One thread at a time: devices of a fleet run store their cells concurrently.

    The outermost call is one operation, run through the back end's `_retrying` (which may
    run it again whole); the public methods it calls in turn are part of that operation.
    """
    @functools.wraps(method)
    def wrapper(self, *args, **kwargs):
        with self._lock:
            if self._in_operation:
                return method(self, *args, **kwargs)
            self._in_operation = True
            try:
                return self._retrying(functools.partial(method, self, *args, **kwargs))
            finally:
                self._in_operation = False
    return wrapper


def _json(value: Any) -> str:
    return msgspec.json.encode(value).decode()


_INSERT_CELL = ("INSERT INTO cells (run_id, device, model, model_sha256, variant, delegate, threads, round,"
                " status, p50_us, cell, cell_index, fingerprint) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)")


def _cell_row(run_id: str, cell: Cell, index: Optional[int]) -> tuple:
    """The values of `_INSERT_CELL` for one cell: the columns queries filter on, and the cell whole."""
    # delegate is an index column here; the cell document keeps a null delegate null
    return (run_id, cell.device, cell.model, cell.model_sha256, cell.variant, cell.delegate or "", cell.threads,
            cell.round, cell.status, cell.latency_us.p50 if cell.latency_us else None, _json(cell), index,
            cell.fingerprint)


class ResultStore:
    """A results database; open one with `controller.store.open_store(location)`."""

    #: Column of `runs` that grows as runs are stored: the tie-break after `started_at`.
    run_order = "rowid"

    def __init__(self, location: str):
        self.location = location
        self._lock = threading.RLock()
        self._in_operation = False

    # --- what a back end provides -------------------------------------------------

    def _retrying(self, operation: Callable[[], _T]) -> _T:
        """Run one whole store operation. A back end whose connection can break runs it
        again on a new one: every write is one transaction, so a failed one left nothing."""
        return operation()

    def _transaction(self) -> contextlib.AbstractContextManager:
        """A context in which statements commit together, or not at all."""
        raise NotImplementedError

    def _execute(self, sql: str, params: Sequence[Any] = ()) -> Any:
        """Run one statement; returns a DB-API cursor."""
        raise NotImplementedError

    def schema_version(self) -> int:
        """The schema version the database is at."""
        raise NotImplementedError

    def close(self) -> None:
        """Close the connection."""
        raise NotImplementedError

    # --- shared ---------------------------------------------------------------------

    def __enter__(self) -> ResultStore:
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    def __repr__(self) -> str:
        return f"{type(self).__name__}({self.location!r})"

    def _rows(self, sql: str, params: Sequence[Any] = ()) -> list[tuple]:
        return list(self._execute(sql, params).fetchall())

    def _one(self, sql: str, params: Sequence[Any] = ()) -> Optional[tuple]:
        return self._execute(sql, params).fetchone()

    @_locked
    def start_run(self, run_id: str, tag: Optional[str], started_at: str,
                  meta: Optional[dict[str, str]] = None) -> None:
        """A new run, incomplete until `finish_run` says otherwise; RunExists if the id is taken."""
        with self._transaction():
            inserted = self._execute(
                "INSERT INTO runs (run_id, tag, started_at, meta, complete) VALUES (?, ?, ?, ?, 0)"
                " ON CONFLICT (run_id) DO NOTHING", (run_id, tag, started_at, _json(meta or {}))).rowcount
        if inserted != 1:
            raise RunExists(f"run {run_id} is already stored in {redacted(self.location)}")

    @_locked
    def add_device(self, run_id: str, device: str, info: DeviceInfo) -> None:
        """What the device's agent said about itself in this run (replaces an earlier entry)."""
        with self._transaction():
            self._execute(
                "INSERT INTO run_devices (run_id, device, info) VALUES (?, ?, ?)"
                " ON CONFLICT (run_id, device) DO UPDATE SET info = excluded.info",
                (run_id, device, _json(info)))

    @_locked
    def add_cell(self, run_id: str, cell: Cell, index: Optional[int] = None) -> bool:
        """Store a cell in its own transaction; False when cell `index` of that device is stored already."""
        with self._transaction():
            inserted = self._execute(_INSERT_CELL + " ON CONFLICT DO NOTHING",
                                     _cell_row(run_id, cell, index)).rowcount
        return inserted == 1

    @_locked
    def cell_indices(self, run_id: str, device: str) -> set[int]:
        """Indices of the cells of a run already stored for a device."""
        return {row[0] for row in self._rows(
            "SELECT cell_index FROM cells WHERE run_id = ? AND device = ? AND cell_index IS NOT NULL",
            (run_id, device))}

    @_locked
    def count_cells(self, run_id: Optional[str] = None) -> int:
        """Cells stored for one run, or in the whole database."""
        if run_id is None:
            return self._one("SELECT COUNT(*) FROM cells")[0]
        return self._one("SELECT COUNT(*) FROM cells WHERE run_id = ?", (run_id,))[0]

    @_locked
    def save_request(self, run_id: str, request: str) -> None:
        """What a run asked for (JSON), so that it can be resumed."""
        with self._transaction():
            self._execute("INSERT INTO run_requests (run_id, request) VALUES (?, ?)"
                          " ON CONFLICT (run_id) DO UPDATE SET request = excluded.request", (run_id, request))

    @_locked
    def load_request(self, run_id: str) -> Optional[str]:
        """The request `save_request` stored for a run, or None."""
        row = self._one("SELECT request FROM run_requests WHERE run_id = ?", (run_id,))
        return row[0] if row else None

    @_locked
    def set_job(self, run_id: str, device: str, job_id: str) -> None:
        """The agent job currently measuring a run on a device."""
        with self._transaction():
            self._execute("INSERT INTO run_jobs (run_id, device, job_id) VALUES (?, ?, ?)"
                          " ON CONFLICT (run_id, device) DO UPDATE SET job_id = excluded.job_id",
                          (run_id, device, job_id))

    @_locked
    def job(self, run_id: str, device: str) -> Optional[str]:
        """The job `set_job` recorded for a run on a device, or None."""
        row = self._one("SELECT job_id FROM run_jobs WHERE run_id = ? AND device = ?", (run_id, device))
        return row[0] if row else None

    @_locked
    def finish_run(self, run_id: str, finished_at: str, transfer: Transfer, errors: list[str],
                   complete: bool = True, variants: Optional[list[FamilyComparison]] = None) -> None:
        """Close a run; `complete` is false when cells are missing or it was interrupted."""
        with self._transaction():
            self._execute(
                "UPDATE runs SET finished_at = ?, transfer = ?, errors = ?, complete = ?, variants = ?"
                " WHERE run_id = ?",
                (finished_at, _json(transfer), _json(errors), int(complete), _json(variants or []), run_id))

    @_locked
    def record_check(self, candidate: str, baseline: str, regressed: bool, report: str) -> None:
        """The outcome of `controller regress` for a candidate run (what `last-good` reads)."""
        with self._transaction():
            self._execute(
                "INSERT INTO regress_checks (candidate, baseline, regressed, report) VALUES (?, ?, ?, ?)"
                " ON CONFLICT (candidate, baseline) DO UPDATE SET regressed = excluded.regressed,"
                " report = excluded.report", (candidate, baseline, int(regressed), report))

    def _tag_is(self, tag: Optional[str]) -> tuple[str, tuple]:
        # `tag IS ?` is SQLite only; PostgreSQL cannot type a bare NULL parameter.
        return ("tag IS NULL", ()) if tag is None else ("tag = ?", (tag,))

    @_locked
    def last_good(self, tag: Optional[str], before: str, devices: Optional[list[str]] = None) -> str:
        """The newest complete run of `tag` stored before run `before` that no check found regressed.

        With `devices`, only runs that measured one of them count: in a database several
        labs share, another lab's run under the same tag has no cell to compare with.
        """
        order = self.run_order
        tag_sql, tag_params = self._tag_is(tag)
        device_sql = ""
        if devices:
            device_sql = (" AND run_id IN (SELECT run_id FROM run_devices WHERE device IN"
                          f" ({','.join('?' * len(devices))}))")
        row = self._one(
            f"SELECT run_id FROM runs WHERE {tag_sql} AND complete = 1{device_sql}"
            f" AND {order} < (SELECT {order} FROM runs WHERE run_id = ?)"
            " AND run_id NOT IN (SELECT candidate FROM regress_checks WHERE regressed = 1)"
            f" ORDER BY {order} DESC LIMIT 1", (*tag_params, *(devices or []), before))
        if row is None:
            of = f" of {', '.join(devices)}" if devices else ""
            raise RunNotFound(f"no earlier complete run{f' tagged {tag!r}' if tag else ''}{of} "
                              f"without a regression in {redacted(self.location)}")
        return row[0]

    @_locked
    def run_ids(self, tag: Optional[str] = None, limit: int = 30) -> list[str]:
        """The newest runs (of a tag, if given), oldest first."""
        query = "SELECT run_id FROM runs" + (" WHERE tag = ?" if tag else "") + \
            f" ORDER BY started_at DESC, {self.run_order} DESC LIMIT ?"
        rows = self._rows(query, (tag, limit) if tag else (limit,))
        return [row[0] for row in reversed(rows)]

    @_locked
    def regress_reports(self, candidates: list[str]) -> list[RegressReport]:
        """Every stored regression check whose candidate is one of these runs."""
        if not candidates:
            return []
        marks = ",".join("?" * len(candidates))
        return [msgspec.json.decode(row[0], type=RegressReport) for row in self._rows(
            f"SELECT report FROM regress_checks WHERE candidate IN ({marks})"
            " ORDER BY candidate, baseline", candidates)]

    @_locked
    def resolve(self, ref: str) -> str:
        """The run id a reference names: a run id, a tag (its latest run) or `latest`."""
        order = self.run_order
        if ref == "latest":
            row = self._one(f"SELECT run_id FROM runs ORDER BY started_at DESC, {order} DESC LIMIT 1")
        else:
            row = self._one("SELECT run_id FROM runs WHERE run_id = ?", (ref,))
            if row is None:
                row = self._one(f"SELECT run_id FROM runs WHERE tag = ? ORDER BY started_at DESC, {order} DESC"
                                " LIMIT 1", (ref,))
        if row is None:
            raise RunNotFound(f"no run matches {ref!r} in {redacted(self.location)}")
        return row[0]

    @_locked
    def has_run(self, run_id: str) -> bool:
        """Whether a run with exactly this id is stored."""
        return self._one("SELECT 1 FROM runs WHERE run_id = ?", (run_id,)) is not None

    @_locked
    def load_run(self, ref: str) -> RunReport:
        """A stored run, as the RunReport `controller run --json` printed for it."""
        run_id = self.resolve(ref)
        tag, started, finished, transfer, errors, meta, complete, variants = self._one(
            "SELECT tag, started_at, finished_at, transfer, errors, meta, complete, variants"
            " FROM runs WHERE run_id = ?", (run_id,))
        devices: dict[str, DeviceInfo] = {
            name: msgspec.json.decode(info, type=DeviceInfo)
            for name, info in self._rows(
                "SELECT device, info FROM run_devices WHERE run_id = ? ORDER BY device", (run_id,))
        }
        cells = [msgspec.json.decode(row[0], type=Cell) for row in self._rows(
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

    @_locked
    def add_run(self, run: RunReport) -> bool:
        """Store a whole finished run (an imported document) in one transaction.

        False, and nothing written, when a run with its id is stored already: importing
        the same document twice adds nothing.
        """
        with self._transaction():
            inserted = self._execute(
                "INSERT INTO runs (run_id, tag, started_at, finished_at, transfer, errors, meta, complete,"
                " variants) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?) ON CONFLICT (run_id) DO NOTHING",
                (run.run_id, run.tag, run.started_at, run.finished_at, _json(run.transfer), _json(run.errors),
                 _json(run.meta), int(run.complete), _json(run.variants))).rowcount
            if inserted != 1:
                return False
            for name, info in run.devices.items():
                self._execute("INSERT INTO run_devices (run_id, device, info) VALUES (?, ?, ?)",
                              (run.run_id, name, _json(info)))
            positions: dict[str, int] = {}
            for cell in run.cells:
                # A cell's index is its place among its device's cells: unique, as the table wants.
                index = positions[cell.device] = positions.get(cell.device, -1) + 1
                self._execute(_INSERT_CELL, _cell_row(run.run_id, cell, index))
        return True

    @_locked
    def add_check(self, check: RegressReport) -> bool:
        """Store an imported regression check unless one for the same pair exists; False if it did."""
        with self._transaction():
            return self._execute(
                "INSERT INTO regress_checks (candidate, baseline, regressed, report) VALUES (?, ?, ?, ?)"
                " ON CONFLICT (candidate, baseline) DO NOTHING",
                (check.candidate, check.baseline, int(check.regressed), _json(check))).rowcount == 1

    @_locked
    def all_run_ids(self, tag: Optional[str] = None) -> list[str]:
        """Every run (of a tag, if given) in the order they started, oldest first."""
        where = " WHERE tag = ?" if tag else ""
        return [row[0] for row in self._rows(
            f"SELECT run_id FROM runs{where} ORDER BY started_at, {self.run_order}", (tag,) if tag else ())]

