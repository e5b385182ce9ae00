"""The `benchmark_model` log parser on edge cases the real logs (test_real_logs) do not cover."""

from __future__ import annotations

import msgspec
import pytest

from agent.formats import benchmark_log
from agent.wire.records import Cell, Settings
from tests.support import benchmark_logs as logs


def template(delegate=None, threads: int = 4) -> Cell:
    return Cell(model="m.tflite", model_sha256="0" * 64, model_size_bytes=123, delegate=delegate,
                threads=threads, status="failed", error="cell did not start")


def cell_of(text: str, **kwargs) -> Cell:
    return benchmark_log.to_cell(benchmark_log.parse(text), template(**kwargs))


def test_new_format_with_info_prefix():
    log = benchmark_log.parse(logs.NEW_INFO)
    assert log.params["Num threads"] == "4" and benchmark_log.threads_of(log.params) == 4
    assert log.delegate_name() == "xnnpack"
    cell = benchmark_log.to_cell(log, template())
    assert cell.status == "ok" and cell.error is None
    assert cell.runtime == "benchmark_model"
    assert cell.init_ms == pytest.approx(45.123)
    assert cell.first_inference_us == 29380
    assert cell.warmup.count == 24 and cell.warmup.mean_us == pytest.approx(20618.5)
    lat = cell.latency_us
    assert (lat.count, lat.min, lat.max, lat.mean, lat.std) == (50, 19492, 21453, 19858.1, 336)
    assert (lat.p5, lat.p50, lat.p95) == (19545, 19794, 20541)
    assert lat.p90 is None and lat.p99 is None
    assert cell.memory_mb.init == pytest.approx(8.42188)
    assert cell.memory_mb.overall == pytest.approx(12.1289)
    assert cell.memory_mb.peak_rss == pytest.approx(15.0273)
    assert cell.warnings == []


def test_old_format_without_prefix_percentiles_or_new_summary():
    log = benchmark_log.parse(logs.OLD_PLAIN)
    assert log.delegate_name() is None  # "Use gpu : [0]" only; an old tool predates XNNPACK
    assert benchmark_log.threads_of(log.params) == 1
    cell = benchmark_log.to_cell(log, template(threads=1))
    assert cell.delegate is None and "the log does not say which delegate ran the graph" in cell.warnings
    assert cell.status == "ok"
    assert cell.init_ms == pytest.approx(1234.0)  # "Initialized session in 1.234s." and "Init: 1234000"
    assert cell.warmup.count == 1 and cell.warmup.mean_us == pytest.approx(1.24027e6)
    assert cell.latency_us.mean == pytest.approx(1.20411e6)
    assert cell.latency_us.min == pytest.approx(1.18301e6) and cell.latency_us.max == pytest.approx(1.26211e6)
    assert cell.latency_us.p50 is None  # no median printed
    assert cell.latency_us.centre == pytest.approx(1.20411e6) and cell.latency_us.centre_is_mean
    assert any("no median" in w for w in cell.warnings)
    assert cell.first_inference_us is None or cell.first_inference_us > 0
    assert (cell.memory_mb.init, cell.memory_mb.overall, cell.memory_mb.peak_rss) == (3.73438, 98.2031, None)


def test_logcat_threadtime_prefix_and_partial_gpu_delegation():
    log = benchmark_log.parse(logs.LOGCAT_GPU)
    assert log.delegate_name() == "gpu"
    assert log.delegate.applied == "partially" and log.delegate.kernels == 2
    cell = benchmark_log.to_cell(log, template("gpu", 1))
    assert cell.status == "ok"
    assert cell.init_ms == pytest.approx(1800.5)
    assert cell.latency_us.count == 120 and cell.latency_us.p50 == 8190
    cov = cell.delegate_coverage
    assert (cov.delegated_nodes, cov.total_nodes, cov.full) == (61, 64, False)
    assert cell.memory_mb.overall == pytest.approx(131.25)


def test_op_profiling_count_lines_are_not_the_headline_numbers():
    log = benchmark_log.parse(logs.BRIEF_PROFILING)
    assert log.delegate_name() == "cpu"
    assert benchmark_log.threads_of(log.params) == 2
    cell = benchmark_log.to_cell(log, template("cpu", 2))
    assert cell.status == "ok"
    assert cell.latency_us.count == 200 and cell.latency_us.mean == pytest.approx(5020.5)
    assert cell.warmup.count == 100
    assert cell.memory_mb.overall == pytest.approx(4.25)


def test_nnapi_failure_is_a_failed_cell_quoting_the_decisive_line():
    cell = cell_of(logs.NNAPI_FAILED, delegate="nnapi", threads=1)
    assert cell.status == "failed"
    assert cell.error == "Failed to apply NNAPI delegate."
    assert cell.latency_us is None and cell.warmup is None
    assert cell.delegate == "nnapi"


def test_missing_model_quotes_the_first_failure():
    cell = cell_of(logs.MODEL_MISSING)
    assert cell.status == "failed"
    assert cell.error == "Failed to mmap model /data/local/tmp/missing.tflite"


def test_delegate_that_takes_nothing_measures_with_a_warning():
    cell = cell_of(logs.GPU_NOT_APPLIED, delegate="gpu", threads=1)
    assert cell.status == "ok" and cell.latency_us.p50 == 90
    assert cell.warnings == ["the gpu delegate took no part of the graph"]
    assert (cell.delegate_coverage.delegated_nodes, cell.delegate_coverage.full) == (0, False)


