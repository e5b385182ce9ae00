"""Imported `benchmark_model` logs say what they measured, and only that.

Every log here is a real captured one (tests/fixtures/benchmark_logs, each with its
`.source.toml`); the expected figures are read off the log by eye.
"""

from __future__ import annotations

import sqlite3
import subprocess
import sys
from pathlib import Path

import pytest

from agent.formats import benchmark_log
from controller import models
from controller.imported import ModelMismatch, log_cell
from tests.support import EXAMPLE_MODELS

LOGS = Path(__file__).resolve().parents[2] / "fixtures" / "benchmark_logs"
X86 = LOGS / "x86_avx2_mobilenet_v1_float_op_profile.log"  # "Graph: [.../mobilenet_v1_1.0_224.tflite]", 16.9008 MB
SME2 = LOGS / "android_sme2_litert_fc_fp32_profiler.log"    # no Graph line, 3.27774 MB
SMALL = EXAMPLE_MODELS / "digits_cnn_int8.tflite"          # 46,224 bytes
WRONG = "the log measured mobilenet_v1_1.0_224.tflite (16.9008 MB), not digits_cnn_int8.tflite (0.046224 MB)"


def controller(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "controller", *args], check=False, capture_output=True,
                          text=True, timeout=120)


def table_row(output: str, model: str) -> dict[str, str]:
    """The run table's row of `model`, cell by column heading."""
    lines = output.splitlines()
    header = next(line for line in lines if "┃ model" in line)
    row = next(line for line in lines if f"│ {model}" in line)
    names = [cell.strip() for cell in header.strip("┃").split("┃")]
    return dict(zip(names, (cell.strip() for cell in row.strip("│").split("│"))))


def test_the_x86_profile_log_shows_its_mean_as_a_mean_and_its_printed_footprint(tmp_path):
    db = str(tmp_path / "runs.sqlite")
    imported = controller("import-log", str(X86), "--device", "x86", "--model", str(SMALL), "--db", db)
    assert imported.returncode == 0, imported.stderr
    report = controller("report", "--db", db)
    assert report.returncode == 0, report.stderr
    row = table_row(report.stdout, SMALL.name)
    # "avg=11040.4" and no median; "Peak memory footprint (MB): init=4.87109 overall=41.4102"
    assert row["p50"] == "11.04 ms (mean)"
    assert row["p90"] == "-"  # the log prints no p90: nothing is made up for it
    assert row["peak MB"] == "41.4 (growth)"


def test_a_printed_median_is_shown_unmarked(tmp_path):
    db = str(tmp_path / "runs.sqlite")
    # the log lists no parameters; its command line says --num_threads=1
    imported = controller("import-log", str(SME2), "--device", "phone", "--model", str(SMALL), "--db", db,
                          "--threads", "1")
    assert imported.returncode == 0, imported.stderr
    row = table_row(controller("report", "--db", db).stdout, SMALL.name)
    assert row["p50"] == "462.0 µs"  # "median=462"
    assert row["peak MB"] == "11.5 (growth)"  # "Overall footprint: 11.51 MB"; no peak printed


def test_a_model_the_log_did_not_measure_is_named_in_a_warning():
    cell = log_cell(X86.read_text(), models.load(SMALL), "x86", None, None)
    assert WRONG in cell.warnings
    assert cell.status == "ok" and cell.model == SMALL.name  # stored as asked, with the warning


def test_strict_refuses_a_model_the_log_did_not_measure_and_stores_nothing(tmp_path):
    with pytest.raises(ModelMismatch, match=r"16\.9008 MB\), not digits_cnn_int8\.tflite \(0\.046224 MB\)"):
        log_cell(X86.read_text(), models.load(SMALL), "x86", None, None, strict=True)
    db = tmp_path / "runs.sqlite"
    refused = controller("import-log", str(X86), "--device", "x86", "--model", str(SMALL), "--db", str(db),
                         "--strict")
    assert refused.returncode == 2 and WRONG in refused.stderr and "Traceback" not in refused.stderr
    with sqlite3.connect(db) as found:
        assert found.execute("SELECT COUNT(*) FROM cells").fetchone() == (0,)


def test_without_strict_the_warning_reaches_the_person_importing(tmp_path):
    result = controller("import-log", str(X86), "--device", "x86", "--model", str(SMALL),
                        "--db", str(tmp_path / "runs.sqlite"))
    assert result.returncode == 0 and f"warning: {WRONG}" in result.stderr


