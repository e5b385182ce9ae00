"""Change points in a cell's history: the runs where its latency stepped up or down.

Binary segmentation, as asv does: a series (one value per run, oldest first, on a log
scale) is split where the sum of squared deviations from each side's mean drops most;
the split is kept when

- each side has at least `min_segment` runs (one odd night is never a segment of its own),
- a permutation test, as Hunter's E-Divisive uses, finds the drop unlikely under shuffled
  order (p <= `alpha`; otherwise the segment holds no more steps),
- the change of the medians is at least `min_effect`, and its bootstrap interval (whole
  runs resampled) excludes zero;

and both sides of a significant split are searched again. A step is reported by the medians of its sides:
one outlier night cannot be a side of its own, does not survive the permutation test,
and barely moves a median.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

from controller.analysis.verdicts import Interval, ratio_change

MIN_SEGMENT = 3  # a side of two runs would let one outlier night set its median
MIN_EFFECT = 0.05
ALPHA = 0.05
PERMUTATIONS = 400


@dataclass(frozen=True)
class Step:
    """A level change: `position` is the index of the first value after it."""

    position: int
    before: float  # median of the segment before
    after: float   # median of the segment after
    change: Interval  # after / before - 1, with its interval
    p_value: float


def _cost(values: np.ndarray) -> float:
    return float(((values - values.mean()) ** 2).sum()) if values.size else 0.0


def _best_split(values: np.ndarray, min_segment: int) -> tuple[int, float]:
    """The split position with the largest cost reduction, and that reduction."""
    whole = _cost(values)
    best, gain = -1, 0.0
    for t in range(min_segment, values.size - min_segment + 1):
        reduction = whole - _cost(values[:t]) - _cost(values[t:])
        if reduction > gain:
            best, gain = t, reduction
    return best, gain


def _p_value(values: np.ndarray, gain: float, min_segment: int, permutations: int, seed: int) -> float:
    """Share of shuffled orders whose best split reduces the cost at least as much."""
    rng = np.random.default_rng(seed)
    hits = sum(_best_split(rng.permutation(values), min_segment)[1] >= gain - 1e-12
               for _ in range(permutations))
    return (hits + 1) / (permutations + 1)


def find_steps(values: Sequence[float], min_effect: float = MIN_EFFECT, min_segment: int = MIN_SEGMENT,
               alpha: float = ALPHA, permutations: int = PERMUTATIONS, seed: int = 0) -> list[Step]:
    """The steps in `values` (positive, oldest first), in order of position."""
    series = np.asarray(values, dtype=float)
    if series.size < 2 * min_segment or series.min() <= 0:
        return []
    logs = np.log(series)  # relative changes weigh alike at every level
    found: list[Step] = []
    stack = [(0, series.size)]
    while stack:
        lo, hi = stack.pop()
        if hi - lo < 2 * min_segment:
            continue
        split, gain = _best_split(logs[lo:hi], min_segment)
        if split < 0:
            continue
        p = _p_value(logs[lo:hi], gain, min_segment, permutations, seed)
        if p > alpha:
            continue  # no structure left in this segment
        at = lo + split
        # A significant split whose sides are not two levels (e.g. a rise then a fall) is
        # no step itself, but its halves may hold steps.
        stack += [(lo, at), (at, hi)]
        before, after = series[lo:at], series[at:hi]
        change = ratio_change(before, after, seed=seed)
        if change is None or abs(change.estimate) < min_effect or change.low <= 0 <= change.high:
            continue
        found.append(Step(position=at, before=float(np.median(before)), after=float(np.median(after)),
                          change=change, p_value=p))
    return sorted(found, key=lambda s: s.position)
