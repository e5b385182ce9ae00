"""Regression statistics on synthetic rounds whose truth is known."""

from __future__ import annotations

import numpy as np
import pytest

from controller.analysis.verdicts import Interval, classify, difference_change, judge, ratio_change


def _rounds(center: float, spread: float, n: int, seed: int) -> list[float]:
    """Per-round medians: `center` with a little round-to-round noise."""
    return list(center * (1 + np.random.default_rng(seed).normal(0, spread, n)))


def test_no_change_is_no_change():
    verdict, change = judge(_rounds(1000, 0.005, 7, 1), _rounds(1000, 0.005, 7, 2), threshold=0.05)
    assert verdict == "NO CHANGE"
    assert -0.05 <= change.low <= change.estimate <= change.high <= 0.05


def test_ten_percent_slower_is_a_regression():
    verdict, change = judge(_rounds(1000, 0.01, 7, 3), _rounds(1100, 0.01, 7, 4), threshold=0.05)
    assert verdict == "REGRESSION"
    assert change.low > 0.05 and change.estimate == pytest.approx(0.10, abs=0.02)


def test_ten_percent_faster_is_an_improvement():
    verdict, _ = judge(_rounds(1000, 0.01, 7, 5), _rounds(900, 0.01, 7, 6), threshold=0.05)
    assert verdict == "IMPROVEMENT"


def test_bimodal_rounds_are_inconclusive_not_a_regression():
    # A device that flips between two clock speeds: the medians differ by 50 %, but the
    # rounds say nothing reliable about the code.
    baseline = [10.0, 15.0, 10.0, 15.0, 10.0, 15.0, 10.0]
    candidate = [15.0, 10.0, 15.0, 10.0, 15.0, 10.0, 15.0]
    verdict, change = judge(baseline, candidate, threshold=0.05)
    assert change.estimate == pytest.approx(0.5)
    assert verdict == "INCONCLUSIVE"


def test_too_few_rounds_is_inconclusive_even_for_a_large_shift():
    verdict, change = judge([1000.0, 1001.0], [1500.0, 1502.0], threshold=0.05)
    assert verdict == "INCONCLUSIVE"
    assert change is None  # two rounds a side would bound the change far too tightly


def test_threshold_decides_a_small_real_shift():
    base, cand = _rounds(1000, 0.002, 9, 7), _rounds(1030, 0.002, 9, 8)
    assert judge(base, cand, threshold=0.05)[0] == "NO CHANGE"
    assert judge(base, cand, threshold=0.01)[0] == "REGRESSION"


def test_accuracy_loss_uses_differences():
    verdict, change = judge([0.90], [0.85], threshold=0.01, min_rounds=1, bigger_is_worse=False)
    assert verdict == "REGRESSION" and change.estimate == pytest.approx(0.05)
    assert judge([0.90], [0.90], threshold=0.01, min_rounds=1, bigger_is_worse=False)[0] == "NO CHANGE"


def test_classify_edges():
    assert classify(None, 0.05) == "INCONCLUSIVE"
    assert classify(Interval(0.2, 0.06, 0.3), 0.05) == "REGRESSION"
    assert classify(Interval(-0.2, -0.3, -0.06), 0.05) == "IMPROVEMENT"
    assert classify(Interval(0.0, -0.05, 0.05), 0.05) == "NO CHANGE"
    assert classify(Interval(0.04, -0.01, 0.09), 0.05) == "INCONCLUSIVE"


def test_no_data_gives_no_interval():
    assert ratio_change([], [1.0]) is None
    assert ratio_change([0.0], [1.0]) is None
    assert difference_change([0.5], []) is None