def test_run_that_stopped_after_warmup_keeps_the_warmup():
    text = logs.NEW_INFO.split("INFO: Running benchmark for at least 50")[0] + "Segmentation fault\n"
    cell = cell_of(text)
    assert cell.status == "failed" and cell.error == "Segmentation fault"
    assert cell.warmup.count == 24 and cell.latency_us is None
    assert cell.init_ms == pytest.approx(45.123)


def test_log_with_no_results_says_so():
    cell = cell_of("STARTING!\nNum threads: [1]\nsomething odd\n")
    assert cell.status == "failed"
    assert cell.error == "no timing results in the log; last line: something odd"
    assert cell_of("").error == "empty benchmark_model log"


@pytest.mark.parametrize("line, message", [
    ("INFO: count=5", "count=5"),
    ("ERROR: Benchmarking failed.", "Benchmarking failed."),
    ("11-22 14:13:50.101  8123  8200 I tflite  : Graph: [x]", "Graph: [x]"),
    ("I/tflite  ( 4242): Num threads: [2]", "Num threads: [2]"),
    ("I1122 14:13:50.123456 4242 benchmark_tflite_model.cc:12] Loaded model m", "Loaded model m"),
    ("plain line\r\n", "plain line"),
    ("INFO: [./litert/tools/benchmark_litert_model.h:88] Inference (avg):      0.46 ms (2112 runs)",
     "Inference (avg):      0.46 ms (2112 runs)"),
    ("VERBOSE: Replacing 1 out of 1 node(s) with delegate (TfLiteXNNPackDelegate) node",
     "Replacing 1 out of 1 node(s) with delegate (TfLiteXNNPackDelegate) node"),
])
def test_prefixes_are_stripped(line, message):
    assert benchmark_log.strip_prefix(line) == message


def test_exponent_numbers_in_new_summary():
    text = ("Running benchmark for at least 1 iterations\ncount=1 curr=2e+06\n"
            "Running benchmark for at least 2 iterations\ncount=2 first=1.5e+06 curr=1.5e+06 min=1.5e+06 "
            "max=1.5e+06 avg=1.5e+06 std=0 p5=1.5e+06 median=1.5e+06 p95=1.5e+06\n"
            "Inference timings in us: Init: 2.5e+04, First inference: 2e+06, Warmup (avg): 2e+06, "
            "Inference (avg): 1.5e+06\n")
    cell = cell_of(text)
    assert cell.status == "ok"
    assert cell.init_ms == pytest.approx(25.0) and cell.first_inference_us == pytest.approx(2e6)
    assert cell.latency_us.p50 == pytest.approx(1.5e6)


def test_a_binary_that_ignores_flags_keeps_going_and_is_not_believed():
    # An older phone binary: it does not know --use_xnnpack or --min_secs and applies XNNPACK anyway.
    text = ("WARN: Unconsumed cmdline flags: --use_xnnpack=false --min_secs=2\n"
            + logs.NEW_INFO.replace("INFO: Use xnnpack: [1]\n", ""))
    asked = msgspec.structs.replace(template("cpu"), settings=Settings(num_runs=50, min_secs=2.0))
    cell = benchmark_log.to_cell(benchmark_log.parse(text), asked)
    assert cell.status == "ok" and cell.delegate == "xnnpack"  # what the log says ran, not "cpu"
    assert "asked for cpu; the log shows xnnpack" in cell.warnings
    assert "benchmark_model did not use these flags: --use_xnnpack=false --min_secs=2" in cell.warnings
    assert cell.settings.min_secs is None and cell.settings.num_runs == 50
    twice = benchmark_log.to_cell(benchmark_log.parse("Duplicate flags: num_runs\n" + logs.NEW_INFO), asked)
    assert twice.settings.num_runs is None and twice.settings.min_secs == 2.0


def test_an_ignored_delegate_flag_with_a_silent_log_gives_no_label():
    text = "Unconsumed cmdline flags: --use_xnnpack=false\n" + logs.OLD_PLAIN
    cell = benchmark_log.to_cell(benchmark_log.parse(text), template("cpu"))
    assert cell.status == "ok" and cell.delegate is None
    quiet = benchmark_log.to_cell(benchmark_log.parse(logs.OLD_PLAIN), template("cpu"))
    assert quiet.delegate == "cpu" and "the log does not name the delegate; cpu as requested" in quiet.warnings


def test_a_lone_stats_line_is_the_timed_phase():
    cell = cell_of("count=50 first=249042 curr=250889 min=247067 max=254474 avg=249684 std=1442\n")
    assert cell.status == "ok" and cell.warmup is None
    assert (cell.latency_us.count, cell.latency_us.min, cell.latency_us.std) == (50, 247067, 1442)


def test_external_delegate_flags_listed_as_unconsumed_while_the_delegate_ran():
    # The tool lists --external_delegate_path as unconsumed although its provider used it.
    text = ("Unconsumed cmdline flags: --external_delegate_path=/usr/lib/libvx_delegate.so --bogus=1\n"
            "EXTERNAL delegate created.\n"
            "Explicitly applied EXTERNAL delegate, and the model graph will be completely executed by the delegate.\n"
            + logs.GPU_NOT_APPLIED.split("INFO: Though")[0] + logs.GPU_NOT_APPLIED.split("the delegate.\n")[1])
    cell = benchmark_log.to_cell(benchmark_log.parse(text), template("external"))
    assert cell.status == "ok" and cell.delegate == "external"
    assert "benchmark_model did not use these flags: --bogus=1" in cell.warnings
