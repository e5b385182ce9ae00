"""The per-op tables `benchmark_model --enable_op_profiling=true` prints, read as an OpProfile.

Column semantics, from TFLite's stats_calculator and profile_summarizer: in the Run Order
table `[avg ms]` is the time of one CALL of the node and `[times called]` the calls per
RUN (integer division: a node called once in 3,166 runs shows 0); "Summary by node type"
gives per-RUN totals with the calls multiplied in.

Layouts that exist: older tools add a `[start]` column and pad node types to 24
characters, newer ones to 40; a paste may have its tabs expanded to spaces; node types
("Convolution (NHWC, QC8) IGEMM") and names ("[Identity, Identity_1]:233") contain spaces
and commas. The columns are found from each table's own header line. Tables of the
initialization profile ("Profiling Info for Benchmark Initialization") and "Top by
Computation Time" repeat what the Run Order says or are not about inference: skipped.

The new LiteRT tool's Run Order also lists the runtime's own work inside each invoke
(`LiteRT::Run[buffer registration]`, `LiteRT::Run[Buffer sync]`, `AllocateTensors`): kept
as nodes marked `runtime`, counted in the summed time, left out of the per-type totals.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from typing import Optional

from agent.wire.records import LatencyStats, NodeRef, OpNode, OpProfile, OpTypeTotal

METHOD = "benchmark_model"

_TABLE = re.compile(r"^=+ (Run Order|Top by Computation Time|Summary by node type) =+$")
_INIT_SECTION = "Profiling Info for Benchmark Initialization"
_RUN_SECTION = "Operator-wise Profiling Info for Regular Benchmark Runs"
_COLUMN = re.compile(r"\[([^\]]+)\]")
_NUMBER = re.compile(r"^-?(?:\d+\.?\d*|\.\d+)(?:[eE][-+]?\d+)?%?$")
_INDEX = re.compile(r"^(?P<name>.*?):(?P<index>\d+)$")
# Rows that are the runtime's own work, not nodes of the model.
_RUNTIME_ROW = re.compile(r"^(?:LiteRT::|AllocateTensors$|ModifyGraphWithDelegate$)")
# Node types of delegate kernels, and the delegate each stands for.
_DELEGATE_KERNELS = {
    "TfLiteXNNPackDelegate": "xnnpack", "TfLiteGpuDelegateV2": "gpu", "TfLiteGpuDelegate": "gpu",
    "TfLiteNnapiDelegate": "nnapi", "TfLiteHexagonDelegate": "hexagon", "Vx Delegate": "external",
}
_BUILTIN = re.compile(r"^[A-Z][A-Z0-9_]*$")


@dataclass
class Table:
    """One table as printed: its column names and its rows, cell by cell."""

    kind: str
    columns: list[str]
    rows: list[list[str]] = field(default_factory=list)


class TableReader:
    """Fed the log's messages one by one; keeps the tables of the regular runs."""

    def __init__(self) -> None:
        self.tables: list[Table] = []
        self._section = "run"  # a log without section headers profiled its runs only
        self._pending: Optional[str] = None  # a table title seen, its header not yet
        self._table: Optional[Table] = None

    def feed(self, message: str) -> bool:
        """Take one line; True when it belonged to a profile table or section header."""
        if message.startswith(_INIT_SECTION):
            self._section, self._table = "init", None
            return True
        if message.startswith(_RUN_SECTION):
            self._section, self._table = "run", None
            return True
        if match := _TABLE.match(message):
            self._pending, self._table = match.group(1), None
            return True
        if self._pending is not None:
            columns = _COLUMN.findall(message)
            if columns:
                table = Table(self._pending, [c.strip().lower() for c in columns])
                self._pending, self._table = None, table  # its rows are consumed either way
                if self._section == "run" and table.kind != "Top by Computation Time":
                    self.tables.append(table)
                return True
            self._pending = None
        if self._table is not None:
            cells = _cells(message, len(self._table.columns), "name" in self._table.columns)
            if cells is not None:
                self._table.rows.append(cells)
                return True
            self._table = None
        return False

    def profile(self, delegate: Optional[str], latency: Optional[LatencyStats]) -> Optional[OpProfile]:
        """The OpProfile of the last regular-run tables, or None when there were none.

        The summed node time is reconciled with the cell's p50, or with its mean where the
        log printed no median (and a warning says so).
        """
        order = next((t for t in reversed(self.tables) if t.kind == "Run Order"), None)
        summary = next((t for t in reversed(self.tables) if t.kind == "Summary by node type"), None)
        if order is None and summary is None:
            return None
        warnings: list[str] = []
        nodes = _nodes(order, delegate, warnings) if order else []
        by_type, left_out = _by_type(summary) if summary else ([], [])
        total = sum(n.avg_us for n in nodes if n.avg_us is not None)
        for node in nodes:
            node.share = node.avg_us / total if node.avg_us is not None and total > 0 else None
        type_total = sum(t.total_us for t in by_type if t.total_us is not None)
        for row in by_type:
            row.share = row.total_us / type_total if row.total_us is not None and type_total > 0 else None
        if any(n.runtime for n in nodes):
            warnings.append(_runtime_note([n for n in nodes if n.runtime], total))
        elif left_out:  # a summary pasted without its run order
            warnings.append(f"left out of by_type rows that are the runtime's own work: {', '.join(left_out)}")
        centre = latency.centre if latency else None
        reconciled = total / centre if nodes and centre else None
        if reconciled is not None and latency.centre_is_mean:
            warnings.append("reconciled with the mean: the log printed no median")
        return OpProfile(method=METHOD, reconciled=reconciled, nodes=nodes, by_type=by_type, warnings=warnings)


