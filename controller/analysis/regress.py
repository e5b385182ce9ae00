"""`controller regress` as a library: compare a candidate run with a baseline run, per cell.

Cells are matched by device, model file name, delegate and threads. Each metric (p50
latency, peak memory, top-1 accuracy, delegate coverage) gets a verdict of its own from the
runs' rounds (`controller.analysis.verdicts`); latency of two separately measured runs is
judged with the run-to-run noise of the cell's history (`controller.analysis.noise`), and is
undecided without it. The cell's verdict names the metrics that made it (`decided_by`).
Disturbed rounds (`controller.analysis.disturbance`) are left out and counted; a cell that
worked in the baseline and fails in the candidate is a regression of its `status`.
"""

from __future__ import annotations

import collections
from collections import defaultdict
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Optional

from agent.wire.records import Cell
from controller.analysis import disturbance
from controller.analysis.noise import run_noise
from controller.analysis.opprofiles import coverage_drop
from controller.analysis.stats import CellKey, cell_key, key_text, median_or_none
from controller.analysis.verdicts import CONFIDENCE, MIN_ROUNDS, judge, judge_runs
from controller.records import VERDICTS, CellComparison, FigureChange, RegressReport, RunReport

DEFAULT_THRESHOLD = 0.05
DEFAULT_MEMORY_THRESHOLD = 0.10
DEFAULT_ACCURACY_THRESHOLD = 0.01
# `--fail-on-metric` names -> the figure each one judges. A failing candidate (`status`)
# always fails the check.
METRICS = {"latency": "latency_p50", "memory": "memory_peak", "accuracy": "accuracy_top1",
           "coverage": "delegate_coverage"}

@dataclass
class Thresholds:
    """Minimum effects: latency (relative, overridable per model), memory (relative),
    accuracy (top-1 as a fraction)."""

    latency: float = DEFAULT_THRESHOLD
    memory: float = DEFAULT_MEMORY_THRESHOLD
    accuracy: float = DEFAULT_ACCURACY_THRESHOLD
    per_model: dict[str, float] = field(default_factory=dict)
    min_rounds: int = MIN_ROUNDS
    confidence: float = CONFIDENCE  # per look: lower when more rounds may follow (verdicts.corrected_confidence)
    fail_on_metric: tuple[str, ...] = tuple(METRICS)  # metrics whose regression fails the check

    def latency_for(self, model: str) -> float:
        """The latency threshold for one model file."""
        return self.per_model.get(model, self.latency)


def parse_percent(text: str) -> float:
    """`5%`, `5` or `0.05` as the fraction 0.05; ValueError otherwise."""
    value = text.strip()
    percent = value.endswith("%")
    number = float(value.rstrip("%"))
    fraction = number / 100 if percent or number >= 1 else number
    if not 0 <= fraction < 10:
        raise ValueError(f"threshold out of range: {text!r}")
    return fraction


def _measured(cell: Cell) -> bool:
    return cell.status == "ok" and cell.latency_us is not None and cell.latency_us.centre is not None


def usable_rounds(cells: list[Cell]) -> tuple[list[Cell], collections.Counter[str]]:
    """The usable rounds of one cell in one run (ok, with a latency, undisturbed) and what
    disturbed the others."""
    return disturbance.split([c for c in cells if _measured(c)])


def paired_rounds(baseline: list[Cell], candidate: list[Cell]) -> tuple[list[Cell], list[Cell],
                                                                        collections.Counter[str],
                                                                        collections.Counter[str]]:
    """Rounds measured in pairs (baseline[i] next to candidate[i]): the pairs whose halves are
    both usable, and what disturbed each side."""
    pairs = [(b, c) for b, c in zip(baseline, candidate) if _measured(b) and _measured(c)]
    base_ok, base_counts = disturbance.split([b for b, _ in pairs])
    cand_ok, cand_counts = disturbance.split([c for _, c in pairs])
    kept_base, kept_cand = {id(c) for c in base_ok}, {id(c) for c in cand_ok}
    kept = [(b, c) for b, c in pairs if id(b) in kept_base and id(c) in kept_cand]
    return [b for b, _ in kept], [c for _, c in kept], base_counts, cand_counts


