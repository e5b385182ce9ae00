"""Sequential looks, paired rounds and disturbed rounds, on synthetic rounds whose truth is known."""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np
import pytest

from agent.facts import SysRoot, cpu_shares, read_cpu_times, read_load_avg, read_sched_ns, wait_share
from agent.wire.records import Cell, DeviceState, LatencyStats, Settings
from controller import models
from controller.analysis import disturbance
from controller.analysis.regress import Thresholds, compare_cell
from controller.analysis.sequential import Plan, out_of_reach, rounds_within
from controller.analysis.verdicts import classify, corrected_confidence, judge, paired_ratio_change
from controller.plan import plan


def _noisy(n: int, rng, drift: float = 0.0) -> np.ndarray:
    return 1000 * (1 + drift) * np.exp(rng.normal(0, 0.06, n))


def _false_alarms(plan: Plan, confidence: float, trials: int = 150) -> int:
    """Quiet comparisons (no true change) looked at after the stored rounds and at each mark of
    the plan's schedule; REGRESSION at any look counts."""
    rng = np.random.default_rng(11)
    stored = plan.batch
    marks = [stored] + [stored + mark for mark in plan.schedule]
    alarms = 0
    for _ in range(trials):
        base, cand = _noisy(marks[-1], rng), _noisy(marks[-1], rng)
        for n in marks:
            verdict, _ = judge(base[:n], cand[:n], threshold=0.0, confidence=confidence)
            if verdict == "REGRESSION":
                alarms += 1
                break
            if verdict != "INCONCLUSIVE":
                break
    return alarms


def test_corrected_looks_keep_false_alarms_that_uncorrected_looks_let_through():
    # Threshold 0 makes every alarm a pure interval miss: the worst case for repeated looks.
    plan = Plan(more_rounds=60, batch=4)
    uncorrected = _false_alarms(plan, confidence=0.95)
    corrected = _false_alarms(plan, confidence=plan.confidence)
    assert corrected < uncorrected
    assert corrected / 150 <= 0.05  # one-sided misses of 99.2 % intervals, over six looks


def test_looks_come_at_doubling_rounds_and_split_the_error_rate():
    assert Plan().looks == 1 and Plan().confidence == pytest.approx(0.95) and Plan().schedule == ()
    assert Plan(more_rounds=10, batch=5).schedule == (5, 10) and Plan(more_rounds=10, batch=5).looks == 3
    assert Plan(more_rounds=80, batch=5).schedule == (5, 10, 20, 40, 80)
    assert Plan(more_rounds=11, batch=5).confidence == pytest.approx(1 - 0.05 / 4)  # 5, 10, 11
    assert Plan(more_rounds=3, batch=5).schedule == (3,)
    with pytest.raises(ValueError):
        corrected_confidence(0)
    with pytest.raises(ValueError):
        Plan(more_rounds=10, batch=0)


def test_the_batch_before_a_look_is_cut_to_what_the_budget_allows():
    assert rounds_within(100.0, 0.0, 4, 20) == 20       # no cost measured yet: the whole batch
    assert rounds_within(100.0, 0.5, 4, 20) == 20       # 40 s of 100 s
    assert rounds_within(10.0, 0.5, 4, 20) == 5         # 5 rounds x 4 sides x 0.5 s
    assert rounds_within(-3.0, 0.5, 4, 20) == 0         # already over
    assert rounds_within(10.0, 0.5, 0, 20) == 20


def test_pairs_cancel_drift_both_halves_share():
    rng = np.random.default_rng(3)
    drift = np.exp(rng.normal(0, 0.25, 12))  # each pair's moment is slow or fast, by up to 2x
    base = 1000 * drift * np.exp(rng.normal(0, 0.01, 12))
    cand = 1100 * drift * np.exp(rng.normal(0, 0.01, 12))
    unpaired, _ = judge(list(base), list(cand), threshold=0.05)
    paired, change = judge(list(base), list(cand), threshold=0.05, paired=True)
    assert unpaired == "INCONCLUSIVE" and paired == "REGRESSION"
    assert change.estimate == pytest.approx(0.10, abs=0.02)
    assert paired_ratio_change([1.0, 2.0], [1.0]) is None  # pairs must match up
    assert classify(paired_ratio_change([1.0] * 5, [1.0] * 5), 0.05) == "NO CHANGE"


def _round(p50: float, index: int, busy: float = 0.5, steal: float = 0.0, sha: str = "a",
           wait: float | None = None) -> Cell:
    return Cell(device="pi4", model="m.tflite", model_sha256=sha * 64, model_size_bytes=10, delegate="xnnpack",
                threads=1, round=index, status="ok",
                latency_us=LatencyStats(count=50, min=p50, max=p50, mean=p50, std=0, p50=p50),
                device_state=DeviceState(cpu_busy_share=busy, cpu_steal_share=steal, cpu_count=4,
                                         cpu_wait_share=wait))


