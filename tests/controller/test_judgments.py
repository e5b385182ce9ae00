"""Judgments a user can act on, through the commands a user types: a verdict names the metric
that decided it, undecided is never green, and a step is found from three nights a side."""

from __future__ import annotations

import json

import pytest

from controller.analysis.steps import find_steps
from controller.records import Transfer
from controller.store import open_store
from tests.controller.test_regress import rounds
from tests.support import controller


def store_runs(db, runs: list[tuple[str, list]]) -> None:
    """Stored runs, one a day in order, tag nightly."""
    with open_store(db) as store:
        for day, (run_id, cells) in enumerate(runs, start=1):
            started = f"2026-01-{day:02d}T00:00:00+00:00"
            store.start_run(run_id, "nightly", started)
            for index, c in enumerate(cells):
                store.add_cell(run_id, c, index)
            store.finish_run(run_id, started, Transfer(), [])


def nights(count: int, level: float = 1000.0, **kw) -> list[tuple[str, list]]:
    return [(f"night-{n}", rounds([level + n % 3, level, level + 1], **kw)) for n in range(count)]


@pytest.fixture
def fatter(tmp_path):
    """Ten quiet nights, then a candidate 30 % faster but with 20 % more peak memory."""
    db = tmp_path / "r.sqlite"
    store_runs(db, [*nights(10, peak=50.0), ("cand", rounds([700, 701, 699], peak=60.0))])
    return db


def test_the_verdict_names_the_metric_that_decided_it(fatter):
    result = controller("regress", "--baseline", "night-9", "--candidate", "cand", "--json", "--markdown", "-",
                        db=fatter)
    assert result.returncode == 1, result.stderr
    (only,) = json.loads(result.stdout)["cells"]
    assert only["verdict"] == "REGRESSION" and only["decided_by"] == ["memory_peak"]
    assert only["latency_p50"]["verdict"] == "IMPROVEMENT"
    # The table and the Markdown say it too, with latency's own verdict beside it.
    assert "REGRESSION (memory +20.0%)" in result.stderr and "IMPROVEMENT: -30.0%" in result.stderr


def test_fail_on_metric_chooses_what_can_fail_the_check(fatter):
    latency_only = controller("regress", "--baseline", "night-9", "--candidate", "cand", "--json",
                              "--fail-on-metric", "latency,accuracy", db=fatter)
    assert latency_only.returncode == 0, latency_only.stderr
    assert json.loads(latency_only.stdout)["regressed"] is False
    bad = controller("regress", "--baseline", "night-9", "--candidate", "cand", "--fail-on-metric", "speed", db=fatter)
    assert bad.returncode == 2 and "argument --fail-on-metric" in bad.stderr


def test_undecided_is_never_green(tmp_path):
    db = tmp_path / "r.sqlite"
    # Two runs and no history: nothing can say how much runs differ by themselves.
    store_runs(db, [("base", rounds([1000, 1010, 990])), ("cand", rounds([1020, 1000, 1010]))])
    plain = controller("regress", "--baseline", "base", "--candidate", "cand", "--markdown", "-", db=db)
    assert plain.returncode == 0
    assert "## edgebench: no regression confirmed, 1 of 1 cell(s) undecided" in plain.stdout
    assert "run-to-run noise unknown" in plain.stdout
    strict = controller("regress", "--baseline", "base", "--candidate", "cand", "--fail-on", "undecided", db=db)
    assert strict.returncode == 3, strict.stderr


def test_no_shared_cells_is_a_usage_error(tmp_path):
    db = tmp_path / "r.sqlite"
    store_runs(db, [("base", rounds([1000, 1000, 1000])), ("cand", rounds([1000, 1000, 1000], model="other.tflite"))])
    result = controller("regress", "--baseline", "base", "--candidate", "cand", db=db)
    assert result.returncode == 2
    assert "share no cell" in result.stderr


def test_a_large_step_is_found_at_its_first_night_with_three_a_side():
    before, after = [1070.0, 1068.0, 1075.0], [10010.0, 9990.0, 10030.0]
    (step,) = find_steps(before + after)
    assert step.position == 3 and step.change.estimate == pytest.approx(8.35, rel=0.05)
    assert step.p_value <= 0.05 and step.change.low > 0


def test_rounds_keep_three_agreeing_nights_from_making_a_small_step_certain():
    # Run values that agree closely by chance, from rounds that spread by 10 %: no step of 6 %.
    values = [1000.0, 1000.5, 999.5, 1060.0, 1060.5, 1059.5]
    assert find_steps(values)  # the run values alone look certain
    spread = [[900.0, 1000.0, 1100.0, 950.0, 1050.0]] * 3 + [[954.0, 1060.0, 1166.0, 1007.0, 1113.0]] * 3
    assert find_steps(values, rounds=spread) == []


def test_history_names_the_step_and_the_run_to_run_noise(tmp_path):
    db = tmp_path / "r.sqlite"
    store_runs(db, [*nights(3, 1070.0), *[(f"big-{n}", rounds([10000.0 + n, 10010, 9990])) for n in range(3)]])
    result = controller("history", "--json", db=db)
    assert result.returncode == 0, result.stderr
    (only,) = json.loads(result.stdout)["cells"]
    (step,) = only["steps"]
    assert step["run_id"] == "big-0" and step["before_run_id"] == "night-2"
    assert only["noise"] is not None and only["noise"]["runs"] == 6
    short = tmp_path / "short.sqlite"
    store_runs(short, nights(4))
    table = controller("history", db=short)
    assert "unknown (too few runs)" in table.stdout
