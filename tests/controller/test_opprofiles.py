"""Per-op profile analysis: matching, sorting and wording, on small records."""

from __future__ import annotations

from agent.wire.records import Cell, DelegateCoverage, NodeRef, OpNode, OpProfile, OpTypeTotal
from controller.analysis import opprofiles


def node(index: int, op_type: str, avg_us, name=None) -> OpNode:
    return OpNode(index=index, op_type=op_type, name=name, ran_on="xnnpack", times_called=1.0, avg_us=avg_us,
                  p50_us=avg_us, share=None)


def cell(nodes: list[OpNode], model: str = "m.tflite", delegated: int | None = None, total: int = 4,
         left: list[NodeRef] | None = None) -> Cell:
    by_type: dict[str, float] = {}
    for n in nodes:
        by_type[n.op_type] = by_type.get(n.op_type, 0.0) + (n.avg_us or 0.0)
    return Cell(device="pi4", model=model, model_sha256="0" * 64, model_size_bytes=1, delegate="xnnpack",
                threads=1, status="ok",
                op_profile=OpProfile(method="isolated ops", reconciled=None, nodes=nodes,
                                     by_type=[OpTypeTotal(op_type=k, count=1, total_us=v, share=None)
                                              for k, v in by_type.items()]),
                delegate_coverage=DelegateCoverage(delegated_nodes=delegated, total_nodes=total,
                                                   full=delegated == total, not_delegated=left)
                if delegated is not None else None)


def test_fallen_back_nodes_are_counted_per_type():
    refs = [NodeRef(index=i, op_type=t) for i, t in enumerate(["DEQUANTIZE", "RESIZE_BILINEAR", "RESIZE_BILINEAR",
                                                               "RESIZE_BILINEAR"])]
    assert opprofiles.fallen_back_text(refs) == "DEQUANTIZE, 3 x RESIZE_BILINEAR"


def test_top_nodes_skip_untimed_ones():
    profile = OpProfile(method="x", reconciled=None, nodes=[node(0, "A", 1.0), node(1, "B", None), node(2, "C", 5.0)],
                        by_type=[])
    assert [n.index for n in opprofiles.top_nodes(profile, 5)] == [2, 0]


def test_diff_matches_nodes_by_output_and_sorts_by_change():
    a = cell([node(0, "CONV_2D", 10.0, "c1"),
              node(1, "ADD", 2.0, "a1")])
    b = cell([node(0, "QUANTIZE", 1.0, "q"),
              node(1, "CONV_2D", 4.0, "c1"),
              node(2, "ADD", 3.0, "a1")], model="m_int8.tflite")
    found = opprofiles.diff(a, b)
    assert [(c.key, c.change_us) for c in found.nodes] == [
        ("CONV_2D c1", -6.0), ("ADD a1", 1.0), ("QUANTIZE q", None)]
    assert found.by_type[0].key == "CONV_2D" and found.by_type[0].ratio == 0.4


def test_coverage_drop_only_when_fewer_nodes():
    before = [cell([], delegated=4, left=[])]
    after = [cell([], delegated=3, left=[NodeRef(index=2, op_type="SOFTMAX")])]
    assert opprofiles.coverage_drop(before, after) == "delegate took 3 of 4 nodes, 4 in the baseline " \
                                                      "(SOFTMAX on the CPU)"
    assert opprofiles.coverage_drop(after, before) is None
    assert opprofiles.coverage_drop(before, [cell([])]) is None  # no coverage known: nothing claimed