def _figure(baseline: list[float], candidate: list[float], threshold: float, min_rounds: int,
            bigger_is_worse: bool = True, confidence: float = CONFIDENCE, paired: bool = False,
            reason: Optional[str] = None) -> FigureChange:
    verdict, change = judge(baseline, candidate, threshold, min_rounds, bigger_is_worse, confidence, paired)
    if verdict == "INCONCLUSIVE" and min(len(baseline), len(candidate)) < min_rounds:
        reason = f"{min(len(baseline), len(candidate))} round(s) on one side: a verdict needs {min_rounds} a side"
    return FigureChange(
        verdict=verdict, baseline=median_or_none(baseline), candidate=median_or_none(candidate),
        change=change.estimate if change else None, low=change.low if change else None,
        high=change.high if change else None, threshold=threshold,
        rounds=(len(baseline), len(candidate)), reason=reason)


def _across_runs(baseline: list[float], candidate: list[float], threshold: float, thresholds: Thresholds,
                 history: Sequence[float]) -> FigureChange:
    """Latency of two separately measured runs, judged with the run-to-run noise of `history`
    (the cell's earlier run values, oldest first)."""
    verdict, estimate, interval, reason = judge_runs(baseline, candidate, threshold, run_noise(history),
                                                     thresholds.min_rounds, thresholds.confidence,
                                                     history_runs=len(history))
    return FigureChange(
        verdict=verdict, baseline=median_or_none(baseline), candidate=median_or_none(candidate),
        change=estimate, low=interval.low if interval else None, high=interval.high if interval else None,
        threshold=threshold, rounds=(len(baseline), len(candidate)), reason=reason)


def _coverage(baseline: list[Cell], candidate: list[Cell]) -> Optional[FigureChange]:
    """Delegate coverage: the nodes left to the CPU in the baseline and in the candidate (the
    most over rounds; where a graph's total is not known, the nodes the delegate took, the
    fewest). One more node on the CPU is a regression, whatever the latency says; counting what
    fell back, not what was taken, keeps two different graphs (fp32 and int8) comparable."""
    def left(cells: list[Cell]) -> Optional[int]:
        counts = [c.delegate_coverage.total_nodes - c.delegate_coverage.delegated_nodes for c in cells
                  if c.status == "ok" and c.delegate_coverage and c.delegate_coverage.delegated_nodes is not None
                  and c.delegate_coverage.total_nodes is not None]
        return max(counts) if counts else None

    before, after = left(baseline), left(candidate)
    if before is None or after is None:
        return None
    verdict = "REGRESSION" if after > before else "IMPROVEMENT" if after < before else "NO CHANGE"
    return FigureChange(verdict=verdict, baseline=before, candidate=after, change=float(after - before), low=None,
                        high=None, threshold=0.0, rounds=(len(baseline), len(candidate)),
                        reason=coverage_drop(baseline, candidate) or f"{after} node(s) left to the CPU, "
                                                                       f"{before} in the baseline")


def _overall(figures: Mapping[str, Optional[FigureChange]]) -> tuple[str, list[str]]:
    """The cell's verdict and the metrics that made it: a cell regressed if any metric did; it
    improved if metrics improved and none is unsure; undecided names the undecided metrics."""
    verdicts = {name: f.verdict for name, f in figures.items() if f is not None}
    for verdict in ("REGRESSION", "INCONCLUSIVE", "IMPROVEMENT"):
        named = [name for name, v in verdicts.items() if v == verdict]
        if named:
            return verdict, named
    return ("NO CHANGE", list(verdicts)) if verdicts else ("INCONCLUSIVE", [])


