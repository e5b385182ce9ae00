"""A run and the runs before it: what `controller report` shows and its trends are drawn from."""

from __future__ import annotations

from collections import defaultdict
from dataclasses import dataclass

from controller.analysis.stats import CellKey, cell_key
from controller.records import RunReport
from controller.store import ResultStore

HISTORY_RUNS = 30

@dataclass
class History:
    """A run, the runs of its tag up to it (oldest first), and the cells checks found regressed."""

    run: RunReport
    runs: list[RunReport]
    regressed: dict[str, set[CellKey]]


def load_history(store: ResultStore, ref: str = "latest", limit: int = HISTORY_RUNS) -> History:
    """The run `ref` names and up to `limit` runs of its tag that precede it."""
    run = store.load_run(ref)
    ids = store.run_ids(run.tag, limit=10_000) if run.tag else [run.run_id]
    ids = ids[:ids.index(run.run_id) + 1][-limit:] if run.run_id in ids else [run.run_id]
    runs = [run if run_id == run.run_id else store.load_run(run_id) for run_id in ids]
    regressed: dict[str, set[CellKey]] = defaultdict(set)
    for check in store.regress_reports(ids):
        regressed[check.candidate] |= {cell_key(c) for c in check.cells if c.verdict == "REGRESSION"}
    return History(run=run, runs=runs, regressed=dict(regressed))


