"""Real `benchmark_model` logs from public sources, each imported with every figure it prints.

The expected values below were read off each log by eye (see the log next to its
`.source.toml`); none of them comes from running the parser. A figure the log does not
print must come back null.
"""

from __future__ import annotations

from pathlib import Path

import pytest
import tomllib

from agent.formats import benchmark_log
from agent.wire.records import Cell

LOGS = Path(__file__).resolve().parents[2] / "fixtures" / "benchmark_logs"
PROVENANCE = ("repository", "path", "commit", "url", "device", "version", "command", "excerpt")


def cell_of(name: str, delegate=None, threads: int = 1) -> Cell:
    text = (LOGS / f"{name}.log").read_text()
    template = Cell(model="m.tflite", model_sha256="0" * 64, model_size_bytes=1, delegate=delegate,
                    threads=threads, status="failed", error="not parsed")
    return benchmark_log.to_cell(benchmark_log.parse(text), template)


def params_of(name: str) -> dict[str, str]:
    return benchmark_log.parse((LOGS / f"{name}.log").read_text()).params


def latency(cell: Cell) -> tuple:
    lat = cell.latency_us
    return (lat.count, lat.min, lat.max, lat.mean, lat.std, lat.p5, lat.p50, lat.p95, lat.p90, lat.p99)


def test_every_log_has_its_provenance():
    logs = sorted(LOGS.glob("*.log"))
    assert len(logs) >= 8
    for log in logs:
        source = tomllib.loads(log.with_suffix(".source.toml").read_text())
        assert set(PROVENANCE) <= set(source), log.name
        assert source["url"].startswith("https://github.com/" + source["repository"] + "/"), log.name
        if source["commit"]:
            assert len(source["commit"]) == 40 and source["commit"] in source["url"], log.name


def test_partial_paste_from_a_phone_gives_what_it_prints_and_null_for_the_rest():
    # Xiaomi Mi11, TF 2.4.0: only the stats line, the summary and the memory line were pasted.
    cell = cell_of("mi11_yolov5s_fp32_cpu_tail")
    assert cell.status == "ok" and cell.error is None
    assert latency(cell) == (50, 247067, 254474, 249684, 1442, None, None, None, None, None)
    assert cell.init_ms == pytest.approx(16.242)
    assert cell.first_inference_us == 360262
    assert (cell.warmup.count, cell.warmup.mean_us) == (None, 304586)
    assert (cell.memory_mb.init, cell.memory_mb.overall, cell.memory_mb.peak_rss) == (4.92969, 138.809, None)
    assert cell.delegate is None and "the log does not say which delegate ran the graph" in cell.warnings
    assert any("no median" in w for w in cell.warnings)
    assert cell.op_profile is None and cell.delegate_coverage is None


def test_failed_nnapi_delegate_on_a_phone():
    cell = cell_of("mi11_yolov5s_int8_nnapi_failed")
    assert cell.status == "failed" and cell.error == "Failed to apply NNAPI delegate."
    assert cell.delegate == "nnapi"
    assert cell.latency_us is None and cell.warmup is None and cell.memory_mb is None
    assert benchmark_log.threads_of(params_of("mi11_yolov5s_int8_nnapi_failed")) == 4


