"""Whether a cell is stable: judged on the interquartile spread of its invokes, not on the CV."""

import numpy as np
import pytest

from agent import stats
from agent.wire.records import UNSTABLE_CV, UNSTABLE_SPREAD, Cell, LatencyStats, judge_stability


def one_preemption(count: int = 200_000) -> list[int]:
    """Invokes of 25.3-25.5 us with a single 4 ms preemption among them (nanoseconds)."""
    samples = [25_300 + 100 * (i % 3) for i in range(count)]
    samples[count // 2] = 4_000_000
    return samples


def two_speeds(count: int = 2_000) -> list[int]:
    """Half the invokes at 10 us and half at 15 us, interleaved: a cell that cannot be summed up in one figure."""
    return [10_000 if i % 2 else 15_000 for i in range(count)]


def test_one_preemption_among_many_invokes_leaves_the_cell_stable_though_its_cv_is_large():
    samples = one_preemption()
    latency = stats.latency_stats(samples)
    stability = judge_stability(latency, stats.spread_bounds(samples))
    assert latency.cv > UNSTABLE_CV  # the rule the CV alone gives would call it unstable
    assert stability.cv == pytest.approx(latency.std / latency.mean)
    assert stability.spread == pytest.approx((latency.p75 - latency.p25) / latency.p50)
    assert stability.spread < UNSTABLE_SPREAD
    assert stability.unstable is False and stability.reason is None and stability.warning is None
    assert stability.threshold == UNSTABLE_SPREAD
    assert stability.spread_low <= stability.spread <= stability.spread_high < UNSTABLE_SPREAD


def test_two_speeds_make_the_cell_unstable_with_a_reason_that_names_the_figure_and_the_threshold():
    samples = two_speeds()
    latency = stats.latency_stats(samples)
    stability = judge_stability(latency, stats.spread_bounds(samples))
    # p25 = 10 us, p50 = 12.5 us, p75 = 15 us: the quartiles are 40 % of the median apart
    assert stability.spread == pytest.approx(0.4)
    assert stability.unstable is True
    assert "interquartile spread 40.0% of the median exceeds" in stability.reason
    assert f"{UNSTABLE_SPREAD:.0%}" in stability.reason and "2,000 invokes" in stability.reason
    assert "may not" not in stability.reason  # the whole interval lies above the threshold
    assert stability.spread_low > UNSTABLE_SPREAD
    assert stability.warning == f"unstable: {stability.reason}"


def test_a_spread_judged_on_few_invokes_says_it_may_be_wrong():
    samples = [10_000, 10_500, 11_000, 11_500, 12_000, 12_500, 13_000]
    latency = stats.latency_stats(samples)
    stability = judge_stability(latency, stats.spread_bounds(samples))
    assert stability.unstable is True
    assert stability.spread_low <= UNSTABLE_SPREAD < stability.spread_high
    assert "so it may not" in stability.reason


def test_the_spread_interval_narrows_with_more_invokes():
    rng = np.random.default_rng(7)
    few = rng.normal(20_000, 2_000, 100).astype(int).tolist()
    many = rng.normal(20_000, 2_000, 100_000).astype(int).tolist()
    spread_few = stats.spread_bounds(few)
    spread_many = stats.spread_bounds(many)
    assert spread_many[1] - spread_many[0] < (spread_few[1] - spread_few[0]) / 5
    # normal invokes: the interquartile range is 1.349 standard deviations, 13.5 % of this mean
    assert spread_many[0] < 0.1349 < spread_many[1]
    assert stats.spread_bounds([]) is None


def test_printed_figures_without_quartiles_leave_stability_undecided_and_say_why():
    printed = LatencyStats(count=50, min=900.0, max=2000.0, mean=1000.0, std=150.0, p50=990.0, p5=950.0, p95=1400.0)
    stability = judge_stability(printed)
    assert stability.spread is None and stability.unstable is None
    assert stability.cv == pytest.approx(0.15)
    assert stability.reason == "the source gives no p25, p75: the spread of single invokes is unknown"
    assert stability.warning is None
    only_mean = judge_stability(LatencyStats(count=50, mean=1000.0))
    assert only_mean.cv is None and "no p25, p50, p75" in only_mean.reason


def test_a_cell_is_reported_unstable_by_its_stability_and_by_its_cv_only_when_stored_without_one():
    def cell(**fields) -> Cell:
        return Cell(model="m.tflite", model_sha256="0" * 64, model_size_bytes=1, delegate="cpu", threads=1,
                    status="ok", **fields)

    calm = judge_stability(stats.latency_stats(one_preemption(10_000)))
    wide = judge_stability(stats.latency_stats(two_speeds()))
    assert not cell(cv=3.4, stability=calm).unstable
    assert cell(cv=0.01, stability=wide).unstable
    assert cell(cv=0.5).unstable and not cell(cv=0.05).unstable  # stored before `stability` existed
    assert not cell(stability=judge_stability(LatencyStats(mean=1000.0, std=900.0))).unstable
