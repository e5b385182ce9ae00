"""Latency statistics: pure functions over samples in nanoseconds."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Optional

import numpy as np

from agent.wire.records import UNSTABLE_CV, LatencyStats


def latency_stats(samples_ns: Sequence[int]) -> Optional[LatencyStats]:
    """count/min/max/mean/std/p50/p90/p99 in microseconds, or None without samples."""
    if len(samples_ns) == 0:
        return None
    us = np.asarray(samples_ns, dtype=np.float64) / 1e3
    p50, p90, p99 = np.percentile(us, [50, 90, 99])
    return LatencyStats(
        count=int(us.size),
        min=float(us.min()),
        max=float(us.max()),
        mean=float(us.mean()),
        std=float(us.std()),
        p50=float(p50),
        p90=float(p90),
        p99=float(p99),
    )


def coefficient_of_variation(stats: LatencyStats) -> Optional[float]:
    """std / mean, or None when either is unknown or the mean is zero."""
    if stats.std is None or not stats.mean:
        return None
    return stats.std / stats.mean


def stability_warning(cv: Optional[float]) -> Optional[str]:
    """A warning line when the cell's latency is too spread out to trust one figure."""
    if cv is None or cv <= UNSTABLE_CV:
        return None
    return (f"unstable: coefficient of variation {cv:.1%} exceeds {UNSTABLE_CV:.0%}; "
            "the device may be throttling or busy")