def test_old_layout_op_profile_with_delegate_kernels_and_commas_in_names():
    # Only the two profiling sections were pasted: no latency, but the per-op tables.
    cell = cell_of("mi11_yolov5s_nnapi_gpu_op_profile")
    assert cell.status == "failed" and cell.latency_us is None
    assert cell.delegate == "nnapi"  # the run order shows TfLiteNnapiDelegate kernels
    profile = cell.op_profile
    assert profile.method == "benchmark_model" and profile.reconciled is None
    assert [n.index for n in profile.nodes] == [0, 1, 2, 3, 4, 5, 231, 143, 232, 165, 233]
    first, nnapi = profile.nodes[0], profile.nodes[6]
    assert (first.op_type, first.name, first.ran_on) == ("STRIDED_SLICE", "model/tf.strided_slice/StridedSlice", "cpu")
    assert first.times_called == 1 and first.avg_us == pytest.approx(2118)
    assert nnapi.op_type == "TfLiteNnapiDelegate" and nnapi.ran_on == "nnapi"
    assert nnapi.name == "model/tf.nn.silu_16/mul, model/tf.nn.silu_26/mul, model/tf.nn.silu_35/mul"
    assert nnapi.avg_us == pytest.approx(79010) and nnapi.p50_us is None
    assert profile.nodes[-1].name == "Identity, Identity_1, Identity_2"
    assert [(t.op_type, t.count, t.total_us) for t in profile.by_type] == [
        ("TfLiteNnapiDelegate", 3, pytest.approx(149483)), ("STRIDED_SLICE", 6, pytest.approx(8347)),
        ("RESIZE_NEAREST_NEIGHBOR", 2, pytest.approx(879))]
    assert sum(n.share for n in profile.nodes) == pytest.approx(1.0)
    coverage = cell.delegate_coverage
    assert [(n.index, n.op_type) for n in coverage.not_delegated] == [
        (0, "STRIDED_SLICE"), (1, "STRIDED_SLICE"), (2, "STRIDED_SLICE"), (3, "STRIDED_SLICE"),
        (4, "STRIDED_SLICE"), (5, "STRIDED_SLICE"), (143, "RESIZE_NEAREST_NEIGHBOR"),
        (165, "RESIZE_NEAREST_NEIGHBOR")]
    assert (coverage.delegated_nodes, coverage.total_nodes, coverage.full) == (None, None, False)


def test_imx8mp_npu_through_an_external_delegate():
    cell = cell_of("imx8mp_mobilenet_v1_quant_vx_npu")
    assert cell.status == "ok"
    assert cell.delegate == "external"
    assert latency(cell) == (379, 2471, 2586, 2525.59, 13, None, None, None, None, None)
    # the warmup line is "count=1 curr=4625131": its average comes from the summary
    assert (cell.warmup.count, cell.warmup.mean_us) == (1, pytest.approx(4.62513e6))
    assert cell.first_inference_us == 4625131 and cell.init_ms == pytest.approx(12.434)
    assert (cell.memory_mb.init, cell.memory_mb.overall, cell.memory_mb.peak_rss) == (7.26953, 34.3164, None)
    coverage = cell.delegate_coverage
    assert (coverage.delegated_nodes, coverage.total_nodes, coverage.full) == (None, None, True)
    (node,) = cell.op_profile.nodes
    assert (node.index, node.op_type, node.name, node.ran_on) == (
        31, "Vx Delegate", "MobilenetV1/Predictions/Reshape_1", "external")
    assert node.avg_us == pytest.approx(2504) and node.share == pytest.approx(1.0)
    assert [(t.op_type, t.count, t.total_us) for t in cell.op_profile.by_type] == [
        ("Vx Delegate", 1, pytest.approx(2503))]
    # no median printed: the node's 2.504 ms over the mean, and the profile says so
    assert cell.op_profile.reconciled == pytest.approx(2504 / 2525.59)
    assert "reconciled with the mean: the log printed no median" in cell.op_profile.warnings


