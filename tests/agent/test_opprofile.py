"""Per-op profiles on the real interpreter: the example models cut into one-op models."""

from __future__ import annotations

import pytest

from agent import opprofile
from agent import runtime as runtimes
from agent.facts import SysRoot
from agent.inputs import random_inputs
from agent.jobs import cell_template
from agent.measure import measure
from agent.wire.protocol import CellSpec
from agent.wire.records import OpNode, Settings
from tests.support import EXAMPLE_MODELS, FIXTURE_MODELS

QUICK = Settings(warmup_runs=2, warmup_min_secs=0, num_runs=20, min_secs=0.1)
MOBILENET = EXAMPLE_MODELS / "mobilenet_v2_035_96_fp32.tflite"
MODELS = [MOBILENET, *(EXAMPLE_MODELS / f"digits_cnn_{v}.tflite" for v in ("fp32", "fp16", "dynamic", "int8"))]


def profiled(path, delegate: str, op_profile: bool = True):
    spec = CellSpec(model_sha256="0" * 64, model_name=path.name, delegate=delegate, threads=1,
                    settings=QUICK, op_profile=op_profile)
    cell, _ = measure(str(path), spec, runtimes.require(), cell_template(spec, path.stat().st_size),
                      SysRoot("/"), lambda snapshot: None)
    assert cell.status == "ok", cell.error
    return cell


def model_op_types(path) -> list[str]:
    """The op of every node in execution order, as the interpreter lists them."""
    interpreter, _ = runtimes.make_interpreter(runtimes.require(), str(path), "cpu", 1)
    interpreter.allocate_tensors()
    return [op["op_name"] for op in interpreter._get_ops_details()]


@pytest.mark.parametrize("path", MODELS, ids=lambda p: p.stem)
@pytest.mark.parametrize("delegate", ["cpu", "xnnpack"])
def test_profile_covers_exactly_the_models_nodes(path, delegate):
    cell = profiled(path, delegate)
    profile = cell.op_profile
    assert profile is not None and profile.method == "isolated ops"
    assert [n.op_type for n in profile.nodes] == model_op_types(path)
    assert [n.index for n in profile.nodes] == list(range(len(profile.nodes)))
    timed = [n for n in profile.nodes if n.avg_us is not None]
    # Times are positive; a node without one is accounted for in a warning, and convolutions,
    # which do real arithmetic, have one (but for a tiny one lost in the noise of an empty invoke).
    assert timed and all(n.avg_us > 0 and n.p50_us > 0 and n.times_called == 1 for n in timed)
    untimed = [n for n in profile.nodes if n.avg_us is None]
    assert not untimed or any("times are null" in w for w in profile.warnings)
    convs = [n for n in profile.nodes if n.op_type in ("CONV_2D", "DEPTHWISE_CONV_2D")]
    assert sum(n.avg_us is not None for n in convs) >= len(convs) - 1
    assert sum(n.share for n in timed) == pytest.approx(1.0)
    # By type: every node counted once, totals add up to the nodes'.
    by_type = {t.op_type: t for t in profile.by_type}
    assert sum(t.count for t in by_type.values()) == len(profile.nodes)
    assert set(by_type) == {n.op_type for n in profile.nodes}
    for name, total in by_type.items():
        members = [n for n in profile.nodes if n.op_type == name]
        if all(n.avg_us is not None for n in members):
            assert total.total_us == pytest.approx(sum(n.avg_us for n in members))
    # A wide sanity band around the whole model's p50 (the precise figure is in bench/), the
    # whole model timed by the profile's own loop: on a busy machine the cell's timed phase,
    # which keeps interrupted invokes, may see another load than the profile phase.
    runtime = runtimes.require()
    interpreter, _ = runtimes.make_interpreter(runtime, str(path), delegate, 1)
    interpreter.allocate_tensors()
    whole_us = opprofile.whole_model_ns(runtime, str(path), delegate, 1, None, None,
                                        random_inputs(interpreter.get_input_details(), 0),
                                        opprofile.Timing(QUICK.num_runs)) / 1e3
    assert 0.33 < sum(n.p50_us for n in timed) / whole_us < 3
    assert profile.reconciled == pytest.approx(sum(n.avg_us for n in timed) / cell.latency_us.p50)


