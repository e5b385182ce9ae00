"""A run and the runs before it: what `controller report` shows and its trends are drawn from,
and the stored cells two per-op profiles are compared from."""

from __future__ import annotations

from collections import defaultdict
from dataclasses import dataclass
from typing import Optional

from controller.analysis import opprofiles
from controller.analysis.stats import CellKey, cell_key
from controller.records import ProfileDiff, RunReport
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


class NothingToCompare(ValueError):
    """The two references name no pair of cells that both have a per-op profile."""


def is_model_ref(ref: str) -> bool:
    """A reference to a model file (compared within one run) rather than to a run."""
    return ref.endswith(".tflite")


def profile_diffs(store: ResultStore, a: str, b: str, run_ref: str = "latest", device: Optional[str] = None,
                  delegate: Optional[str] = None, threads: Optional[int] = None) -> list[ProfileDiff]:
    """Profile differences from `a` to `b`: two runs (REF: run id, tag or latest), or two
    model files of run `run_ref`. Cells can be narrowed to a device, delegate and thread count.

    Raises NothingToCompare when no cell pair has profiles on both sides, and the store's
    RunNotFound for an unknown run.
    """
    if is_model_ref(a) != is_model_ref(b):
        raise NothingToCompare("compare two runs or two models (NAME.tflite), not one of each")
    if is_model_ref(a):
        pairs = opprofiles.pair_models(store.load_run(run_ref), a.rsplit("/", 1)[-1], b.rsplit("/", 1)[-1])
    else:
        pairs = opprofiles.pair_runs(store.load_run(a), store.load_run(b))
    pairs = [(x, y) for x, y in pairs
             if (device is None or y.device == device) and (delegate is None or y.delegate == delegate)
             and (threads is None or y.threads == threads)]
    if not pairs:
        raise NothingToCompare(f"no cells of {a} and {b} with a per-op profile on both sides "
                               "(measure with `controller run --op-profile`)")
    return [opprofiles.diff(x, y) for x, y in pairs]
