"""Baseline and candidate measured interleaved in one session, and more rounds until decided.

Night-to-night drift (another temperature, another neighbour on the host) is not in a
comparison whose two sides ran on the same device in the same minutes, alternately:
round 0 of the baseline, round 0 of the candidate, round 1 of the baseline, ... Latency
is then judged on the ratio within each such pair (`verdicts.paired_ratio_change`), so
drift both halves share cancels. A model compared with itself is measured twice as many
rounds, alternately assigned to the two sides. When the baseline model's file is gone,
only the candidate gets more rounds; they join its stored ones, judged unpaired.

The sequential design is `controller.analysis.sequential.Plan`: a cell stops when decided;
the batch before a look is cut to what the device-seconds budget still allows, at the cost
per round measured so far, and the follow-up stops when the budget is spent.
"""

from __future__ import annotations

import time
from collections import defaultdict
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Optional

import msgspec

from agent.wire.records import Cell, Settings
from controller import models
from controller.analysis import regress
from controller.analysis.sequential import Plan, out_of_reach, rounds_within
from controller.analysis.stats import CellKey, cell_key, key_text
from controller.history import SESSION_META
from controller.models import ModelSource
from controller.records import CellComparison, MoreRounds, RegressReport, RunReport
from controller.runner import Observer, RunRequest, run
from controller.store import ResultStore

SESSION_TAG = "session"


@dataclass(frozen=True)
class Pair:
    """One cell to measure in a session: its key, the two model files and the settings."""

    key: CellKey
    baseline: Optional[ModelSource]  # None: the baseline file is gone, the candidate alone gets rounds
    candidate: ModelSource
    settings: Settings

    @property
    def kind(self) -> str:
        """`pair` (two files), `same model` (one file on both sides) or `candidate only`."""
        if self.baseline is None:
            return "candidate only"
        return "same model" if self.baseline.sha256 == self.candidate.sha256 else "pair"


@dataclass
class Session:
    """Rounds gathered so far per cell key, device seconds spent and the session runs made."""

    rounds: dict[CellKey, tuple[list[Cell], list[Cell]]] = field(
        default_factory=lambda: defaultdict(lambda: ([], [])))
    device_seconds: float = 0.0
    side_rounds: int = 0  # rounds measured, one per side of a cell
    run_ids: list[str] = field(default_factory=list)

    @property
    def seconds_per_round(self) -> float:
        """Device seconds one round of one side has cost so far (0 before any)."""
        return self.device_seconds / self.side_rounds if self.side_rounds else 0.0


def measure(pairs: Iterable[Pair], rounds: int, store: ResultStore, session: Session,
            tag: str = SESSION_TAG, meta: Optional[dict[str, str]] = None,
            observer: Optional[Observer] = None) -> list[str]:
    """`rounds` more rounds per side for each pair, interleaved; returns error lines.

    Pairs sharing device, delegate, threads, settings and kind run as one session run, whose
    odd rounds measure its files in reverse order (ABBA): neither side always goes first.
    """
    groups: dict[tuple, list[Pair]] = defaultdict(list)
    for pair in pairs:
        device, _, delegate, threads = pair.key
        groups[(device, delegate, threads, msgspec.json.encode(pair.settings), pair.kind)].append(pair)
    errors: list[str] = []
    for (device, delegate, threads, _, kind), members in groups.items():
        paths = []
        for pair in members:
            if kind == "pair":
                paths.append(str(pair.baseline.path))
            paths.append(str(pair.candidate.path))
        request = RunRequest(devices=[device], models=paths, threads=[threads], delegates=[delegate],
                             settings=members[0].settings, rounds=rounds * (2 if kind == "same model" else 1),
                             tag=tag, meta={SESSION_META: tag, **(meta or {})}, alternate_order=True)
        started = time.monotonic()
        report = run(request, store, observer)
        session.device_seconds += time.monotonic() - started
        session.side_rounds += rounds * len(members) * _sides(kind)
        session.run_ids.append(report.run_id)
        errors += report.errors
        for pair in members:
            _collect(pair, report, session.rounds[pair.key])
    return errors


def _sides(kind: str) -> int:
    """Sides of a pair that get rounds: both, or the candidate alone."""
    return 1 if kind == "candidate only" else 2


def _collect(pair: Pair, report: RunReport, into: tuple[list[Cell], list[Cell]]) -> None:
    """Sort a session run's cells of `pair` into its baseline and candidate rounds (a file is
    known by its name and content: other pairs of the run may share either)."""
    base, cand = into

    def made_from(cell: Cell, source: Optional[ModelSource]) -> bool:
        return source is not None and cell.model == source.name and cell.model_sha256 == source.sha256

    for cell in report.cells:
        if pair.kind == "same model" and made_from(cell, pair.candidate):
            (base if cell.round % 2 == 0 else cand).append(cell)
        elif made_from(cell, pair.baseline):
            base.append(cell)
        elif made_from(cell, pair.candidate):
            cand.append(cell)


