import numpy as np
import pytest

from agent import stats


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


def test_no_samples_no_stats():
    assert stats.latency_stats([]) is None


def test_stable_cell_has_no_warning_and_unstable_cell_has_one():
    steady = stats.latency_stats([1000, 1010, 990, 1005])
    noisy = stats.latency_stats([1000, 3000, 1000, 5000])
    assert stats.stability_warning(stats.coefficient_of_variation(steady)) is None
    warning = stats.stability_warning(stats.coefficient_of_variation(noisy))
    assert warning is not None and "unstable" in warning