def test_x86_log_with_xnnpack_off_and_a_duplicate_flag():
    cell = cell_of("x86_avx2_mobilenet_v1_float_op_profile", threads=4)
    assert cell.status == "ok" and cell.delegate == "cpu"  # "Use xnnpack : [0]", no delegate lines
    assert benchmark_log.threads_of(params_of("x86_avx2_mobilenet_v1_float_op_profile")) == 4
    assert latency(cell) == (90, 10546, 12261, 11040.4, 437, None, None, None, None, None)
    assert (cell.warmup.count, cell.warmup.mean_us) == (43, 11610.3)
    assert cell.first_inference_us == 28285 and cell.init_ms == pytest.approx(0.243)
    assert (cell.memory_mb.init, cell.memory_mb.overall) == (4.87109, 41.4102)
    assert any("duplicate flags (num_threads)" in w for w in cell.warnings)
    nodes = cell.op_profile.nodes
    assert len(nodes) == 31 and [n.index for n in nodes] == list(range(31))
    assert (nodes[26].op_type, nodes[26].avg_us) == ("CONV_2D", pytest.approx(811))
    assert (nodes[30].op_type, nodes[30].name, nodes[30].avg_us) == (
        "SOFTMAX", "MobilenetV1/Predictions/Reshape_1", pytest.approx(3))
    assert {n.ran_on for n in nodes} == {"cpu"}
    assert [(t.op_type, t.count, t.total_us) for t in cell.op_profile.by_type] == [
        ("CONV_2D", 15, pytest.approx(8342)), ("DEPTHWISE_CONV_2D", 13, pytest.approx(2668)),
        ("AVERAGE_POOL_2D", 1, pytest.approx(7)), ("SOFTMAX", 1, pytest.approx(2)), ("SQUEEZE", 1, 0.0)]
    assert cell.delegate_coverage is None


def test_zedboard_soc_2019_tool_old_summary_and_table_without_indices():
    cell = cell_of("zedboard_mobilenet_v1_quant_2c", threads=2)
    assert cell.status == "ok"
    assert cell.delegate is None  # "Use gpu : [0]" only: a 2019 tool says nothing about XNNPACK
    assert benchmark_log.threads_of(params_of("zedboard_mobilenet_v1_quant_2c")) == 2
    assert latency(cell) == (50, 389982, 417669, 394183, 4373, None, None, None, None, None)
    assert (cell.warmup.count, cell.warmup.mean_us) == (2, 395037)
    assert cell.init_ms == pytest.approx(18.764)  # "Init: 18764" in the old summary
    assert cell.first_inference_us == 393500       # the warmup line's first=
    assert cell.memory_mb is None
    profile = cell.op_profile
    assert len(profile.nodes) == 31
    assert (profile.nodes[0].op_type, profile.nodes[0].avg_us) == ("CONV_2D", pytest.approx(22697))
    assert (profile.nodes[30].index, profile.nodes[30].op_type, profile.nodes[30].avg_us) == (
        30, "SOFTMAX", pytest.approx(77))
    assert any("no node indices" in w for w in profile.warnings)
    assert profile.by_type[0].op_type == "CONV_2D" and profile.by_type[0].total_us == pytest.approx(322055)
    assert (profile.by_type[-1].op_type, profile.by_type[-1].total_us) == ("RESHAPE", pytest.approx(5))


def test_new_litert_tool_on_an_android_phone_with_its_ms_summary_and_profiler_tables():
    cell = cell_of("android_sme2_litert_fc_fp32_profiler")
    assert cell.status == "ok" and cell.delegate == "xnnpack"
    # the stats lines (us) are more precise than the ms block and are what counts
    assert latency(cell) == (2112, 442, 979, 464.545, 13, 460, 462, 478, None, None)
    assert (cell.warmup.count, cell.warmup.mean_us) == (1055, 465.319)
    assert cell.first_inference_us == 1033 and cell.init_ms == pytest.approx(4.478)
    assert (cell.memory_mb.init, cell.memory_mb.overall, cell.memory_mb.peak_rss) == (8.94, 11.51, None)
    coverage = cell.delegate_coverage
    assert (coverage.delegated_nodes, coverage.total_nodes, coverage.full) == (1, 1, True)
    profile = cell.op_profile
    # the runtime's own rows are part of each invoke: kept in run order (their place as index), marked
    assert [(n.index, n.op_type, n.ran_on, n.avg_us, n.runtime) for n in profile.nodes] == [
        (0, "LiteRT::Run[buffer registration]", None, pytest.approx(14), True),
        (1, "AllocateTensors", None, None, True),  # once in 3,166 runs: "times called" 0
        (0, "Static Reshape (NC)", "xnnpack", pytest.approx(3), False),
        (1, "Fully Connected (NC, PF32) GEMM", "xnnpack", pytest.approx(382), False),
        (4, "LiteRT::Run[Buffer sync]", None, pytest.approx(12), True)]
    assert profile.reconciled == pytest.approx((14 + 3 + 382 + 12) / 462)
    assert [t.op_type for t in profile.by_type] == ["Fully Connected (NC, PF32) GEMM", "Static Reshape (NC)"]


