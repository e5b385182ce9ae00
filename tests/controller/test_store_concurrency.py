"""Several controllers writing into one PostgreSQL database at once: no lost, duplicated or
mixed-up cells, distinct run ids, and a new database migrated exactly once."""

from __future__ import annotations

import subprocess
import sys

from controller.store import open_store
from controller.store import postgres as postgres_store
from tests.support import ROOT

WRITERS, RUNS, CELLS = 3, 4, 60


def test_concurrent_writers_lose_and_duplicate_nothing(postgres_url):
    writers = [subprocess.Popen([sys.executable, "-m", "tests.support.store_writer", postgres_url, f"dev{n}",
                                 str(RUNS), str(CELLS)], cwd=ROOT, stdout=subprocess.PIPE,
                                stderr=subprocess.PIPE, text=True) for n in range(WRITERS)]
    outputs = [writer.communicate(timeout=300) for writer in writers]
    for writer, (_, err) in zip(writers, outputs):
        assert writer.returncode == 0, err
    run_ids = [line for out, _ in outputs for line in out.split()]
    assert len(run_ids) == len(set(run_ids)) == WRITERS * RUNS
    with open_store(postgres_url) as store:
        assert store.schema_version() == postgres_store.SCHEMA_VERSION
        assert store._one("SELECT COUNT(*) FROM edgebench_schema")[0] == 1
        assert store.count_cells() == WRITERS * RUNS * CELLS
        for run_id in run_ids:
            run = store.load_run(run_id)
            assert run.complete
            assert len({cell.device for cell in run.cells}) == 1
            assert [cell.latency_us.p50 for cell in run.cells] == list(range(CELLS))
