"""Change points in synthetic histories whose truth is known."""

from __future__ import annotations

import numpy as np
import pytest

from controller.analysis.steps import find_steps


def _nights(levels: list[float], seed: int, spread: float = 0.02) -> list[float]:
    return list(np.array(levels) * np.exp(np.random.default_rng(seed).normal(0, spread, len(levels))))


def test_a_planted_step_is_found_at_its_night_with_its_size():
    (step,) = find_steps(_nights([1000] * 6 + [1200] * 6, seed=1))
    assert step.position == 6
    assert step.change.estimate == pytest.approx(0.20, abs=0.03)
    assert step.change.low > 0.1 and step.p_value <= 0.05


def test_one_outlier_night_is_not_a_step_wherever_it_falls():
    for at in range(12):
        levels = [1000.0] * 12
        levels[at] = 2500.0
        assert find_steps(_nights(levels, seed=at)) == [], at


def test_quiet_noise_rarely_has_a_step():
    # The permutation test runs at 5 %: about one quiet history in twenty shows a step.
    with_steps = sum(bool(find_steps(_nights([1000] * 15, seed=seed, spread=0.04))) for seed in range(40))
    assert with_steps <= 4


def test_a_step_below_the_minimum_effect_is_not_reported():
    series = _nights([1000] * 8 + [1030] * 8, seed=4, spread=0.002)
    assert find_steps(series) == []
    (step,) = find_steps(series, min_effect=0.02)
    assert step.position == 8


def test_two_steps_and_short_series():
    found = find_steps(_nights([1000] * 6 + [1300] * 6 + [900] * 6, seed=5))
    assert [s.position for s in found] == [6, 12]
    assert found[1].change.estimate < 0
    assert find_steps([1000, 1000, 1000, 2000, 2000]) == []  # too short for two segments of three nights
