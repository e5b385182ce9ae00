"""`controller regress` as a library: compare a candidate run with a baseline run, per cell.

Cells are matched by device, model file name, delegate and threads. Each figure (p50
latency, peak memory, top-1 accuracy) is compared over the runs' rounds with the
statistics of `controller.analysis.verdicts`. Disturbed rounds (`controller.analysis.disturbance`)
are left out and counted; a cell that worked in the baseline and fails in the candidate is a
regression. A cell whose delegate took fewer nodes is flagged.
"""

from __future__ import annotations

import collections
from collections import defaultdict
from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Optional

from agent.wire.records import Cell
from controller.analysis import disturbance
from controller.analysis.opprofiles import coverage_drop
from controller.analysis.stats import CellKey, cell_key, key_text, median_or_none
from controller.analysis.verdicts import CONFIDENCE, MIN_ROUNDS, judge
from controller.records import VERDICTS, CellComparison, FigureChange, RegressReport, RunReport

DEFAULT_THRESHOLD = 0.05
DEFAULT_MEMORY_THRESHOLD = 0.10
DEFAULT_ACCURACY_THRESHOLD = 0.01

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
            bigger_is_worse: bool = True, confidence: float = CONFIDENCE, paired: bool = False) -> FigureChange:
    verdict, change = judge(baseline, candidate, threshold, min_rounds, bigger_is_worse, confidence, paired)
    return FigureChange(
        verdict=verdict, baseline=median_or_none(baseline), candidate=median_or_none(candidate),
        change=change.estimate if change else None, low=change.low if change else None,
        high=change.high if change else None, threshold=threshold,
        rounds=(len(baseline), len(candidate)))


def _overall(figures: Iterable[Optional[FigureChange]]) -> str:
    """A cell regressed if any figure did; it improved if figures improved and none is unsure."""
    verdicts = {f.verdict for f in figures if f is not None}
    if "REGRESSION" in verdicts:
        return "REGRESSION"
    if "INCONCLUSIVE" in verdicts or not verdicts:
        return "INCONCLUSIVE"
    return "IMPROVEMENT" if "IMPROVEMENT" in verdicts else "NO CHANGE"


def compare_cell(key: CellKey, baseline: list[Cell], candidate: list[Cell],
                 thresholds: Thresholds, paired: bool = False) -> CellComparison:
    """One cell's rounds in both runs, judged figure by figure.

    `paired`: baseline[i] and candidate[i] ran back to back in one session; latency is then
    judged on the ratio within each pair.
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
    latency = _figure([c.latency_us.centre for c in base], [c.latency_us.centre for c in cand],
                      thresholds.latency_for(model), thresholds.min_rounds, confidence=thresholds.confidence,
                      paired=paired)
    # Memory and accuracy hardly vary between rounds: one round each is enough to judge them.
    memory_base = [c.memory_mb.peak_rss for c in base if c.memory_mb and c.memory_mb.peak_rss]
    memory_cand = [c.memory_mb.peak_rss for c in cand if c.memory_mb and c.memory_mb.peak_rss]
    memory = (_figure(memory_base, memory_cand, thresholds.memory, 1)
              if memory_base and memory_cand else None)
    top1_base = [c.accuracy.top1 for c in base if c.accuracy]
    top1_cand = [c.accuracy.top1 for c in cand if c.accuracy]
    accuracy = (_figure(top1_base, top1_cand, thresholds.accuracy, 1, bigger_is_worse=False)
                if top1_base and top1_cand else None)
    verdict = _overall([latency, memory, accuracy])
    failed = [c for c in candidate if c.status != "ok"]
    if base and failed and not cand:
        verdict = "REGRESSION"
        flags.append(f"fails in the candidate: {failed[0].error}")
    fallback = coverage_drop(baseline, candidate)
    if fallback:
        flags.append(fallback)
    return CellComparison(device=device, model=model, delegate=delegate, threads=threads, verdict=verdict,
                          latency_p50=latency, memory_peak=memory, accuracy_top1=accuracy, flags=flags,
                          disturbed_rounds=(base_disturbed["rounds"], cand_disturbed["rounds"]))


def compare(baseline: RunReport, candidate: RunReport, thresholds: Thresholds) -> RegressReport:
    """Every cell the two runs share, judged; cells only one run has are listed."""
    grouped: dict[str, dict[CellKey, list[Cell]]] = {"base": defaultdict(list), "cand": defaultdict(list)}
    for side, report in (("base", baseline), ("cand", candidate)):
        for cell in report.cells:
            grouped[side][cell_key(cell)].append(cell)
    base, cand = grouped["base"], grouped["cand"]
    shared = sorted(set(base) & set(cand))
    cells = [compare_cell(key, base[key], cand[key], thresholds) for key in shared]
    return RegressReport(
        baseline=baseline.run_id, candidate=candidate.run_id, threshold=thresholds.latency,
        memory_threshold=thresholds.memory, accuracy_threshold=thresholds.accuracy,
        regressed=any(c.verdict == "REGRESSION" for c in cells), counts=count_verdicts(cells), cells=cells,
        disturbed_rounds=sum(sum(c.disturbed_rounds) for c in cells), confidence=thresholds.confidence,
        only_in_baseline=[key_text(k) for k in sorted(set(base) - set(cand))],
        only_in_candidate=[key_text(k) for k in sorted(set(cand) - set(base))],
    )


def count_verdicts(cells: Iterable[CellComparison]) -> dict[str, int]:
    """How many cells got each verdict."""
    cells = list(cells)
    return {verdict: sum(c.verdict == verdict for c in cells) for verdict in VERDICTS}
