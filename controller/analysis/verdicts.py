"""Regression statistics: pure functions over per-round figures.

Edge latency is skewed and multimodal, so a cell is compared run against run through its
rounds: the statistic is the ratio of the medians of the per-round figures, its
uncertainty a bootstrap interval that resamples whole rounds, and the verdict says
whether the interval clears a minimum effect (Chromium Pinpoint's three outcomes, plus
INCONCLUSIVE when the data cannot tell).
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass
from statistics import NormalDist
from typing import Optional

import numpy as np

from controller.analysis.noise import BOUND_CONFIDENCE, MIN_RUNS, RunNoise
from controller.records import Verdict

# Fewer rounds than this on either side cannot separate a change from round-to-round noise.
MIN_ROUNDS = 3
RESAMPLES = 4000
CONFIDENCE = 0.95


@dataclass(frozen=True)
class Interval:
    """A point estimate of a change and its confidence interval, on a scale where 0 is no change
    and positive is worse (slower, bigger, less accurate)."""

    estimate: float
    low: float
    high: float


def _bootstrap(baseline: Sequence[float], candidate: Sequence[float], change, resamples: int,
               confidence: float, seed: int) -> Interval:
    """`change(baseline median, candidate median)` and its interval, resampling whole rounds."""
    base, cand = np.asarray(baseline, dtype=float), np.asarray(candidate, dtype=float)
    rng = np.random.default_rng(seed)
    base_medians = np.median(rng.choice(base, size=(resamples, base.size)), axis=1)
    cand_medians = np.median(rng.choice(cand, size=(resamples, cand.size)), axis=1)
    tail = (1.0 - confidence) / 2 * 100
    low, high = np.percentile(change(base_medians, cand_medians), [tail, 100 - tail])
    return Interval(float(change(np.median(base), np.median(cand))), float(low), float(high))


def ratio_change(baseline: Sequence[float], candidate: Sequence[float], resamples: int = RESAMPLES,
                 confidence: float = CONFIDENCE, seed: int = 0) -> Optional[Interval]:
    """median(candidate) / median(baseline) - 1, with a bootstrap interval over rounds.

    For figures where bigger is worse (latency, memory). None without data on both sides
    or with a non-positive value on the baseline side.
    """
    if len(baseline) == 0 or len(candidate) == 0 or min(baseline) <= 0:
        return None
    return _bootstrap(baseline, candidate, lambda base, cand: cand / base - 1.0, resamples, confidence, seed)


def paired_ratio_change(baseline: Sequence[float], candidate: Sequence[float], resamples: int = RESAMPLES,
                        confidence: float = CONFIDENCE, seed: int = 0) -> Optional[Interval]:
    """median(candidate_i / baseline_i) - 1 over rounds measured in pairs (A/B interleaved in one
    session), with a bootstrap interval that resamples whole pairs.

    Drift that both halves of a pair share (temperature, a neighbour's load) cancels in
    each ratio. None without pairs or with a non-positive baseline value.
    """
    base, cand = np.asarray(baseline, dtype=float), np.asarray(candidate, dtype=float)
    if base.size == 0 or base.size != cand.size or base.min() <= 0:
        return None
    ratios = cand / base
    rng = np.random.default_rng(seed)
    medians = np.median(rng.choice(ratios, size=(resamples, ratios.size)), axis=1)
    tail = (1.0 - confidence) / 2 * 100
    low, high = np.percentile(medians, [tail, 100 - tail])
    return Interval(float(np.median(ratios) - 1.0), float(low - 1.0), float(high - 1.0))


def difference_change(baseline: Sequence[float], candidate: Sequence[float], resamples: int = RESAMPLES,
                      confidence: float = CONFIDENCE, seed: int = 0) -> Optional[Interval]:
    """median(baseline) - median(candidate), with a bootstrap interval over rounds.

    For figures where bigger is better (accuracy as a fraction): a positive value is a loss.
    """
    if len(baseline) == 0 or len(candidate) == 0:
        return None
    return _bootstrap(baseline, candidate, lambda base, cand: base - cand, resamples, confidence, seed)


def corrected_confidence(looks: int, confidence: float = CONFIDENCE) -> float:
    """The confidence each of `looks` planned looks at growing data must use (Bonferroni).

    Deciding after every batch of extra rounds gives noise several chances to leave the
    interval; splitting the error rate evenly over the planned looks keeps the chance that
    any look's interval misses the true change at most 1 - `confidence`. One look: unchanged.
    """
    if looks < 1:
        raise ValueError(f"looks must be at least 1, got {looks}")
    return 1.0 - (1.0 - confidence) / looks


def classify(change: Optional[Interval], threshold: float) -> Verdict:
    """The verdict of an interval against a minimum effect `threshold` (e.g. 0.05).

    REGRESSION when the whole interval lies beyond +threshold, IMPROVEMENT beyond
    -threshold, NO CHANGE when it lies inside [-threshold, +threshold], else INCONCLUSIVE.
    """
    if change is None:
        return "INCONCLUSIVE"
    if change.low > threshold:
        return "REGRESSION"
    if change.high < -threshold:
        return "IMPROVEMENT"
    if change.low >= -threshold and change.high <= threshold:
        return "NO CHANGE"
    return "INCONCLUSIVE"


def judge(baseline: Sequence[float], candidate: Sequence[float], threshold: float,
          min_rounds: int = MIN_ROUNDS, bigger_is_worse: bool = True,
          confidence: float = CONFIDENCE, paired: bool = False) -> tuple[Verdict, Optional[Interval]]:
    """Verdict and interval for one figure of one cell; INCONCLUSIVE with too few rounds (and
    then no interval: a handful of rounds would bound the change far too tightly).

    `paired`: baseline[i] and candidate[i] were measured back to back (latency only).
    """
    statistic = paired_ratio_change if paired else ratio_change if bigger_is_worse else difference_change
    change = statistic(baseline, candidate, confidence=confidence)
    if min(len(baseline), len(candidate)) < min_rounds:
        return "INCONCLUSIVE", None
    return classify(change, threshold), change


def widen(change: Interval, run_sd: float, confidence: float = CONFIDENCE) -> Interval:
    """`change` between two separately measured runs, with the noise between runs that neither
    run's rounds can show: on the log scale each bound moves out, in quadrature, by z times the
    standard deviation of the difference of two run values (`run_sd` times the root of 2)."""
    extra = NormalDist().inv_cdf(0.5 + confidence / 2) * run_sd * math.sqrt(2)
    centre, low, high = (math.log1p(v) for v in (change.estimate, change.low, change.high))
    return Interval(change.estimate, math.expm1(centre - math.hypot(centre - low, extra)),
                    math.expm1(centre + math.hypot(high - centre, extra)))


def judge_runs(baseline: Sequence[float], candidate: Sequence[float], threshold: float, noise: Optional[RunNoise],
               min_rounds: int = MIN_ROUNDS, confidence: float = CONFIDENCE,
               history_runs: int = 0) -> tuple[Verdict, Optional[float], Optional[Interval], str]:
    """Verdict, estimate, interval and the reason for a latency figure of two separately
    measured runs.

    Their rounds show the noise within each run; the noise between runs comes from the cell's
    history (`noise`, its upper bound). Without it the data cannot decide: INCONCLUSIVE, the
    estimate without an interval, and what would decide. `history_runs` is how many runs the
    history held.
    """
    change = ratio_change(baseline, candidate, confidence=confidence)
    if change is None:
        return "INCONCLUSIVE", None, None, "no latency on one side"
    rounds = min(len(baseline), len(candidate))
    if rounds < min_rounds:
        return "INCONCLUSIVE", change.estimate, None, (
            f"{rounds} round(s) on one side: a verdict needs {min_rounds} a side "
            "(--rounds, or --more-rounds to measure them in one session)")
    if noise is None:
        return "INCONCLUSIVE", change.estimate, None, (
            f"run-to-run noise unknown: the device's history holds {history_runs} run(s) of this cell, "
            f"{MIN_RUNS} needed; compare in one session (`controller compare`, or `regress --more-rounds`)")
    widened = widen(change, noise.upper, confidence)
    return classify(widened, threshold), change.estimate, widened, (
        f"interval widened by the run-to-run noise of {noise.runs} runs (±{noise.upper:.1%} a run, "
        f"{BOUND_CONFIDENCE:.0%} upper bound)")
