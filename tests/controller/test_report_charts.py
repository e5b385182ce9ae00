"""The report's charts, read from the matplotlib figures they are drawn on: small multiples for
the trend, standard box plots, integer thread counts, no accuracy axis without accuracy, one
spelling of microseconds, and imported means marked as means in the report's tables."""

from __future__ import annotations

import re
from pathlib import Path

import matplotlib.pyplot as plt
import msgspec
import pytest
from matplotlib.collections import PolyCollection
from matplotlib.patches import PathPatch

from agent.wire.records import Accuracy, Cell, LatencyStats, OutputDiff
from controller import families, models
from controller.analysis import variants
from controller.history import histories, load_history
from controller.imported import log_cell
from controller.records import RunReport, Transfer
from controller.render import plots, report
from controller.store import open_store
from tests.support import EXAMPLE_MODELS, controller, run_json

LOGS = Path(__file__).resolve().parents[1] / "fixtures" / "benchmark_logs"
MEAN_ONLY = LOGS / "x86_avx2_mobilenet_v1_float_op_profile.log"  # "avg=11040.4", no median
MEDIAN_P5_P95 = LOGS / "android_sme2_litert_fc_fp32_profiler.log"  # "p5=460 median=462 p95=478"
SMALL = EXAMPLE_MODELS / "digits_cnn_int8.tflite"
DIGITS = [EXAMPLE_MODELS / "digits_cnn_fp32.tflite", SMALL]


@pytest.fixture(scope="module")
def measured(tmp_path_factory):
    """A real run: two models on XNNPACK at 1, 2 and 4 threads, and its report's history."""
    db = tmp_path_factory.mktemp("charts") / "runs.sqlite"
    doc = run_json("--models", *map(str, DIGITS), "--threads", "1,2,4", "--delegates", "xnnpack", db=db)
    with open_store(db) as store:
        return load_history(store, doc["run_id"])


@pytest.fixture(autouse=True)
def _close_figures():
    yield
    plt.close("all")


def _latency(p50: float) -> LatencyStats:
    return LatencyStats(count=100, min=p50 * 0.8, max=p50 * 1.5, mean=p50, std=p50 * 0.05, p5=p50 * 0.9,
                        p25=p50 * 0.95, p50=p50, p75=p50 * 1.05, p90=p50 * 1.1, p95=p50 * 1.2, p99=p50 * 1.4)


def _cell(model: str, threads: int, p50: float, round_: int) -> Cell:
    return Cell(device="pi4", model=model, model_sha256="0" * 64, model_size_bytes=1000, delegate="xnnpack",
                threads=threads, round=round_, status="ok", latency_us=_latency(p50))


def _run(index: int, cells: list[Cell]) -> RunReport:
    return RunReport(run_id=f"run{index}", tag="nightly", started_at=f"2026-12-{index + 1:02d}T02:30:00+00:00",
                     finished_at=None, devices={}, transfer=Transfer(), cells=cells)


def _visible(chart: plots.Chart) -> list:
    return [ax for ax in chart.figure.axes if ax.get_visible()]


def _tick_texts(chart: plots.Chart) -> list[str]:
    chart.figure.canvas.draw()
    return [label.get_text() for ax in chart.figure.axes for axis in (ax.xaxis, ax.yaxis)
            for label in axis.get_ticklabels() if label.get_text()]


def test_trend_draws_one_panel_per_cell_up_to_the_cap_and_names_the_cells_left_out():
    # 20 cells over 8 nightly runs; the last cell in key order steps up threefold at run 4 and a
    # check confirmed the regression: over the cap, it still gets its panel.
    keys = [*[(f"m{i:02d}.tflite", threads) for i in range(10) for threads in (1, 2)][:19], ("zz_stepped.tflite", 2)]
    runs = []
    for index in range(8):
        cells = []
        for n, (model, threads) in enumerate(keys):
            level = 1000.0 * (n + 1) * (3 if model.startswith("zz") and index >= 4 else 1)
            cells += [_cell(model, threads, level * (1 + 0.01 * r), r) for r in range(3)]
        runs.append(_run(index, cells))
    cells = histories(runs)
    stepped = ("pi4", "zz_stepped.tflite", "xnnpack", 2)
    assert [c.key for c in cells if c.steps] == [stepped]
    chart = plots.latency_trend(runs, {"run5": {stepped}}, cells)

    panels = _visible(chart)
    assert len(panels) == plots.MAX_PANELS == 16
    titles = [ax.get_title() for ax in panels]
    assert len(set(titles)) == 16 and "zz_stepped xnnpack x2" in titles
    left_out = [f"{model.removesuffix('.tflite')} xnnpack x{threads}" for model, threads in keys
                if f"{model.removesuffix('.tflite')} xnnpack x{threads}" not in titles]
    assert len(left_out) == 4 and all(name in chart.caption for name in left_out)
    # Each panel on its own scale: the 1 ms cell and the 14 ms one share no y range.
    limits = {ax.get_title(): ax.get_ylim() for ax in panels}
    assert limits["m00 xnnpack x1"][1] < limits["m06 xnnpack x2"][0]
    # The band of each run spans its rounds' p50: 1.00 to 1.02 times the run's level.
    (band,) = [c for c in panels[0].collections if isinstance(c, PolyCollection)]
    low, high = band.get_paths()[0].vertices[:, 1].min(), band.get_paths()[0].vertices[:, 1].max()
    assert (low, high) == pytest.approx((1000.0, 1020.0))
    # The regressed run is ringed and the step drawn, in that cell's panel only.
    panel = panels[titles.index("zz_stepped xnnpack x2")]
    (ring,) = [c for c in panel.collections if not isinstance(c, PolyCollection)]
    assert ring.get_offsets().tolist() == [[5, pytest.approx(20_000 * 3 * 1.01)]]
    assert [line.get_xdata()[0] for line in panel.lines if line.get_linestyle() == "--"] == [3.5]
    assert all(not [c for c in ax.collections if not isinstance(c, PolyCollection)]
               for ax in panels if ax is not panel)


