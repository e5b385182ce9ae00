"""A run and the runs before it, and each cell's history with its steps: what `controller
report` and `controller history` show, and the stored cells two per-op profiles are compared
from.

A cell is a device, model file name, delegate and thread count; its value in a run is the
median p50 over the run's undisturbed rounds. Its history also says how much its value moves
from run to run by itself (`controller.analysis.noise`), which comparisons of two runs need.
All runs count, whatever their tag, unless a tag is given as a filter; session runs (A/B
rounds measured by `regress --more-rounds` or `compare`) hold two models under one name and
are left out.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Optional

import msgspec

from controller.analysis import noise, opprofiles, regress, steps
from controller.analysis.stats import CellKey, cell_key, median_or_none
from controller.records import ProfileDiff, RegressReport, RunReport
from controller.store import ResultStore

DEFAULT_LIMIT = 100
HISTORY_RUNS = 30
SESSION_META = "session"  # meta key session runs carry


class HistoryPoint(msgspec.Struct, kw_only=True):
    """One run's value of a cell."""

    run_id: str
    started_at: str
    tag: Optional[str]
    p50_us: float
    rounds: int
    disturbed_rounds: int
    round_p50_us: list[float] = []  # each undisturbed round's p50: how noisy the run value is


class StepFound(msgspec.Struct, kw_only=True):
    """A level change in a cell's history: from the run `before_run_id` to the run `run_id`."""

    run_id: str
    started_at: str
    before_run_id: str
    before_us: float
    after_us: float
    change: float  # after / before - 1
    low: float
    high: float
    p_value: float


class CellHistory(msgspec.Struct, kw_only=True):
    """A cell's values run by run (oldest first) and its steps."""

    device: str
    model: str
    delegate: str
    threads: int
    points: list[HistoryPoint]
    steps: list[StepFound] = []
    noise: Optional[noise.RunNoise] = None  # null with fewer runs than the estimate needs

    @property
    def key(self) -> CellKey:
        """The cell's key (device, model, delegate, threads)."""
        return (self.device, self.model, self.delegate, self.threads)


class HistoryReport(msgspec.Struct, kw_only=True):
    """The document `controller history --json` prints."""

    tag: Optional[str]
    runs: int
    min_effect: float
    cells: list[CellHistory]


def is_session(run: RunReport) -> bool:
    """Whether a run is an A/B session (two models may share a name in it)."""
    return SESSION_META in run.meta


def run_points(run: RunReport) -> dict[CellKey, HistoryPoint]:
    """Each cell's value in one run (cells without an undisturbed ok round are left out)."""
    grouped = defaultdict(list)
    for cell in run.cells:
        grouped[cell_key(cell)].append(cell)
    points = {}
    for key, cells in grouped.items():
        usable, counts = regress.usable_rounds(cells)
        rounds = [c.latency_us.centre for c in usable]
        value = median_or_none(rounds)
        if value is not None:
            points[key] = HistoryPoint(run_id=run.run_id, started_at=run.started_at, tag=run.tag, p50_us=value,
                                       rounds=len(usable), disturbed_rounds=counts["rounds"], round_p50_us=rounds)
    return points


def load_runs(store: ResultStore, tag: Optional[str] = None, upto: Optional[str] = None,
              limit: int = DEFAULT_LIMIT) -> list[RunReport]:
    """Runs oldest first (of `tag` if given), up to and including run `upto`, at most `limit`,
    session runs left out."""
    ids = store.run_ids(tag, limit=100_000)
    if upto is not None and upto in ids:
        ids = ids[:ids.index(upto) + 1]
    runs = []
    for run_id in reversed(ids):
        run = store.load_run(run_id)
        if not is_session(run):
            runs.append(run)
        if len(runs) == limit:
            break
    return runs[::-1]


def histories(runs: Iterable[RunReport], keys: Optional[set[CellKey]] = None,
              min_effect: float = steps.MIN_EFFECT) -> list[CellHistory]:
    """Per cell (of `keys`, if given), its points over `runs` and the steps found in them."""
    series: dict[CellKey, list[HistoryPoint]] = defaultdict(list)
    for run in runs:
        for key, point in run_points(run).items():
            if keys is None or key in keys:
                series[key].append(point)
    found = []
    for key in sorted(series):
        points = series[key]
        device, model, delegate, threads = key
        values = [p.p50_us for p in points]
        found.append(CellHistory(
            device=device, model=model, delegate=delegate, threads=threads, points=points,
            steps=[_step(points, s) for s in steps.find_steps(values, min_effect=min_effect,
                                                               rounds=[p.round_p50_us for p in points])],
            noise=noise.run_noise(values)))
    return found


def run_values(store: ResultStore, upto: str, limit: int = 2 * noise.WINDOW) -> dict[CellKey, list[float]]:
    """Each cell's value in the runs up to and including run `upto`, oldest first: the history
    a comparison with a later run reads the cell's run-to-run noise from."""
    values: dict[CellKey, list[float]] = defaultdict(list)
    for run in load_runs(store, upto=upto, limit=limit):
        for key, point in run_points(run).items():
            values[key].append(point.p50_us)
    return dict(values)


def _step(points: list[HistoryPoint], step: steps.Step) -> StepFound:
    after, before = points[step.position], points[step.position - 1]
    return StepFound(run_id=after.run_id, started_at=after.started_at, before_run_id=before.run_id,
                     before_us=step.before, after_us=step.after, change=step.change.estimate,
                     low=step.change.low, high=step.change.high, p_value=round(step.p_value, 4))


def load(store: ResultStore, tag: Optional[str] = None, limit: int = DEFAULT_LIMIT,
         min_effect: float = steps.MIN_EFFECT) -> HistoryReport:
    """`controller history` as a library."""
    runs = load_runs(store, tag, limit=limit)
    return HistoryReport(tag=tag, runs=len(runs), min_effect=min_effect,
                         cells=histories(runs, min_effect=min_effect))


@dataclass
class History:
    """A run, the runs up to it that share a cell with it (oldest first), the cells checks found
    regressed, each cell's history with its steps, and the run's own regression check."""

    run: RunReport
    runs: list[RunReport]
    regressed: dict[str, set[CellKey]]
    cells: list[CellHistory] = field(default_factory=list)
    check: Optional[RegressReport] = None
    tag: Optional[str] = None  # the filter, when one was given


def load_history(store: ResultStore, ref: str = "latest", limit: int = HISTORY_RUNS,
                 tag: Optional[str] = None) -> History:
    """The run `ref` names and up to `limit` earlier runs with one of its cells (of `tag` only, if given)."""
    run = store.load_run(ref)
    keys = {cell_key(c) for c in run.cells}
    earlier = [r for r in load_runs(store, tag, upto=run.run_id, limit=10 * limit)
               if r.run_id != run.run_id and keys & {cell_key(c) for c in r.cells}]
    runs = [*earlier[-(limit - 1):], run] if limit > 1 else [run]
    ids = [r.run_id for r in runs]
    regressed: dict[str, set[CellKey]] = defaultdict(set)
    checks = store.regress_reports(ids)
    for check in checks:
        regressed[check.candidate] |= {cell_key(c) for c in check.cells if c.verdict == "REGRESSION"}
    own = [c for c in checks if c.candidate == run.run_id]
    return History(run=run, runs=runs, regressed=dict(regressed), cells=histories(runs, keys),
                   check=own[-1] if own else None, tag=tag)


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
