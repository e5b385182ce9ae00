"""Cell matching, flags and verdicts of `controller regress`, on synthetic runs."""

from __future__ import annotations

import msgspec
import pytest

from agent.wire.records import Accuracy, Cell, DelegateCoverage, DeviceState, LatencyStats, MemoryMB
from controller.analysis.regress import Thresholds, compare, parse_percent
from controller.records import RunReport, Transfer


def cell(p50: float, round_: int, model: str = "m.tflite", sha: str = "a", status: str = "ok",
         throttled: bool = False, top1: float | None = None, peak: float = 50.0) -> Cell:
    return Cell(device="pi4", model=model, model_sha256=sha * 64, model_size_bytes=10, delegate="xnnpack",
                threads=4, round=round_, status=status, error=None if status == "ok" else "boom",
                latency_us=LatencyStats(count=50, min=p50, max=p50, mean=p50, std=0, p50=p50)
                if status == "ok" else None,
                memory_mb=MemoryMB(init=1, overall=2, peak_rss=peak),
                accuracy=Accuracy(samples=100, top1=top1, top5=1.0) if top1 is not None else None,
                device_state=DeviceState(throttled=throttled))


def run(run_id: str, cells: list[Cell]) -> RunReport:
    return RunReport(run_id=run_id, tag="nightly", started_at="2026-01-01T00:00:00+00:00", finished_at=None,
                     devices={}, transfer=Transfer(), cells=cells)


def rounds(values, **kw) -> list[Cell]:
    return [cell(v, i, **kw) for i, v in enumerate(values)]


def quiet(level: float, runs: int = 12, wobble: float = 0.004) -> list[float]:
    """Run values of a history where the cell moved about `wobble` from run to run."""
    return [level * (1 + wobble * ((-1) ** i) * (1 + i % 3) / 2) for i in range(runs)]


def history(**levels: float) -> dict:
    """A quiet history for each model file named (as `model=level`, dots as underscores)."""
    return {("pi4", name.replace("_", "."), "xnnpack", 4): quiet(level) for name, level in levels.items()}


def test_a_slower_cell_regresses_and_a_steady_one_does_not():
    base = run("b", rounds([1000, 1010, 990, 1005, 995]) + rounds([500, 501, 499, 500, 502], model="n.tflite"))
    cand = run("c", rounds([1200, 1190, 1210, 1205, 1195]) + rounds([500, 499, 501, 500, 502], model="n.tflite"))
    report = compare(base, cand, Thresholds(), history(m_tflite=1000, n_tflite=500))
    verdicts = {c.model: c.verdict for c in report.cells}
    assert verdicts == {"m.tflite": "REGRESSION", "n.tflite": "NO CHANGE"}
    assert report.regressed and report.counts["REGRESSION"] == 1
    slow = next(c for c in report.cells if c.model == "m.tflite")
    assert slow.latency_p50.change == pytest.approx(0.2, abs=0.01) and slow.latency_p50.rounds == (5, 5)


def test_per_model_threshold_overrides_the_default():
    base, cand = run("b", rounds([1000, 1001, 999])), run("c", rounds([1100, 1101, 1099]))
    assert compare(base, cand, Thresholds(), history(m_tflite=1000)).cells[0].verdict == "REGRESSION"
    assert compare(base, cand, Thresholds(per_model={"m.tflite": 0.2}),
                   history(m_tflite=1000)).cells[0].verdict == "NO CHANGE"


def test_throttled_rounds_are_left_out_and_flagged():
    base = run("b", rounds([1000, 1000, 1000]))
    cand = run("c", [cell(1000, 0), cell(3000, 1, throttled=True), cell(1000, 2), cell(1000, 3)])
    (result,) = compare(base, cand, Thresholds(), history(m_tflite=1000)).cells
    assert result.latency_p50.rounds == (3, 3) and result.verdict == "NO CHANGE"
    assert any("throttled" in flag for flag in result.flags)


def test_too_few_clean_rounds_is_inconclusive():
    base = run("b", rounds([1000, 1000, 1000]))
    cand = run("c", [cell(2000, 0), cell(2000, 1, throttled=True), cell(2000, 2, throttled=True)])
    (result,) = compare(base, cand, Thresholds()).cells
    assert result.verdict == "INCONCLUSIVE" and not compare(base, cand, Thresholds()).regressed


def test_a_cell_that_starts_failing_is_a_regression():
    base = run("b", rounds([1000, 1000, 1000]))
    cand = run("c", rounds([0, 0, 0], status="failed"))
    (result,) = compare(base, cand, Thresholds()).cells
    assert result.verdict == "REGRESSION" and "fails in the candidate: boom" in result.flags


def test_memory_and_accuracy_regress_on_their_own_thresholds():
    base = run("b", rounds([1000, 1000, 1000], top1=0.90, peak=50.0))
    fatter = run("c", rounds([1000, 1000, 1000], top1=0.90, peak=60.0))
    worse = run("d", rounds([1000, 1000, 1000], top1=0.85, peak=50.0))
    (fat,) = compare(base, fatter, Thresholds(), history(m_tflite=1000)).cells
    assert fat.verdict == "REGRESSION" and fat.memory_peak.verdict == "REGRESSION"
    assert fat.latency_p50.verdict == "NO CHANGE" and fat.decided_by == ["memory_peak"]
    (acc,) = compare(base, worse, Thresholds(), history(m_tflite=1000)).cells
    assert acc.accuracy_top1.verdict == "REGRESSION" and acc.accuracy_top1.change == pytest.approx(0.05)
    assert acc.decided_by == ["accuracy_top1"]
    assert compare(base, worse, Thresholds(accuracy=0.10), history(m_tflite=1000)).cells[0].verdict == "NO CHANGE"


