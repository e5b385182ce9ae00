"""The stand-in `benchmark_model` measures with the real interpreter and prints the real format.

Run as its own process (as on the phone), its log goes through the same parser as a
real phone's; the checks are consistency checks, never the stand-in's own numbers.
"""

from __future__ import annotations

import subprocess

import pytest

from agent.formats import benchmark_log
from agent.wire.records import Cell
from tests.support import EXAMPLE_MODELS

MODEL = EXAMPLE_MODELS / "mobilenet_v2_035_96_fp32.tflite"
QUICK = {"num_runs": "5", "warmup_runs": "1", "warmup_min_secs": "0", "min_secs": "0", "max_secs": "5"}


def stand_in_cell(stand_in, *flags: str, delegate: str = "xnnpack", threads: int = 1, **settings: str) -> Cell:
    quick = [f"--{name}={value}" for name, value in {**QUICK, **settings}.items()]
    result = subprocess.run([str(stand_in), f"--graph={MODEL}", f"--num_threads={threads}", *quick, *flags],
                            capture_output=True, text=True, timeout=300, check=False)
    template = Cell(model=MODEL.name, model_sha256="0" * 64, model_size_bytes=1, delegate=delegate,
                    threads=threads, status="failed", error="not run")
    return benchmark_log.to_cell(benchmark_log.parse(result.stdout + result.stderr), template)


def model_ops() -> list[str]:
    from ai_edge_litert.interpreter import Interpreter, OpResolverType

    interpreter = Interpreter(model_path=str(MODEL),
                              experimental_op_resolver_type=OpResolverType.BUILTIN_WITHOUT_DEFAULT_DELEGATES)
    interpreter.allocate_tensors()
    return [op["op_name"] for op in interpreter._get_ops_details()]


@pytest.fixture
def runnable(stand_in):
    stand_in.chmod(0o755)
    return stand_in


def test_op_profile_comes_from_measuring_every_node(runnable):
    cell = stand_in_cell(runnable, "--use_xnnpack=false", "--enable_op_profiling=true", delegate="cpu")
    assert cell.status == "ok", cell.error
    assert cell.delegate == "cpu"
    profile = cell.op_profile
    ops = model_ops()
    assert [n.op_type for n in profile.nodes] == ops and [n.index for n in profile.nodes] == list(range(len(ops)))
    # The tool prints milliseconds with three decimals: an op under 0.5 us reads 0.000, as printed.
    assert all(n.avg_us is not None and n.avg_us >= 0 and n.ran_on == "cpu" for n in profile.nodes)
    assert sum(n.avg_us for n in profile.nodes) > 0
    assert sum(t.count for t in profile.by_type) == len(ops)
    assert {t.op_type for t in profile.by_type} == set(ops)
    assert sum(n.share for n in profile.nodes) == pytest.approx(1.0, abs=1e-6)
    assert profile.reconciled is not None and profile.reconciled > 0
    assert cell.latency_us.count == 5


def test_xnnpack_nodes_are_attributed_to_xnnpack(runnable):
    cell = stand_in_cell(runnable, "--use_xnnpack=true", "--enable_op_profiling=true")
    assert cell.status == "ok", cell.error
    assert cell.delegate == "xnnpack"  # from LiteRT's own "Created TensorFlow Lite XNNPACK delegate" line
    assert {n.ran_on for n in cell.op_profile.nodes} <= {"xnnpack", "cpu"}
    assert any(n.ran_on == "xnnpack" for n in cell.op_profile.nodes)


def test_an_unknown_flag_is_reported_and_the_run_goes_on(runnable):
    cell = stand_in_cell(runnable, "--use_xnnpack=true", "--no_such_flag=1")
    assert cell.status == "ok", cell.error
    assert "benchmark_model did not use these flags: --no_such_flag=1" in cell.warnings
    lat = cell.latency_us
    assert lat.count == 5 and lat.min <= lat.p5 <= lat.p50 <= lat.p95 <= lat.max
    assert cell.op_profile is None  # not asked for


def test_min_secs_makes_it_run_longer_than_num_runs(runnable):
    cell = stand_in_cell(runnable, "--use_xnnpack=true", min_secs="0.3")
    assert cell.status == "ok", cell.error
    # at least 5 runs and at least 0.3 s: a sub-millisecond model runs far more than 5 times
    assert cell.latency_us.count > 5
    assert cell.settings is None  # this template asked for no settings


def test_warmup_runs_and_max_secs_are_honoured(runnable):
    cell = stand_in_cell(runnable, "--use_xnnpack=true", warmup_runs="3", num_runs="1000000", max_secs="0.3")
    assert cell.status == "ok", cell.error
    assert cell.warmup.count == 3
    assert 1 <= cell.latency_us.count < 1000000  # cut at max_secs long before a million runs