def test_box_plot_boxes_are_the_quartiles_and_whiskers_p5_and_p95(measured):
    chart = plots.latency_distribution(measured.run)
    (ax,) = _visible(chart)
    boxes = sorted(tuple(round(x, 6) for x in (p.get_path().vertices[:, 0].min(), p.get_path().vertices[:, 0].max()))
                   for p in ax.patches if isinstance(p, PathPatch))
    cells = [c for c in measured.run.cells if c.round == 0]
    assert boxes == sorted((round(c.latency_us.p25, 6), round(c.latency_us.p75, 6)) for c in cells)
    whiskers = {tuple(round(x, 6) for x in line.get_xdata()) for line in ax.lines}
    for latency in (c.latency_us for c in cells):
        assert (round(latency.p25, 6), round(latency.p5, 6)) in whiskers
        assert (round(latency.p75, 6), round(latency.p95, 6)) in whiskers
        assert (round(latency.p50, 6),) * 2 in whiskers  # the median line
    assert "p25 to p75" in chart.caption and "p5 and p95" in chart.caption


def test_time_axis_labels_do_not_run_into_each_other_at_page_width(measured):
    # Latencies from 5 µs to 50 ms on one axis, as a run of small and large models gives.
    run = measured.run
    wide = [_cell("big.tflite", 1, 50_000.0, 0), _cell("tiny.tflite", 1, 5.0, 0), *run.cells]
    chart = plots.latency_distribution(msgspec.structs.replace(run, cells=wide))
    chart.figure.canvas.draw()
    (ax,) = _visible(chart)
    labels = [t for t in ax.xaxis.get_ticklabels() + ax.xaxis.get_ticklabels(minor=True)
              if t.get_text() and ax.get_xlim()[0] <= t.get_position()[0] <= ax.get_xlim()[1]]
    boxes = sorted((t.get_window_extent() for t in labels), key=lambda box: box.x0)
    assert len(boxes) >= 3
    assert all(left.x1 < right.x0 for left, right in zip(boxes, boxes[1:]))
    assert chart.figure.get_size_inches()[0] * chart.figure.dpi <= 1400


def test_a_source_without_quartiles_is_drawn_with_what_it_printed_and_said_so(measured):
    small = models.load(SMALL)
    mean_only = log_cell(MEAN_ONLY.read_text(), small, "phone", None, None)
    median_only = log_cell(MEDIAN_P5_P95.read_text(), small, "phone", None, 1)
    assert mean_only.latency_us.p25 is None and median_only.latency_us.p25 is None
    run = measured.run
    chart = plots.latency_distribution(msgspec.structs.replace(run, cells=[*run.cells, mean_only, median_only]))
    (ax,) = _visible(chart)
    assert len([p for p in ax.patches if isinstance(p, PathPatch)]) == len(run.cells)  # no box for either
    drawn = {(line.get_marker(), tuple(line.get_xdata())) for line in ax.lines}
    assert ("D", (11040.4,)) in drawn  # the mean, as a mean
    assert ("|", (462.0,)) in drawn and ("None", (460.0, 478.0)) in drawn  # median and p5..p95
    assert "no quartiles for 2 cell(s)" in chart.caption and "no median was printed" in chart.caption


def test_thread_axis_is_ticked_at_the_measured_counts(measured):
    chart = plots.thread_scaling(measured.run)
    (ax,) = _visible(chart)
    assert list(ax.get_xticks()) == [1, 2, 4]
    chart.figure.canvas.draw()
    assert [t.get_text() for t in ax.xaxis.get_ticklabels()] == ["1", "2", "4"]


