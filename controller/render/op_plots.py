"""The report's per-op figures: where one cell spends its time, and a variant family per op type.

Drawn with matplotlib like `controller.render.plots`; each function returns one PNG.
"""

from __future__ import annotations

from agent.wire.records import Cell
from controller.analysis import opprofiles
from controller.records import FamilyOpTypes
from controller.render.plots import _png, plt

TOP_BARS = 10
TOP_TYPES = 8
# Where a node ran: the cell's delegate, the CPU after falling back from it, or unknown.
COLORS = {"delegate": "#4878cf", "fell back": "#e8710a", "cpu": "#6b8e23", "unknown": "#999999"}


def _where(cell: Cell, ran_on) -> str:
    if ran_on is None:
        return "unknown"
    if ran_on == "cpu":
        return "fell back" if cell.delegate != "cpu" else "cpu"
    return "delegate"


def top_ops(cell: Cell) -> bytes:
    """The cell's slowest nodes (fallen-back ones in orange) next to its time per op type."""
    profile = cell.op_profile
    nodes = opprofiles.top_nodes(profile, TOP_BARS)[::-1]
    types = [t for t in profile.by_type if t.total_us is not None][:TOP_TYPES][::-1]
    fig, (left, right) = plt.subplots(1, 2, figsize=(10, 0.28 * max(len(nodes), len(types), 4) + 1.6))
    where = [_where(cell, n.ran_on) for n in nodes]
    left.barh(range(len(nodes)), [n.avg_us for n in nodes], color=[COLORS[w] for w in where])
    left.set_yticks(range(len(nodes)), [f"#{n.index} {n.op_type}" for n in nodes], fontsize=7)
    left.set_xlabel("µs per run")
    left.set_title("slowest nodes", fontsize=9)
    for kind in dict.fromkeys(where):
        label = {"delegate": f"on {cell.delegate}", "fell back": "fell back to the CPU"}.get(kind, kind)
        left.bar(0, 0, color=COLORS[kind], label=label)
    left.legend(fontsize=7, loc="lower right")
    right.barh(range(len(types)), [t.total_us for t in types], color="#777777")
    right.set_yticks(range(len(types)), [f"{t.op_type} ({t.count})" for t in types], fontsize=7)
    right.set_xlabel("µs per run, all nodes of the type")
    right.set_title("by op type (node count)", fontsize=9)
    reconciled = "-" if profile.reconciled is None else f"{profile.reconciled:.2f}"
    fig.suptitle(f"{opprofiles.cell_label(cell)}: {profile.method}, Σ ops / p50 = {reconciled}", fontsize=10)
    for ax in (left, right):
        ax.grid(True, axis="x", alpha=0.3)
    return _png(fig)


def family_op_types(family: FamilyOpTypes) -> bytes:
    """Each variant's time per op type side by side: the op that makes a variant slower stands out."""
    op_types = family.op_types[:TOP_TYPES]
    count = len(family.variants)
    width = 0.8 / count
    fig, ax = plt.subplots(figsize=(10, 4))
    for i, (variant, totals) in enumerate(zip(family.variants, family.totals)):
        values = [totals[j] if totals[j] is not None else 0.0 for j in range(len(op_types))]
        ax.bar([j + (i - (count - 1) / 2) * width for j in range(len(op_types))], values, width, label=variant)
    ax.set_xticks(range(len(op_types)), op_types, rotation=30, ha="right", fontsize=8)
    ax.set_ylabel("µs per run")
    ax.set_title(f"{family.family} on {family.device}, {family.delegate} x{family.threads}: time per op type")
    ax.legend(fontsize=8)
    ax.grid(True, axis="y", alpha=0.3)
    return _png(fig)