def test_changed_models_are_flagged_and_unmatched_cells_listed():
    base = run("b", rounds([1000, 1000, 1000]) + rounds([5, 5, 5], model="gone.tflite"))
    cand = run("c", rounds([1000, 1000, 1000], sha="b") + rounds([5, 5, 5], model="new.tflite"))
    report = compare(base, cand, Thresholds())
    assert [c.model for c in report.cells] == ["m.tflite"] and "model changed" in report.cells[0].flags
    assert report.only_in_baseline == ["pi4 gone.tflite xnnpack x4"]
    assert report.only_in_candidate == ["pi4 new.tflite xnnpack x4"]


@pytest.mark.parametrize("text, value", [("5%", 0.05), ("5", 0.05), ("0.05", 0.05), ("12.5%", 0.125)])
def test_thresholds_parse(text, value):
    assert parse_percent(text) == pytest.approx(value)


def test_a_bad_threshold_is_refused():
    with pytest.raises(ValueError):
        parse_percent("five")


def test_cells_from_logs_without_a_median_are_compared_by_mean_and_say_so():
    def mean_only(mean: float, round_: int) -> Cell:
        return Cell(device="phone", model="m.tflite", model_sha256="a" * 64, model_size_bytes=10, delegate=None,
                    threads=4, round=round_, status="ok",
                    latency_us=LatencyStats(count=50, min=mean * 0.99, max=mean * 1.02, mean=mean, std=5.0))
    base = run("b", [mean_only(v, i) for i, v in enumerate([1000, 1010, 990, 1005, 995])])
    cand = run("c", [mean_only(v, i) for i, v in enumerate([1200, 1190, 1210, 1205, 1195])])
    (only,) = compare(base, cand, Thresholds(), {("phone", "m.tflite", None, 4): quiet(1000)}).cells
    assert only.verdict == "REGRESSION" and only.delegate is None
    assert only.latency_p50.baseline == pytest.approx(1000)
    assert any("compared by mean" in flag for flag in only.flags)


# -- what two separately measured runs can and cannot show --------------------------------------

def test_two_runs_without_a_history_cannot_tell_a_change_from_run_to_run_noise():
    base = run("b", rounds([1000, 1010, 990, 1005, 995]))
    cand = run("c", rounds([1200, 1190, 1210, 1205, 1195]))
    (only,) = compare(base, cand, Thresholds()).cells
    assert only.verdict == "INCONCLUSIVE" and only.decided_by == ["latency_p50"]
    latency = only.latency_p50
    assert latency.change == pytest.approx(0.2, abs=0.01) and latency.low is None and latency.high is None
    assert "run-to-run noise unknown" in latency.reason and "--more-rounds" in latency.reason


def test_one_round_a_side_gets_no_interval_at_all():
    (only,) = compare(run("b", rounds([1000])), run("c", rounds([1018])), Thresholds(),
                      history(m_tflite=1000)).cells
    assert only.verdict == "INCONCLUSIVE" and only.latency_p50.low is None
    assert "1 round(s) on one side" in only.latency_p50.reason


def test_the_interval_of_two_runs_is_widened_by_the_noise_of_the_history():
    base, cand = run("b", rounds([1000, 1001, 999, 1000, 1002])), run("c", rounds([1080, 1081, 1079, 1082, 1080]))
    (calm,) = compare(base, cand, Thresholds(), history(m_tflite=1000)).cells
    (noisy,) = compare(base, cand, Thresholds(), {("pi4", "m.tflite", "xnnpack", 4): quiet(1000, wobble=0.08)}).cells
    assert calm.verdict == "REGRESSION" and noisy.verdict == "INCONCLUSIVE"
    assert noisy.latency_p50.high - noisy.latency_p50.low > 2 * (calm.latency_p50.high - calm.latency_p50.low)
    assert "run-to-run noise of 12 runs" in noisy.latency_p50.reason


def test_a_failing_candidate_is_decided_by_its_status_and_coverage_by_its_nodes():
    base = run("b", rounds([1000, 1000, 1000]))
    (failed,) = compare(base, run("c", rounds([0, 0, 0], status="failed")), Thresholds()).cells
    assert failed.verdict == "REGRESSION" and failed.decided_by == ["status"]


def test_a_node_more_on_the_cpu_is_a_coverage_regression_even_in_another_graph():
    def covered(cells: list[Cell], taken: int, total: int) -> list[Cell]:
        return [msgspec.structs.replace(c, delegate_coverage=DelegateCoverage(
            delegated_nodes=taken, total_nodes=total, full=taken == total)) for c in cells]

    base = run("b", covered(rounds([1000, 1000, 1000]), 6, 8))     # two nodes on the CPU
    same = run("c", covered(rounds([1000, 1000, 1000]), 8, 10))   # another graph, still two
    worse = run("d", covered(rounds([1000, 1000, 1000]), 5, 10))  # five on the CPU
    (kept,) = compare(base, same, Thresholds(), history(m_tflite=1000)).cells
    assert kept.delegate_coverage.verdict == "NO CHANGE" and kept.verdict == "NO CHANGE"
    (lost,) = compare(base, worse, Thresholds(), history(m_tflite=1000)).cells
    assert lost.verdict == "REGRESSION" and lost.decided_by == ["delegate_coverage"]
    assert lost.delegate_coverage.change == 3
    assert not compare(base, worse, Thresholds(fail_on_metric=("latency",)), history(m_tflite=1000)).regressed