def test_a_round_that_waited_for_the_cpu_more_than_the_others_is_left_out_and_a_busy_machine_is_named():
    rounds = [_round(1000, i, wait=0.30 + i / 100) for i in range(5)] + [_round(4000, 5, wait=0.9)]
    usable, counts = disturbance.split(rounds)
    assert len(usable) == 5 and counts == {"rounds": 1, "waited for a CPU": 1}
    assert disturbance.busy_note(rounds) == "busy machine: rounds waited for a CPU 32% of the time they could run"
    assert disturbance.busy_note([_round(1000, i, wait=0.02) for i in range(3)]) is None


def test_transient_load_and_steal_are_left_out_and_counted_steady_load_is_not():
    rounds = [_round(1000, i, busy=0.5) for i in range(5)]  # one core busy besides the cell's own
    rounds.append(_round(1900, 5, busy=1.0))                 # a burst: three other cores busy
    rounds.append(_round(1500, 6, steal=0.2))
    usable, counts = disturbance.split(rounds)
    assert [c.round for c in usable] == [0, 1, 2, 3, 4]
    assert counts == {"rounds": 2, "other load": 1, "CPU steal": 1}
    assert disturbance.describe(counts) == "2 round(s): 1 other load, 1 CPU steal"

    quiet = [_round(1000 + i, i) for i in range(5)]
    comparison = compare_cell(("pi4", "m.tflite", "xnnpack", 1), quiet, rounds, Thresholds(),
                              history=[1000 + (-1) ** i * (i % 3) for i in range(10)])
    assert comparison.disturbed_rounds == (0, 2) and comparison.verdict == "NO CHANGE"
    assert any(f.startswith("disturbed candidate 2 round(s)") for f in comparison.flags)


def test_paired_rounds_drop_the_whole_pair_of_a_disturbed_half():
    base = [_round(1000, i) for i in range(6)]
    cand = [_round(1200, i, sha="b") for i in range(5)] + [_round(1200, 5, steal=0.3, sha="b")]
    comparison = compare_cell(("pi4", "m.tflite", "xnnpack", 1), base, cand, Thresholds(), paired=True)
    assert comparison.latency_p50.rounds == (5, 5) and comparison.verdict == "REGRESSION"


def test_cpu_counters_and_load_read_from_a_mirrored_proc(tmp_path):
    (tmp_path / "proc").mkdir()
    (tmp_path / "proc" / "loadavg").write_text("1.50 0.80 0.40 2/120 999\n")
    (tmp_path / "proc" / "stat").write_text("cpu  100 0 50 800 10 0 0 40 0 0\ncpu0 50 0 25 400 5 0 0 20 0 0\n"
                                            "cpu1 50 0 25 400 5 0 0 20 0 0\nintr 1\n")
    root = SysRoot(str(tmp_path))
    times, cpus = read_cpu_times(root)
    assert times == [100, 0, 50, 800, 10, 0, 0, 40] and cpus == 2
    assert read_load_avg(root) == 1.5
    # 100 ticks later: 60 busy (10 of them stolen), 40 idle.
    assert cpu_shares(times, [140, 0, 60, 840, 10, 0, 0, 50]) == (0.6, 0.1)
    assert cpu_shares(times, times) == (None, None)
    assert read_cpu_times(SysRoot(str(tmp_path / "missing"))) == (None, None)


def test_wait_share_from_this_process_schedstat():
    assert wait_share((100, 50), (400, 150)) == 0.25 and wait_share(None, (1, 1)) is None
    start = read_sched_ns()
    if start is None:
        pytest.skip("this kernel keeps no run time in /proc/self/task/*/schedstat")
    assert start[0] > 0
    sum(range(200_000))  # some time on a CPU,
    os.sched_yield()  # and a trip through the scheduler, which brings the counters up to date
    share = wait_share(start, read_sched_ns())
    assert share is not None and 0 <= share <= 1


def test_an_ab_session_alternates_which_model_goes_first_in_a_round():
    planted = Path(__file__).resolve().parents[2] / "examples" / "models" / "planted"
    base = models.load(planted / "base" / "conv_stack.tflite")
    slow = models.load(planted / "slower_10" / "conv_stack.tflite")
    order = [(cell.round, cell.source.sha256) for cell in plan([base, slow], ["xnnpack"], [1], 4, Settings(),
                                                               alternate_order=True)]
    assert order == [(0, base.sha256), (0, slow.sha256), (1, slow.sha256), (1, base.sha256),
                     (2, base.sha256), (2, slow.sha256), (3, slow.sha256), (3, base.sha256)]
    plain = [cell.source.sha256 for cell in plan([base, slow], ["xnnpack"], [1], 2, Settings())]
    assert plain == [base.sha256, slow.sha256] * 2


def test_a_change_at_the_threshold_is_given_up_and_clear_ones_are_not():
    # +5.5 % [+1 %, +10 %] after 80 pairs, 80 more to come: still straddling 5 % at the end.
    assert out_of_reach(0.055, 0.01, 0.10, 0.05, pairs=80, more=80)
    # The same width around +9 % or 0 %: 80 more pairs are expected to decide it.
    assert not out_of_reach(0.09, 0.045, 0.135, 0.05, pairs=80, more=80)
    assert not out_of_reach(0.0, -0.045, 0.045, 0.05, pairs=80, more=80)
    assert not out_of_reach(0.055, 0.01, 0.10, 0.05, pairs=0, more=80)