@pytest.mark.parametrize("size_bytes", [16_900_750, 16_900_760, 16_900_849])
def test_a_size_that_rounds_to_the_printed_digits_agrees(size_bytes):
    # 16.9008 MB as printed: anything within half of its last digit (50 bytes) is the same file size
    log = benchmark_log.parse(X86.read_text())
    assert benchmark_log.model_mismatch(log, "mobilenet_v1_1.0_224.tflite", size_bytes) is None


@pytest.mark.parametrize("size_bytes, shown", [
    (16_900_749, "16.9007"), (16_900_851, "16.9009"),
    (17_721_773, "17.7218"),  # 16.9008 x 2^20: the tool divides by 10^6, so this is another file
])
def test_a_size_beyond_the_printed_digits_is_another_model(size_bytes, shown):
    log = benchmark_log.parse(X86.read_text())
    assert benchmark_log.model_mismatch(log, "mobilenet_v1_1.0_224.tflite", size_bytes) == (
        f"the log measured mobilenet_v1_1.0_224.tflite (16.9008 MB), not mobilenet_v1_1.0_224.tflite ({shown} MB)")


def test_a_renamed_file_of_the_same_size_is_named():
    log = benchmark_log.parse(X86.read_text())
    assert benchmark_log.model_mismatch(log, "model.tflite", 16_900_760) == (
        "the log measured mobilenet_v1_1.0_224.tflite (16.9008 MB), not model.tflite (16.9008 MB)")


def test_a_log_without_a_graph_line_is_checked_by_its_size_alone():
    log = benchmark_log.parse(SME2.read_text())
    assert benchmark_log.model_mismatch(log, "fc_fp32.tflite", 3_277_740) is None
    assert benchmark_log.model_mismatch(log, "any_name.tflite", 3_277_744) is None
    assert benchmark_log.model_mismatch(log, "fc_fp32.tflite", 3_277_760) == (
        "the log measured a model (3.27774 MB), not fc_fp32.tflite (3.27776 MB)")


def test_a_log_that_names_no_model_is_not_checked():
    # Mi11 paste: the stats line, the summary and the memory line only
    log = benchmark_log.parse((LOGS / "mi11_yolov5s_fp32_cpu_tail.log").read_text())
    assert benchmark_log.model_mismatch(log, "anything.tflite", 1) is None


def test_the_runtime_rows_of_the_litert_profile_are_kept_marked_and_counted():
    cell = log_cell(SME2.read_text(), models.load(SMALL), "phone", None, 1)
    profile = cell.op_profile
    runtime = [n for n in profile.nodes if n.runtime]
    assert [(n.op_type, n.name, n.ran_on) for n in runtime] == [
        ("LiteRT::Run[buffer registration]", "LiteRT::Run[buffer registration]/0", None),
        ("AllocateTensors", "AllocateTensors/0", None),
        ("LiteRT::Run[Buffer sync]", "LiteRT::Run[Buffer sync]/0", None)]
    # per run: 0.014 + 0.003 + 0.382 + 0.012 ms profiled, over "median=462"
    assert profile.reconciled == pytest.approx(411 / 462)
    assert sum(n.share for n in profile.nodes if n.share is not None) == pytest.approx(1.0)
    assert [n.share for n in runtime if n.share is not None] == [pytest.approx(14 / 411), pytest.approx(12 / 411)]
    assert all(not t.op_type.startswith(("LiteRT::", "AllocateTensors")) for t in profile.by_type)
    assert ("rows of the runtime's own work, kept as runtime nodes outside by_type: LiteRT::Run[buffer registration], "
            "AllocateTensors, LiteRT::Run[Buffer sync] (26.0 us per run, 6.3% of the summed time)") in profile.warnings
    # the runtime's rows ran on no delegate, and none of them is a node left to the CPU
    assert not any(n.runtime for n in profile.nodes if n.ran_on == "xnnpack")
    assert cell.delegate_coverage.not_delegated == []


def test_without_a_median_the_profile_is_reconciled_with_the_mean_and_says_so():
    cell = log_cell(X86.read_text(), models.load(SMALL), "x86", None, None)
    profile = cell.op_profile
    summed = sum(n.avg_us for n in profile.nodes)
    assert summed == pytest.approx(11035)  # the run order's [avg ms] column, one call each
    assert profile.reconciled == pytest.approx(11035 / 11040.4)
    assert "reconciled with the mean: the log printed no median" in profile.warnings
    assert not any(n.runtime for n in profile.nodes)  # its AllocateTensors row is in the init profile only
