"""Change points in a cell's history: the runs where its latency stepped up or down.

Binary segmentation on the run values (log scale, oldest first): a segment is split where
its two sides differ most in Student's t, and the split is kept when

- each side has at least `min_segment` runs (one odd night is never a segment of its own),
- the t-test's p-value, times the number of split positions tried in the segment
  (Bonferroni), is at most `alpha`,
- the change of the sides' medians is at least `min_effect`, and its interval (at the same
  corrected confidence) excludes zero;

and both sides of a significant split are searched again.

Significance comes from a t-test, as in Hunter and its successor apache-otava, not from
shuffling the runs: six runs split three and three have only 20 orders, so a permutation
test cannot go below p = 0.1 however large the step, while the t-test finds a step much
larger than the noise at its first run once three runs stand on each side. What each run
holds counts too: a run's noise is at least what its own rounds show (the spread of their
log values over their count), so three runs that agree by chance do not make a small step
look certain. apache-otava itself is not used: it pins numpy 2.2 and brings cloud clients
(BigQuery, Slack) a benchmarking controller has no use for.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Optional

import numpy as np

from controller.analysis.verdicts import Interval

MIN_SEGMENT = 3  # a side of two runs would let one outlier night set its median
MIN_EFFECT = 0.05
ALPHA = 0.05


@dataclass(frozen=True)
class Step:
    """A level change: `position` is the index of the first value after it."""

    position: int
    before: float  # median of the segment before
    after: float   # median of the segment after
    change: Interval  # after / before - 1, with its interval
    p_value: float  # corrected for the split positions tried


@dataclass(frozen=True)
class _Split:
    position: int
    difference: float  # mean log value after minus before
    se: float
    freedom: int


def _within(rounds: Optional[Sequence[Sequence[float]]], size: int) -> np.ndarray:
    """Per run, the variance of its value that its own rounds show (0 where it has fewer than two)."""
    out = np.zeros(size)
    for i, values in enumerate(rounds or ()):
        logs = np.log([v for v in values if v > 0])
        if logs.size >= 2:
            out[i] = logs.var(ddof=1) / logs.size
    return out


def _best_split(logs: np.ndarray, within: np.ndarray, min_segment: int) -> Optional[_Split]:
    """The position where the two sides differ most in t."""
    best: Optional[_Split] = None
    best_t = -1.0
    for t in range(min_segment, logs.size - min_segment + 1):
        before, after = logs[:t], logs[t:]
        freedom = logs.size - 2
        residual = (((before - before.mean()) ** 2).sum() + ((after - after.mean()) ** 2).sum()) / freedom
        variance = max(residual, float(within.mean()))  # a run is at least as noisy as its rounds
        se = math.sqrt(variance * (1 / before.size + 1 / after.size))
        difference = float(after.mean() - before.mean())
        score = abs(difference) / se if se > 0 else (math.inf if difference else 0.0)
        if score > best_t:
            best, best_t = _Split(t, difference, se, freedom), score
    return best


def find_steps(values: Sequence[float], min_effect: float = MIN_EFFECT, min_segment: int = MIN_SEGMENT,
               alpha: float = ALPHA, rounds: Optional[Sequence[Sequence[float]]] = None) -> list[Step]:
    """The steps in `values` (one positive value per run, oldest first), in order of position.

    `rounds`, when given, holds each run's round values (one list per run): they bound from
    below how noisy each run value is.
    """
    series = np.asarray(values, dtype=float)
    if series.size < 2 * min_segment or series.min() <= 0:
        return []
    logs = np.log(series)  # relative changes weigh alike at every level
    within = _within(rounds, series.size)
    found: list[Step] = []
    stack = [(0, series.size)]
    while stack:
        lo, hi = stack.pop()
        if hi - lo < 2 * min_segment:
            continue
        split = _best_split(logs[lo:hi], within[lo:hi], min_segment)
        if split is None:
            continue
        positions = hi - lo - 2 * min_segment + 1
        p = min(1.0, positions * _p_value(split))
        if p > alpha:
            continue  # no structure left in this segment
        at = lo + split.position
        stack += [(lo, at), (at, hi)]
        change = _interval(split, 1 - alpha / positions)
        if abs(change.estimate) < min_effect or change.low <= 0 <= change.high:
            continue
        found.append(Step(position=at, before=float(np.median(series[lo:at])), after=float(np.median(series[at:hi])),
                          change=change, p_value=p))
    return sorted(found, key=lambda s: s.position)


def _p_value(split: _Split) -> float:
    """Two-sided p-value of the split's t."""
    from scipy import stats  # a heavy import: only where a history is searched

    if split.se == 0:
        return 0.0 if split.difference else 1.0
    return float(2 * stats.t.sf(abs(split.difference) / split.se, split.freedom))


def _interval(split: _Split, confidence: float) -> Interval:
    """The split's change as after / before - 1 with its t interval."""
    from scipy import stats

    half = float(stats.t.ppf(0.5 + confidence / 2, split.freedom)) * split.se
    return Interval(math.expm1(split.difference), math.expm1(split.difference - half),
                    math.expm1(split.difference + half))