def compare_cell(key: CellKey, baseline: list[Cell], candidate: list[Cell],
                 thresholds: Thresholds, paired: bool = False, history: Sequence[float] = ()) -> CellComparison:
    """One cell's rounds in both runs, judged metric by metric.

    `paired`: baseline[i] and candidate[i] ran back to back in one session; latency is then
    judged on the ratio within each pair. Otherwise the runs were measured apart and
    `history` (the cell's earlier run values) says how much runs differ by themselves.
    """
    device, model, delegate, threads = key
    if paired:
        base, cand, base_disturbed, cand_disturbed = paired_rounds(baseline, candidate)
    else:
        (base, base_disturbed), (cand, cand_disturbed) = usable_rounds(baseline), usable_rounds(candidate)
    flags = []
    for side, counts, rounds in (("baseline", base_disturbed, baseline), ("candidate", cand_disturbed, candidate)):
        if counts:
            flags.append(f"disturbed {side} {disturbance.describe(counts)}; left out")
        busy = disturbance.busy_note(rounds)
        if busy:
            flags.append(f"{side}: {busy}")
    if {c.model_sha256 for c in baseline} != {c.model_sha256 for c in candidate}:
        flags.append("model changed")
    if {c.fingerprint for c in baseline} != {c.fingerprint for c in candidate} and \
            {c.model_sha256 for c in baseline} == {c.model_sha256 for c in candidate}:
        flags.append("device, runtime or settings changed")
    if any(c.latency_us.centre_is_mean for c in base + cand):
        flags.append("compared by mean where no median was printed (benchmark_model logs)")
    base_p50, cand_p50 = [c.latency_us.centre for c in base], [c.latency_us.centre for c in cand]
    latency = (_figure(base_p50, cand_p50, thresholds.latency_for(model), thresholds.min_rounds,
                       confidence=thresholds.confidence, paired=True, reason="rounds paired in one session")
               if paired else _across_runs(base_p50, cand_p50, thresholds.latency_for(model), thresholds, history))
    # Memory and accuracy hardly vary between rounds: one round each is enough to judge them.
    memory_base = [c.memory_mb.peak_rss for c in base if c.memory_mb and c.memory_mb.peak_rss]
    memory_cand = [c.memory_mb.peak_rss for c in cand if c.memory_mb and c.memory_mb.peak_rss]
    memory = (_figure(memory_base, memory_cand, thresholds.memory, 1, reason="peak memory barely varies between "
                      "rounds: judged from the rounds measured")
              if memory_base and memory_cand else None)
    top1_base = [c.accuracy.top1 for c in base if c.accuracy]
    top1_cand = [c.accuracy.top1 for c in cand if c.accuracy]
    accuracy = (_figure(top1_base, top1_cand, thresholds.accuracy, 1, bigger_is_worse=False,
                        reason="top-1 on the same dataset")
                if top1_base and top1_cand else None)
    coverage = _coverage(baseline, candidate)
    verdict, decided_by = _overall({"latency_p50": latency, "memory_peak": memory, "accuracy_top1": accuracy,
                                    "delegate_coverage": coverage})
    failed = [c for c in candidate if c.status != "ok"]
    if base and failed and not cand:
        verdict, decided_by = "REGRESSION", ["status"]
        flags.append(f"fails in the candidate: {failed[0].error}")
    if coverage is not None and coverage.verdict == "REGRESSION":
        flags.append(coverage.reason)
    return CellComparison(device=device, model=model, delegate=delegate, threads=threads, verdict=verdict,
                          latency_p50=latency, memory_peak=memory, accuracy_top1=accuracy,
                          delegate_coverage=coverage, decided_by=decided_by, flags=flags,
                          disturbed_rounds=(base_disturbed["rounds"], cand_disturbed["rounds"]))


def failing(cells: Iterable[CellComparison], thresholds: Thresholds) -> bool:
    """Whether the check fails: a cell regressed in a metric `--fail-on-metric` allows (or failed)."""
    allowed = {METRICS[name] for name in thresholds.fail_on_metric} | {"status"}
    return any(c.verdict == "REGRESSION" and allowed & set(c.decided_by) for c in cells)


def compare(baseline: RunReport, candidate: RunReport, thresholds: Thresholds,
            history: Optional[Mapping[CellKey, Sequence[float]]] = None) -> RegressReport:
    """Every cell the two runs share, judged; cells only one run has are listed.

    `history`: each cell's run values before the candidate (the baseline's included), oldest
    first, for the run-to-run noise (`controller.history.run_values` reads them from a store).
    """
    grouped: dict[str, dict[CellKey, list[Cell]]] = {"base": defaultdict(list), "cand": defaultdict(list)}
    for side, report in (("base", baseline), ("cand", candidate)):
        for cell in report.cells:
            grouped[side][cell_key(cell)].append(cell)
    base, cand = grouped["base"], grouped["cand"]
    shared = sorted(set(base) & set(cand))
    cells = [compare_cell(key, base[key], cand[key], thresholds, history=(history or {}).get(key, ()))
             for key in shared]
    return RegressReport(
        baseline=baseline.run_id, candidate=candidate.run_id, threshold=thresholds.latency,
        memory_threshold=thresholds.memory, accuracy_threshold=thresholds.accuracy,
        regressed=failing(cells, thresholds), counts=count_verdicts(cells), cells=cells,
        fail_on_metric=list(thresholds.fail_on_metric),
        disturbed_rounds=sum(sum(c.disturbed_rounds) for c in cells), confidence=thresholds.confidence,
        only_in_baseline=[key_text(k) for k in sorted(set(base) - set(cand))],
        only_in_candidate=[key_text(k) for k in sorted(set(cand) - set(base))],
    )


def count_verdicts(cells: Iterable[CellComparison]) -> dict[str, int]:
    """How many cells got each verdict."""
    cells = list(cells)
    return {verdict: sum(c.verdict == verdict for c in cells) for verdict in VERDICTS}
