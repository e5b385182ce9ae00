"""Latency statistics: pure functions over samples in nanoseconds."""

from __future__ import annotations

import math
from collections.abc import Sequence
from statistics import NormalDist
from typing import Optional

import numpy as np

from agent.wire.records import LatencyStats

# Each of the three order-statistic intervals (p25, p50, p75) at 1 - 0.05/3, so that the
# spread's interval built from all three holds with at least 95 % (Bonferroni).
_QUARTILE_Z = NormalDist().inv_cdf(1 - 0.05 / 6)


def latency_stats(samples_ns: Sequence[int]) -> Optional[LatencyStats]:
    """count/min/max/mean/std and p5/p25/p50/p75/p90/p95/p99 in microseconds, or None without samples."""
    if len(samples_ns) == 0:
        return None
    us = np.asarray(samples_ns, dtype=np.float64) / 1e3
    p5, p25, p50, p75, p90, p95, p99 = np.percentile(us, [5, 25, 50, 75, 90, 95, 99])
    return LatencyStats(
        count=int(us.size),
        min=float(us.min()),
        max=float(us.max()),
        mean=float(us.mean()),
        std=float(us.std()),
        p5=float(p5),
        p25=float(p25),
        p50=float(p50),
        p75=float(p75),
        p90=float(p90),
        p95=float(p95),
        p99=float(p99),
    )


def spread_bounds(samples_ns: Sequence[int]) -> Optional[tuple[float, float]]:
    """A 95 % interval of the interquartile spread, (p75 - p25) / p50, of these invokes.

    Each quartile is bounded by the order statistics that the binomial count of invokes
    below it allows (distribution-free, but taking invokes as independent), and the spread by
    the narrowest and widest combination of those bounds. None without samples or with a zero
    lower bound on the median.
    """
    if len(samples_ns) == 0:
        return None
    us = np.sort(np.asarray(samples_ns, dtype=np.float64)) / 1e3
    p25_low, p25_high = _quantile_bounds(us, 0.25)
    p50_low, p50_high = _quantile_bounds(us, 0.50)
    p75_low, p75_high = _quantile_bounds(us, 0.75)
    if p50_low <= 0:
        return None
    return max(0.0, p75_low - p25_high) / p50_high, (p75_high - p25_low) / p50_low


def _quantile_bounds(ordered: np.ndarray, q: float) -> tuple[float, float]:
    """The order statistics around the q-quantile of sorted samples, at _QUARTILE_Z."""
    n = ordered.size
    centre, half = q * (n - 1), _QUARTILE_Z * math.sqrt(n * q * (1 - q))
    return float(ordered[max(0, math.floor(centre - half))]), float(ordered[min(n - 1, math.ceil(centre + half))])