def judge(pair: Pair, session: Session, thresholds: regress.Thresholds,
          stored: Optional[tuple[list[Cell], list[Cell]]] = None, history: Sequence[float] = ()) -> CellComparison:
    """The verdict from the session's rounds (the candidate's stored rounds join them when the
    baseline file was gone and `stored` holds the stored runs' rounds: then the two sides were
    measured apart, and `history`, the cell's run values, says how much runs differ by themselves)."""
    base, cand = session.rounds[pair.key]
    if pair.baseline is None:
        return regress.compare_cell(pair.key, stored[0] if stored else [], (stored[1] if stored else []) + cand,
                                    thresholds, history=history)
    return regress.compare_cell(pair.key, base, cand, thresholds, paired=True)


def sequential(pairs: list[Pair], first: dict[CellKey, CellComparison], plan: Plan,
               thresholds: regress.Thresholds, store: ResultStore, session: Session,
               stored: Optional[dict[CellKey, tuple[list[Cell], list[Cell]]]] = None,
               reopen: tuple[str, ...] = ("INCONCLUSIVE",), meta: Optional[dict[str, str]] = None,
               observer: Optional[Observer] = None,
               history: Optional[Mapping[CellKey, Sequence[float]]] = None
               ) -> tuple[dict[CellKey, CellComparison], MoreRounds]:
    """Look again at each mark of the plan's schedule at the cells whose verdict is in `reopen`
    (then INCONCLUSIVE), until each is decided, the schedule ends or the budget is spent.

    `session` may hold rounds already (`compare` measures its first look there); the marks
    count the rounds measured after the first look.
    """
    verdicts = dict(first)
    summary = MoreRounds(planned_rounds=plan.more_rounds, batch=plan.batch, looks=plan.looks,
                         max_device_seconds=plan.max_device_seconds)
    open_keys = {key for key, cell in verdicts.items() if cell.verdict in reopen}
    by_key = {pair.key: pair for pair in pairs}
    done = 0
    for look, mark in enumerate(plan.schedule, start=2):
        todo = [by_key[key] for key in sorted(open_keys) if key in by_key]
        if not todo:
            break
        wanted = mark - done
        rounds = rounds_within(plan.max_device_seconds - session.device_seconds, session.seconds_per_round,
                               sum(_sides(pair.kind) for pair in todo), wanted)
        if rounds:
            summary.notes += measure(todo, rounds, store, session, meta=meta, observer=observer)
            done += rounds
            for pair in todo:
                cell = judge(pair, session, thresholds, (stored or {}).get(pair.key), (history or {}).get(pair.key, ()))
                cell.looks = look
                cell.flags.append(f"judged in session ({pair.kind}) at look {look} of {plan.looks}, "
                                  f"after {done} more round(s)")
                verdicts[pair.key] = cell
            open_keys = {pair.key for pair in todo if verdicts[pair.key].verdict == "INCONCLUSIVE"}
            if 2 * done >= plan.more_rounds:  # before the last doubling, the most expensive batch
                open_keys -= _give_up(open_keys, verdicts, plan.more_rounds - done, done, summary)
        if rounds < wanted:
            summary.notes.append(f"device-seconds budget spent ({session.device_seconds:.0f} s of "
                                 f"{plan.max_device_seconds:.0f} s) after {done} more round(s): "
                                 f"{len(open_keys)} cell(s) left undecided")
            break
    else:
        if open_keys:
            summary.notes.append(f"{len(open_keys)} cell(s) still undecided after all {done} more round(s)")
    summary.device_seconds = round(session.device_seconds, 1)
    summary.sessions = list(session.run_ids)
    return verdicts, summary


def _give_up(open_keys: set[CellKey], verdicts: dict[CellKey, CellComparison], more: int, done: int,
             summary: MoreRounds) -> set[CellKey]:
    """The open cells that `more` rounds are not expected to decide, flagged and counted."""
    hopeless = {key for key in open_keys if _hopeless(verdicts[key], more)}
    for key in hopeless:
        verdicts[key].flags.append(f"given up after {done} more round(s): the change sits at the "
                                   "threshold, beyond what the remaining rounds resolve")
    if hopeless:
        summary.notes.append(f"{len(hopeless)} cell(s) given up after {done} more round(s): "
                             "their change sits at the threshold")
    return hopeless


def _hopeless(cell: CellComparison, more: int) -> bool:
    """An undecided latency change that `more` rounds are not expected to decide."""
    latency = cell.latency_p50
    if latency.verdict != "INCONCLUSIVE" or None in (latency.change, latency.low, latency.high):
        return False
    return more > 0 and out_of_reach(latency.change, latency.low, latency.high, latency.threshold,
                                     min(latency.rounds), more)