def _digits_family(scores: dict[str, dict]) -> list:
    sources, _ = models.resolve([str(EXAMPLE_MODELS / "digits_cnn_*.tflite")])
    (family,), _ = families.group(sources)
    cells = []
    for source in sources:
        for threads in (1, 2):
            extra = scores.get(source.name, {})
            cells.append(Cell(device="pi4", model=source.name, model_sha256=source.sha256,
                              model_size_bytes=source.size, variant=source.variant, delegate="xnnpack",
                              threads=threads, status="ok", latency_us=_latency(100.0 * threads), **extra))
    return [variants.compare_family("pi4", family, cells)]


def test_variants_without_accuracy_have_no_accuracy_axis():
    names = ("digits_cnn_fp32.tflite", "digits_cnn_fp16.tflite", "digits_cnn_dynamic.tflite", "digits_cnn_int8.tflite")
    agree = OutputDiff(reference="digits_cnn_fp32.tflite", mean_abs=0.0, max_abs=0.0, top1_agreement=1.0)
    # No dataset and no reference; no dataset and 100 % agreement everywhere (the 96-104 % axis
    # of a constant); a top-1 that is the same for every variant. None has a quality to plot.
    for scores, why in (({}, "no agreement with a reference"),
                        ({name: {"output_diff": agree} for name in names},
                         "agrees with digits_cnn_fp32.tflite on 100.0% of top-1 answers"),
                        ({name: {"accuracy": Accuracy(samples=100, top1=0.98, top5=1.0)} for name in names},
                         "every variant scores 98.0% top-1")):
        chart = plots.variant_tradeoff(_digits_family(scores))
        (ax,) = _visible(chart)
        assert "%" not in ax.get_ylabel() and "top-1" not in ax.get_ylabel()
        chart.figure.canvas.draw()
        assert [t.get_text() for t in ax.yaxis.get_ticklabels()] == [
            "fp32 · 157 KB", "fp16 · 82 KB", "dynamic · 46 KB", "int8 · 46 KB"]
        assert why in chart.caption and "plotted against the variants' sizes only" in chart.caption


def test_variants_whose_accuracy_differs_get_a_top1_axis():
    top1 = {"digits_cnn_fp32.tflite": 0.98, "digits_cnn_int8.tflite": 0.95}
    chart = plots.variant_tradeoff(_digits_family(
        {name: {"accuracy": Accuracy(samples=100, top1=value, top5=1.0)} for name, value in top1.items()}))
    (ax,) = _visible(chart)
    assert ax.get_ylabel() == "top-1" and "Pareto front" in chart.caption


def test_every_time_is_spelled_in_µs_or_ms_in_charts_and_html(measured):
    charts = [plots.latency_distribution(measured.run), plots.thread_scaling(measured.run)]
    labels = [text for chart in charts for text in _tick_texts(chart)]
    assert any(text.endswith(" µs") for text in labels)
    assert not [text for text in labels if re.search(r"\bus\b", text)]
    page = report.render_html(measured)
    text = re.sub(r"<img [^>]*>", "", page)
    assert "µs" in text and not re.search(r"\bus\b", text)


def test_a_trend_of_one_run_is_no_chart(measured):
    assert plots.latency_trend([measured.run], {}, measured.cells) is None


def test_an_imported_mean_is_marked_as_a_mean_in_the_report_tables(tmp_path):
    db = tmp_path / "runs.sqlite"
    imported = controller("import-log", str(MEAN_ONLY), "--device", "x86", "--model", str(SMALL), db=db)
    assert imported.returncode == 0, imported.stderr
    html, md = tmp_path / "report.html", tmp_path / "report.md"
    result = controller("report", "--html", str(html), "--markdown", str(md), db=db)
    assert result.returncode == 0, result.stderr
    # "avg=11040.4" and no median; "Peak memory footprint (MB): init=4.87109 overall=41.4102"
    assert "| 11.04 ms (mean) | - |" in md.read_text() and "| 41.4 (growth) |" in md.read_text()
    assert "<td>11.04 ms (mean)</td>" in html.read_text() and "<td>41.4 (growth)</td>" in html.read_text()


def test_cells_of_several_devices_are_named_with_their_device(measured):
    run = measured.run
    both = msgspec.structs.replace(run, cells=[*run.cells, *(msgspec.structs.replace(c, device="pi5")
                                                             for c in run.cells)])
    labels = _tick_texts(plots.latency_distribution(both))
    assert "pi5 digits_cnn_int8 xnnpack x4" in labels and "local digits_cnn_fp32 xnnpack x1" in labels
