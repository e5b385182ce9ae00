import numpy as np
import pytest

from agent import stats
from agent.wire.records import judge_stability


def test_latency_stats_match_numpy_in_microseconds():
    samples_ns = [1000, 2000, 3000, 4000, 100000]
    result = stats.latency_stats(samples_ns)
    us = np.array(samples_ns) / 1e3
    assert result.count == 5
    assert result.min == 1.0 and result.max == 100.0
    assert result.mean == pytest.approx(us.mean())
    assert result.std == pytest.approx(us.std())
    assert result.p50 == pytest.approx(3.0)
    assert result.p90 == pytest.approx(np.percentile(us, 90))
    assert result.p99 == pytest.approx(np.percentile(us, 99))
    for q in (5, 25, 75, 95):
        assert getattr(result, f"p{q}") == pytest.approx(np.percentile(us, q))
    assert result.p5 <= result.p25 <= result.p50 <= result.p75 <= result.p95


def test_no_samples_no_stats():
    assert stats.latency_stats([]) is None


def test_stable_cell_has_no_warning_and_unstable_cell_has_one():
    steady = stats.latency_stats([1000, 1010, 990, 1005])
    noisy = stats.latency_stats([1000, 3000, 1000, 5000])
    assert judge_stability(steady).warning is None
    warning = judge_stability(noisy).warning
    assert warning is not None and "unstable" in warning