def model_sources(store: ResultStore, run_ids: Iterable[str]) -> dict[tuple[str, str], ModelSource]:
    """The model files the recorded requests of these runs name that still exist, by (name, sha256)."""
    found: dict[tuple[str, str], ModelSource] = {}
    for run_id in run_ids:
        text = store.load_request(run_id)
        if text is None:
            continue
        request = msgspec.json.decode(text, type=RunRequest)
        sources, _ = models.resolve(request.models + ([request.reference] if request.reference else []))
        for source in sources:
            found.setdefault((source.name, source.sha256), source)
    return found


def follow_up(report: RegressReport, baseline: RunReport, candidate: RunReport, plan: Plan,
              thresholds: regress.Thresholds, store: ResultStore,
              observer: Optional[Observer] = None,
              history: Optional[Mapping[CellKey, Sequence[float]]] = None) -> RegressReport:
    """`report` with its undecided cells measured again in sessions (see the module docstring).

    A night-to-night REGRESSION or IMPROVEMENT is confirmed in a session too before it counts:
    drift between nights is what the rounds of one night cannot show.
    """
    files = model_sources(store, [candidate.run_id, baseline.run_id])
    by_key: dict[str, dict[CellKey, list[Cell]]] = {"base": defaultdict(list), "cand": defaultdict(list)}
    for side, run_report in (("base", baseline), ("cand", candidate)):
        for cell in run_report.cells:
            by_key[side][cell_key(cell)].append(cell)
    pairs, stored, notes = [], {}, []
    for comparison in report.cells:
        key = (comparison.device, comparison.model, comparison.delegate, comparison.threads)
        if comparison.verdict == "NO CHANGE" or comparison.latency_p50.rounds[1] == 0:
            continue
        cand_cells = [c for c in by_key["cand"][key] if c.status == "ok"]
        base_cells = [c for c in by_key["base"][key] if c.status == "ok"]
        cand_file = files.get((cand_cells[0].model, cand_cells[0].model_sha256)) if cand_cells else None
        if cand_file is None or cand_cells[0].settings is None:
            notes.append(f"{key_text(key)}: candidate model file not found; no more rounds")
            continue
        base_file = files.get((base_cells[0].model, base_cells[0].model_sha256)) if base_cells else None
        if base_file is None:
            notes.append(f"{key_text(key)}: baseline model file not found; "
                         "more rounds of the candidate join its stored ones")
        pairs.append(Pair(key=key, baseline=base_file, candidate=cand_file, settings=cand_cells[0].settings))
        stored[key] = (by_key["base"][key], by_key["cand"][key])
    first = {(c.device, c.model, c.delegate, c.threads): c for c in report.cells}
    verdicts, summary = sequential(
        pairs, first, plan, thresholds, store, Session(), stored,
        reopen=("INCONCLUSIVE", "REGRESSION", "IMPROVEMENT"),
        meta={"baseline": baseline.run_id, "candidate": candidate.run_id}, observer=observer, history=history)
    summary.notes = notes + summary.notes
    cells = [verdicts[(c.device, c.model, c.delegate, c.threads)] for c in report.cells]
    return msgspec.structs.replace(
        report, cells=cells, counts=regress.count_verdicts(cells), regressed=regress.failing(cells, thresholds),
        disturbed_rounds=sum(sum(c.disturbed_rounds) for c in cells), more_rounds=summary)


def compare_models(baseline: Path, candidate: Path, device: str, delegates: list[str], threads: list[int],
                   rounds: int, settings: Settings, plan: Plan, thresholds: regress.Thresholds,
                   store: ResultStore, tag: str = "compare",
                   observer: Optional[Observer] = None) -> RegressReport:
    """`controller compare`: two model files A/B in one session, judged like `regress`."""
    base, cand = models.load(baseline), models.load(candidate)
    pairs = [Pair(key=(device, cand.name, delegate, n), baseline=base, candidate=cand, settings=settings)
             for delegate in delegates for n in threads]
    session = Session()
    meta = {"baseline_model": str(baseline), "candidate_model": str(candidate)}
    errors = measure(pairs, rounds, store, session, tag=tag, meta=meta, observer=observer)
    first = {}
    for pair in pairs:
        first[pair.key] = judge(pair, session, thresholds)
    verdicts, summary = sequential(pairs, first, plan, thresholds, store, session, meta=meta, observer=observer)
    summary.notes = errors + summary.notes
    cells = [verdicts[pair.key] for pair in pairs]
    return RegressReport(
        baseline=session.run_ids[0], candidate=session.run_ids[-1], threshold=thresholds.latency,
        memory_threshold=thresholds.memory, accuracy_threshold=thresholds.accuracy,
        regressed=regress.failing(cells, thresholds), counts=regress.count_verdicts(cells),
        fail_on_metric=list(thresholds.fail_on_metric),
        cells=cells, disturbed_rounds=sum(sum(c.disturbed_rounds) for c in cells),
        confidence=thresholds.confidence, more_rounds=summary,
        note=f"{baseline.name} (baseline) vs {candidate.name} (candidate), interleaved in one session")