def test_xnnpack_nodes_are_reported_as_xnnpack():
    cell = profiled(MOBILENET, "xnnpack")
    assert cell.delegate_coverage.full and cell.delegate_coverage.not_delegated == []
    assert {n.ran_on for n in cell.op_profile.nodes} == {"xnnpack"}
    plain = profiled(MOBILENET, "cpu")
    assert plain.delegate_coverage is None
    assert {n.ran_on for n in plain.op_profile.nodes} == {"cpu"}


@pytest.mark.parametrize("path", [EXAMPLE_MODELS / "digits_cnn_int8.tflite", FIXTURE_MODELS / "multi_input.tflite"],
                         ids=lambda p: p.stem)
def test_partially_delegated_graph_lists_the_fallen_back_nodes(path):
    cell = profiled(path, "xnnpack")
    coverage = cell.delegate_coverage
    assert not coverage.full and coverage.not_delegated
    assert len(coverage.not_delegated) == coverage.total_nodes - coverage.delegated_nodes
    types = model_op_types(path)
    assert all(types[ref.index] == ref.op_type for ref in coverage.not_delegated)
    left = {ref.index for ref in coverage.not_delegated}
    for node in cell.op_profile.nodes:
        assert node.ran_on == ("cpu" if node.index in left else "xnnpack")


def test_digits_reshape_path_falls_back_under_xnnpack():
    # The dynamic reshape (SHAPE -> STRIDED_SLICE -> PACK -> RESHAPE) stays on the CPU.
    cell = profiled(EXAMPLE_MODELS / "digits_cnn_fp32.tflite", "xnnpack")
    assert [ref.op_type for ref in cell.delegate_coverage.not_delegated] == [
        "SHAPE", "STRIDED_SLICE", "PACK", "RESHAPE"]


def test_gpu_accelerator_says_why_it_has_no_profile():
    with pytest.raises(opprofile.OpProfileUnavailable, match="litert-gpu runs whole models through CompiledModel"):
        opprofile.profile(runtimes.require(), str(MOBILENET), "litert-gpu", 1, [], 1, None, lambda i: None, 1.0)


def test_no_profile_unless_asked():
    cell = profiled(EXAMPLE_MODELS / "digits_cnn_fp32.tflite", "xnnpack", op_profile=False)
    assert cell.op_profile is None


def test_cut_model_runs_the_op_alone():
    schema = opprofile.load_schema()
    model = schema.ModelT.InitFromPackedBuf(bytearray(MOBILENET.read_bytes()), 0)
    content, feeds = opprofile.cut(schema, model, 9)  # the first ADD: two activations in
    interpreter, _ = runtimes.make_interpreter(runtimes.require(), str(MOBILENET), "cpu", 1,
                                               model_content=content)
    interpreter.allocate_tensors()
    assert [op["op_name"] for op in interpreter._get_ops_details()] == ["ADD"]
    assert len(feeds) == len(interpreter.get_input_details()) == 2


def test_summary_shares_and_reconciliation():
    def node(index: int, op_type: str, avg_us) -> OpNode:
        return OpNode(index=index, op_type=op_type, name=None, ran_on="cpu", times_called=1.0, avg_us=avg_us,
                      p50_us=avg_us, share=None)

    nodes = [node(0, "CONV_2D", 30.0), node(1, "ADD", 10.0), node(2, "CONV_2D", None)]
    summary = opprofile.summarize(nodes, 50.0, "isolated ops", [])
    assert [n.share for n in summary.nodes] == [0.75, 0.25, None]
    assert summary.reconciled == pytest.approx(0.8)
    conv = next(t for t in summary.by_type if t.op_type == "CONV_2D")
    assert conv.count == 2 and conv.total_us is None  # one member unmeasured: no total invented
