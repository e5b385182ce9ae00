"""The runtime's own rows of a LiteRT profile: listed with the nodes, never ranked as ops."""

from __future__ import annotations

from pathlib import Path

from agent.formats import benchmark_log
from agent.wire.records import Cell
from controller.analysis import opprofiles

SME2 = Path(__file__).resolve().parents[1] / "fixtures" / "benchmark_logs" / "android_sme2_litert_fc_fp32_profiler.log"


def sme2_cell() -> Cell:
    template = Cell(device="phone", model="fc_fp32.tflite", model_sha256="0" * 64, model_size_bytes=3_277_740,
                    delegate=None, threads=1, status="failed", error="not parsed")
    return benchmark_log.to_cell(benchmark_log.parse(SME2.read_text()), template)


def test_top_ops_are_ops_of_the_graph_only():
    profile = sme2_cell().op_profile
    # buffer registration (0.014 ms per run) outranks Static Reshape (0.003 ms) but is not an op
    assert [n.op_type for n in opprofiles.top_nodes(profile)] == [
        "Fully Connected (NC, PF32) GEMM", "Static Reshape (NC)"]
    assert [n.op_type for n in profile.nodes if n.runtime] == [
        "LiteRT::Run[buffer registration]", "AllocateTensors", "LiteRT::Run[Buffer sync]"]


def test_a_diff_of_two_profiles_keeps_the_runtime_rows_apart_from_the_ops():
    cell = sme2_cell()
    found = opprofiles.diff(cell, cell)
    assert [c.key for c in found.by_type] == ["Fully Connected (NC, PF32) GEMM", "Static Reshape (NC)"]
    assert "LiteRT::Run[Buffer sync] LiteRT::Run[Buffer sync]/0" in [c.key for c in found.nodes]
