"""Per-op profiles as a library: the slowest nodes, two profiles side by side, a variant
family per op type, and delegates that took fewer nodes than before.

Pure functions over stored cells; commands and reports render what they return.
"""

from __future__ import annotations

from typing import Optional

from agent.wire.records import Cell, OpNode, OpProfile
from controller.records import FamilyOpTypes, OpChange, ProfileDiff, RunReport

TOP_NODES = 5


def top_nodes(profile: OpProfile, count: int = TOP_NODES) -> list[OpNode]:
    """The `count` ops of the graph with the longest time per run (nodes without a time, and
    rows of the runtime's own work, left out)."""
    timed = [n for n in profile.nodes if n.avg_us is not None and not n.runtime]
    return sorted(timed, key=lambda n: -n.avg_us)[:count]


def cell_label(cell: Cell) -> str:
    """A cell as people name it: device, model, delegate and threads."""
    return f"{cell.device} {cell.model} {cell.delegate} x{cell.threads}"


def profiled_cells(run: RunReport) -> list[Cell]:
    """One cell per (device, model, delegate, threads) that has a profile: its first round."""
    chosen: dict[tuple, Cell] = {}
    for cell in sorted(run.cells, key=lambda c: c.round):
        if cell.op_profile is not None:
            chosen.setdefault((cell.device, cell.model, cell.delegate, cell.threads), cell)
    return list(chosen.values())


def _change(key: str, base: Optional[float], cand: Optional[float]) -> OpChange:
    known = base is not None and cand is not None
    return OpChange(key=key, baseline_us=base, candidate_us=cand,
                    change_us=cand - base if known else None,
                    ratio=cand / base if known and base else None)


def _by_abs_change(changes: list[OpChange]) -> list[OpChange]:
    return sorted(changes, key=lambda c: (c.change_us is None, -abs(c.change_us or 0.0), c.key))


def node_key(node: OpNode) -> str:
    """How a node is matched across profiles: its output tensor and op type, else its place."""
    return f"{node.op_type} {node.name}" if node.name else f"#{node.index} {node.op_type}"


def diff(baseline: Cell, candidate: Cell) -> ProfileDiff:
    """Per op type and per node, the change in time per run from `baseline` to `candidate`."""
    a, b = baseline.op_profile, candidate.op_profile
    types_a = {t.op_type: t.total_us for t in a.by_type}
    types_b = {t.op_type: t.total_us for t in b.by_type}
    by_type = [_change(name, types_a.get(name), types_b.get(name))
               for name in dict.fromkeys([*types_a, *types_b])]
    nodes_a = {node_key(n): n.avg_us for n in a.nodes}
    nodes_b = {node_key(n): n.avg_us for n in b.nodes}
    nodes = [_change(key, nodes_a.get(key), nodes_b.get(key)) for key in dict.fromkeys([*nodes_a, *nodes_b])]
    return ProfileDiff(baseline=cell_label(baseline), candidate=cell_label(candidate),
                       by_type=_by_abs_change(by_type), nodes=_by_abs_change(nodes))


def pair_runs(baseline: RunReport, candidate: RunReport) -> list[tuple[Cell, Cell]]:
    """Cells with a profile in both runs, matched by device, model, delegate and threads."""
    base = {(c.device, c.model, c.delegate, c.threads): c for c in profiled_cells(baseline)}
    return [(base[key], c) for c in profiled_cells(candidate)
            if (key := (c.device, c.model, c.delegate, c.threads)) in base]


def pair_models(run: RunReport, baseline_model: str, candidate_model: str) -> list[tuple[Cell, Cell]]:
    """Cells of two models in one run with a profile, matched by device, delegate and threads."""
    cells = profiled_cells(run)
    base = {(c.device, c.delegate, c.threads): c for c in cells if c.model == baseline_model}
    return [(base[key], c) for c in cells if c.model == candidate_model
            if (key := (c.device, c.delegate, c.threads)) in base]


def family_op_types(run: RunReport) -> list[FamilyOpTypes]:
    """Each variant family of the run, per device and setting: every variant's time per op type."""
    found = []
    cells = profiled_cells(run)
    for comparison in run.variants:
        members = {row.model: row.variant or row.model for row in comparison.rows}
        settings = sorted({(c.delegate, c.threads) for c in cells
                           if c.device == comparison.device and c.model in members})
        for delegate, threads in settings:
            chosen = [c for c in cells if c.device == comparison.device and c.model in members
                      and (c.delegate, c.threads) == (delegate, threads)]
            if len(chosen) < 2:
                continue
            chosen.sort(key=lambda c: list(members).index(c.model))
            per_variant = [{t.op_type: t.total_us for t in c.op_profile.by_type} for c in chosen]
            order: dict[str, float] = {}
            for totals in per_variant:
                for name, total in totals.items():
                    order[name] = max(order.get(name, 0.0), total or 0.0)
            op_types = sorted(order, key=lambda name: -order[name])
            found.append(FamilyOpTypes(
                device=comparison.device, family=comparison.family, delegate=delegate, threads=threads,
                variants=[members[c.model] for c in chosen], op_types=op_types,
                totals=[[totals.get(name) for name in op_types] for totals in per_variant]))
    return found


def coverage_drop(baseline: list[Cell], candidate: list[Cell]) -> Optional[str]:
    """One line when the candidate's delegate took fewer nodes than the baseline's, else None.

    A node that falls back to the CPU after a runtime or model change is a regression even
    when the p50 hides it.
    """
    def taken(cells: list[Cell]) -> Optional[int]:
        counts = [c.delegate_coverage.delegated_nodes for c in cells
                  if c.status == "ok" and c.delegate_coverage and c.delegate_coverage.delegated_nodes is not None]
        return min(counts) if counts else None

    before, after = taken(baseline), taken(candidate)
    if before is None or after is None or after >= before:
        return None
    total = next((c.delegate_coverage.total_nodes for c in candidate if c.delegate_coverage), None)
    left = next((c.delegate_coverage.not_delegated for c in candidate
                 if c.delegate_coverage and c.delegate_coverage.not_delegated), None)
    named = f" ({fallen_back_text(left)} on the CPU)" if left else ""
    of_total = f" of {total}" if total is not None else ""
    return f"delegate took {after}{of_total} nodes, {before} in the baseline{named}"


def fallen_back_text(refs) -> str:
    """Nodes left to the CPU as people read them: `SHAPE, 3 x RESHAPE`."""
    counts: dict[str, int] = {}
    for ref in refs:
        counts[ref.op_type] = counts.get(ref.op_type, 0) + 1
    return ", ".join(name if n == 1 else f"{n} x {name}" for name, n in counts.items())
