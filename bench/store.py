"""Results store: what storing one cell costs, on SQLite and on PostgreSQL.

Each cell is a real one (digits int8, measured once at the start through a local agent),
stored N times with `ResultStore.add_cell`: its own transaction, the JSON of the whole cell
plus the filter columns. Yardstick, measured in the same run in interleaved blocks: the bare
driver inserting the same JSON text into a one-column table, one transaction per row
(sqlite3 `BEGIN IMMEDIATE ... COMMIT`, psycopg `with transaction()`). The PostgreSQL server
is started for the benchmark (initdb + pg_ctl on a loopback port, tests/support/postgres.py,
fsync on as a real server runs) and removed afterwards. Both sync every commit, so the
times are mostly the disk's; the ratio is what the store adds to the bare driver.
"""

from __future__ import annotations

import statistics
import sys
import time
from pathlib import Path

from common import DIGITS_INT8, REPO, Figure, scratch

sys.path.insert(0, str(REPO))  # tests.support: the PostgreSQL server helper the tests use too

NAME = "store"


def _measured_cell(directory: Path):
    """One real cell to store: digits int8 on xnnpack, measured by a local agent."""
    from agent.wire.records import Settings
    from controller.runner import RunRequest
    from controller.runner import run as run_request
    from controller.store import open_store

    with open_store(directory / "one.sqlite") as store:
        request = RunRequest(devices=["local"], models=[str(DIGITS_INT8)], delegates=["xnnpack"], threads=[1],
                             settings=Settings(warmup_runs=1, warmup_min_secs=0, num_runs=5, min_secs=0))
        report = run_request(request, store)
    return report.cells[0]


def _per_cell_ms(location: str, cell, count: int) -> float:
    from controller.records import new_run_id, now_iso
    from controller.store import open_store

    with open_store(location) as store:
        run_id = new_run_id()
        store.start_run(run_id, "bench", now_iso())
        started = time.perf_counter()
        for index in range(count):
            store.add_cell(run_id, cell, index)
        return (time.perf_counter() - started) * 1000 / count


def _bare_sqlite_ms(path: Path, text: str, count: int) -> float:
    import sqlite3

    db = sqlite3.connect(str(path), isolation_level=None)
    db.execute("PRAGMA journal_mode=WAL")
    db.execute("CREATE TABLE IF NOT EXISTS bare (cell TEXT NOT NULL)")
    started = time.perf_counter()
    for _ in range(count):
        db.execute("BEGIN IMMEDIATE")
        db.execute("INSERT INTO bare (cell) VALUES (?)", (text,))
        db.execute("COMMIT")
    elapsed = time.perf_counter() - started
    db.close()
    return elapsed * 1000 / count


def _bare_postgres_ms(url: str, text: str, count: int) -> float:
    import psycopg

    with psycopg.connect(url, autocommit=True) as db:
        db.execute("CREATE TABLE IF NOT EXISTS bare (cell TEXT NOT NULL)")
        started = time.perf_counter()
        for _ in range(count):
            with db.transaction():
                db.execute("INSERT INTO bare (cell) VALUES (%s)", (text,))
        return (time.perf_counter() - started) * 1000 / count


def _paired(name: str, measure, yardstick: str, bare, count: int, repeats: int = 5) -> Figure:
    """Store and bare driver in interleaved blocks (order alternating), so disk and load drift
    hit both; the ratio is the median of the per-block ratios."""
    values, bases = [], []
    for repeat in range(repeats):
        if repeat % 2:
            bases.append(bare(count // repeats))
            values.append(measure(count // repeats))
        else:
            values.append(measure(count // repeats))
            bases.append(bare(count // repeats))
    return Figure(NAME, name, statistics.median(values), "ms", yardstick, statistics.median(bases),
                  target="<= 3x", paired_ratio=statistics.median(v / b for v, b in zip(values, bases)))


def run(quick: bool) -> list[Figure]:
    """Store cost figures."""
    import msgspec

    from tests.support.postgres import PostgresServer

    count = 200 if quick else 1000
    figures = []
    with scratch(NAME) as directory:
        cell = _measured_cell(directory)
        text = msgspec.json.encode(cell).decode()
        figures.append(_paired("store one cell, SQLite (own transaction)",
                               lambda n: _per_cell_ms(str(directory / "store.sqlite"), cell, n),
                               "bare sqlite3 insert+commit of its JSON",
                               lambda n: _bare_sqlite_ms(directory / "bare.sqlite", text, n), count))
        server = PostgresServer(durable=True)
        try:
            server.start()
            url = server.create_database("bench")
            figures.append(_paired("store one cell, PostgreSQL on loopback", lambda n: _per_cell_ms(url, cell, n),
                                   "bare psycopg insert in a transaction", lambda n: _bare_postgres_ms(url, text, n),
                                   count))
        finally:
            server.stop()
    for figure in figures:
        figure.holds = figure.ratio is not None and figure.ratio <= 3
    return figures