def _cells(line: str, width: int, named: bool) -> Optional[list[str]]:
    """A table row split into its `width` cells, or None when the line is not a row."""
    if "\t" in line:
        cells = [c.strip() for c in line.split("\t")]
        cells = cells[1:] if cells and not cells[0] else cells
    else:  # tabs expanded to spaces: columns are padded apart, words inside a cell are not
        cells = re.split(r"\s{2,}", line.strip())
    if len(cells) != width or not cells[0]:
        return None
    if not all(_NUMBER.match(c) for c in (cells[1:-1] if named else cells[1:])):
        return None
    return cells


def _value(row: list[str], columns: list[str], name: str) -> Optional[float]:
    if name not in columns:
        return None
    return float(row[columns.index(name)].rstrip("%"))


def _nodes(table: Table, delegate: Optional[str], warnings: list[str]) -> list[OpNode]:
    nodes: list[OpNode] = []
    positional = False
    uncounted = 0
    for position, row in enumerate(table.rows):
        op_type = row[0]
        name_cell = row[table.columns.index("name")] if "name" in table.columns else ""
        runtime = bool(_RUNTIME_ROW.match(op_type))
        name, index = _name_and_index(name_cell)
        if index is None:
            # A runtime row has no node index to print: its place stands in, and says nothing
            # about whether this table prints indices.
            index, positional = position, positional or not runtime
        per_call_ms = _value(row, table.columns, "avg ms")
        called = _value(row, table.columns, "times called")
        if per_call_ms is not None and called:
            avg_us: Optional[float] = per_call_ms * called * 1000.0
        else:
            avg_us = None
            uncounted += 1
        nodes.append(OpNode(index=index, op_type=op_type, name=name,
                            ran_on=None if runtime else _ran_on(op_type, name, delegate),
                            times_called=called, avg_us=avg_us, p50_us=None, share=None, runtime=runtime))
    if positional:
        warnings.append("the table prints no node indices: index is the position in the run order")
    if uncounted:
        warnings.append(f"{uncounted} node(s) ran less than once per run (times called 0): no time per run")
    return nodes


def _name_and_index(cell: str) -> tuple[Optional[str], Optional[int]]:
    """`[a, b]:12` -> ("a, b", 12); `Delegate/Add (ND, QS8):9` -> ("Delegate/Add (ND, QS8)", 9)."""
    if not cell:
        return None, None
    match = _INDEX.match(cell)
    name, index = (match["name"], int(match["index"])) if match else (cell, None)
    if name.startswith("[") and name.endswith("]"):
        name = name[1:-1]
    return name or None, index


def _ran_on(op_type: str, name: Optional[str], delegate: Optional[str]) -> Optional[str]:
    """Who executed a node: a delegate kernel's own name, XNNPACK's per-op rows, or builtin kernels."""
    if op_type in _DELEGATE_KERNELS:
        return _DELEGATE_KERNELS[op_type]
    if name and name.startswith("Delegate/"):
        return delegate  # a delegate's own per-op row; the log names the delegate elsewhere
    if _BUILTIN.match(op_type):
        return "cpu"
    return None


def _runtime_note(rows: list[OpNode], total_us: float) -> str:
    """The runtime's own rows in one line: which, and how much of the summed time they take."""
    timed = sum(n.avg_us for n in rows if n.avg_us is not None)
    share = f", {timed / total_us:.1%} of the summed time" if total_us > 0 else ""
    names = ", ".join(dict.fromkeys(n.op_type for n in rows))
    return (f"rows of the runtime's own work, kept as runtime nodes outside by_type: {names} "
            f"({timed:.1f} us per run{share})")


def _by_type(table: Table) -> tuple[list[OpTypeTotal], list[str]]:
    """The per-type totals of the graph's ops, and the runtime's own rows left out of them."""
    rows = []
    left_out = []
    for row in table.rows:
        if _RUNTIME_ROW.match(row[0]):
            left_out.append(row[0])
            continue
        count = _value(row, table.columns, "count")
        if count is None:
            continue  # a summary without a [count] column has not been printed by any tool
        total_ms = _value(row, table.columns, "avg ms")
        rows.append(OpTypeTotal(op_type=row[0], count=int(count),
                                total_us=total_ms * 1000.0 if total_ms is not None else None, share=None))
    return rows, list(dict.fromkeys(left_out))


def not_delegated(profile: Optional[OpProfile]) -> Optional[list[NodeRef]]:
    """Nodes the profile shows on the builtin kernels while a delegate ran the rest; None if unknown."""
    if profile is None or not any(n.ran_on not in (None, "cpu") for n in profile.nodes):
        return None
    return [NodeRef(index=n.index, op_type=n.op_type) for n in profile.nodes if n.ran_on == "cpu"]


def delegate_kernel(profile: OpProfile) -> Optional[str]:
    """The delegate whose own kernel nodes (`TfLiteNnapiDelegate`, ...) the run order shows."""
    return next((_DELEGATE_KERNELS[n.op_type] for n in profile.nodes if n.op_type in _DELEGATE_KERNELS), None)
