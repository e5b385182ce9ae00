"""edgebench from Python (notebooks, scripts): the same library calls the commands make.

    from controller import api
    run = api.run(["local"], ["examples/models/*.tflite"], rounds=3, tag="notebook")
    runs = api.load_runs(tag="notebook")
    check = api.compare(runs[-2], runs[-1])
    api.cells_frame(runs)          # one row per cell (pandas, the `notebook` extra)

Functions return the record types the JSON documents are made of (RunReport, Cell,
RegressReport); `db` is a SQLite path or a `postgresql://` URL, defaulting like `--db`.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Optional, Union

from agent.wire.records import Settings
from controller import history, locations, runner
from controller.analysis import regress
from controller.records import RegressReport, RunReport, to_builtins
from controller.store import ResultStore, open_store

if TYPE_CHECKING:
    import pandas

Db = Union[str, Path, None]

# Settings: the timed phase of `run` (warmup_runs, num_runs, min_secs, ...), re-exported.
__all__ = ["Settings", "cells_frame", "compare", "load_runs", "open_db", "run", "to_pandas"]


def open_db(db: Db = None, must_exist: bool = False) -> ResultStore:
    """The results store `db` names (else `EDGEBENCH_DB`, else the default file)."""
    return open_store(db or locations.default_db(), must_exist=must_exist)


def run(devices: Sequence[str], models: Sequence[str], *, threads: Optional[Sequence[int]] = None,
        delegates: Optional[Sequence[str]] = None, rounds: int = 1, tag: Optional[str] = None,
        settings: Optional[Settings] = None, db: Db = None, **options) -> RunReport:
    """Measure `models` (paths or globs) on `devices` (profile names) and store the run.

    `settings` sets the timed phase (warmup_runs, num_runs, min_secs, ...); other keyword
    options are those of `controller run` (dataset, reference, meta, ...).
    """
    request = runner.RunRequest(devices=list(devices), models=[str(m) for m in models],
                                threads=list(threads) if threads else None,
                                delegates=list(delegates) if delegates else None,
                                settings=settings or Settings(), rounds=rounds, tag=tag, **options)
    with open_db(db) as store:
        return runner.run(request, store)


def load_runs(refs: Optional[Sequence[str]] = None, *, tag: Optional[str] = None, db: Db = None,
              limit: Optional[int] = None) -> list[RunReport]:
    """Stored runs, oldest first: those `refs` name (run ids, tags, `latest`), else every
    run of `tag`, else every run; the newest `limit` of them when given."""
    with open_db(db, must_exist=True) as store:
        ids = [store.resolve(ref) for ref in refs] if refs else store.all_run_ids(tag)
        if limit is not None:
            ids = ids[-limit:]
        return [store.load_run(run_id) for run_id in ids]


def compare(baseline: Union[RunReport, str], candidate: Union[RunReport, str], *,
            threshold: float = regress.DEFAULT_THRESHOLD, min_rounds: Optional[int] = None,
            db: Db = None) -> RegressReport:
    """The regression check of `controller regress`: each shared cell judged, baseline vs candidate,
    with the run-to-run noise of each cell's history in `db` (undecided without one).

    Runs may be given as records or as references into `db`. Nothing is stored.
    """
    with open_db(db, must_exist=True) as store:
        baseline = store.load_run(baseline) if isinstance(baseline, str) else baseline
        candidate = store.load_run(candidate) if isinstance(candidate, str) else candidate
        values = history.run_values(store, baseline.run_id) if store.has_run(baseline.run_id) else {}
    thresholds = regress.Thresholds(latency=threshold)
    if min_rounds is not None:
        thresholds.min_rounds = min_rounds
    return regress.compare(baseline, candidate, thresholds, values)


def _pandas():
    try:
        import pandas
    except ImportError:
        raise ImportError("DataFrames need pandas: pip install 'edgebench[notebook]'") from None
    return pandas


def cells_frame(runs: Union[RunReport, Sequence[RunReport]]) -> pandas.DataFrame:
    """One row per cell of the runs, nested blocks as dotted columns (`latency_us.p50`),
    with the run's `run_id`, `tag` and `started_at` in front."""
    pandas = _pandas()
    runs = [runs] if isinstance(runs, RunReport) else list(runs)
    rows = [{"run_id": r.run_id, "tag": r.tag, "started_at": r.started_at, **to_builtins(cell)}
            for r in runs for cell in r.cells]
    return pandas.json_normalize(rows)


def to_pandas(record: Union[RunReport, RegressReport, Sequence[RunReport]]) -> pandas.DataFrame:
    """A DataFrame of a record: a run's (or runs') cells, or a check's compared cells."""
    if isinstance(record, RegressReport):
        rows = [{"baseline": record.baseline, "candidate": record.candidate, **to_builtins(cell)}
                for cell in record.cells]
        return _pandas().json_normalize(rows)
    return cells_frame(record)