def test_new_litert_tool_ms_block_alone():
    cell = cell_of("litert_gpu_llama_prefill_ms")
    assert cell.status == "ok"
    assert latency(cell) == (10, pytest.approx(7416400), pytest.approx(7448860), pytest.approx(7430200),
                             pytest.approx(9920), None, None, None, None, None)
    assert (cell.warmup.count, cell.warmup.mean_us) == (1, pytest.approx(7441040))
    assert cell.first_inference_us == pytest.approx(7441040)
    assert cell.init_ms == pytest.approx(23744.73)
    assert (cell.memory_mb.init, cell.memory_mb.overall, cell.memory_mb.peak_rss) == (6391.74, 6391.74, None)
    assert cell.delegate is None


def test_raspberry_pi_log_cut_mid_line_with_xnnpack_partial():
    cell = cell_of("rpi_xnnpack_yolo_int8_partial_delegate", threads=4)
    assert cell.status == "ok" and cell.delegate == "xnnpack"
    assert latency(cell) == (50, 52522, 113361, 55744.2, 9900, None, None, None, None, None)
    assert (cell.warmup.count, cell.warmup.mean_us) == (10, 54366.2)
    assert cell.init_ms == pytest.approx(49.438) and cell.first_inference_us == 65683
    assert cell.memory_mb is None  # the paste ends inside the note before the memory line
    coverage = cell.delegate_coverage
    assert (coverage.delegated_nodes, coverage.total_nodes, coverage.full) == (None, None, False)
    assert "the xnnpack delegate took part of the graph (1 delegate kernels)" in cell.warnings
    assert benchmark_log.threads_of(params_of("rpi_xnnpack_yolo_int8_partial_delegate")) == 4


def test_logcat_lines_from_the_android_benchmark_app():
    cell = cell_of("android_logcat_nnapi_partial_44_kernels")
    assert cell.status == "ok" and cell.delegate == "nnapi"
    assert latency(cell) == (75, 11787, 13649, 12167.6, 325, None, None, None, None, None)
    assert (cell.warmup.count, cell.warmup.mean_us) == (40, 12581.9)
    assert cell.init_ms == pytest.approx(126.059) and cell.first_inference_us == 32942
    assert "the nnapi delegate took part of the graph (44 delegate kernels)" in cell.warnings


def test_unconsumed_flag_is_reported_and_the_run_without_results_fails():
    cell = cell_of("android_cph1920_unconsumed_graph_flag")
    assert cell.status == "failed" and cell.latency_us is None
    assert cell.error == "no timing results in the log; benchmark_model did not use: --graph test"
    assert "benchmark_model did not use these flags: --graph test" in cell.warnings


@pytest.mark.parametrize("name", ["android_sme2_litert_fc_fp32_profiler", "x86_avx2_mobilenet_v1_float_op_profile",
                                  "mi11_yolov5s_nnapi_gpu_op_profile"])
def test_op_tables_read_the_same_with_tabs_expanded_to_spaces(name):
    # Pasted into an issue or a web page, the tables often lose their tabs.
    text = (LOGS / f"{name}.log").read_text()
    template = Cell(model="m.tflite", model_sha256="0" * 64, model_size_bytes=1, delegate=None, threads=1,
                    status="failed", error="not parsed")
    tabs = benchmark_log.to_cell(benchmark_log.parse(text), template).op_profile
    spaces = benchmark_log.to_cell(benchmark_log.parse(text.expandtabs()), template).op_profile
    assert spaces == tabs and len(spaces.nodes) > 0
