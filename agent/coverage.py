"""Delegate coverage: how many of the model's nodes a delegate took.

After a delegate is applied, the interpreter lists the model's original nodes plus one
`DELEGATE` node per partition it took. A node belongs to a partition when the partition
produces its outputs, or when everything that reads its outputs is itself delegated.
"""

from __future__ import annotations

from typing import Optional

from agent.wire.records import DelegateCoverage, NodeRef


def coverage(ops: list[dict], graph_outputs: set[int]) -> Optional[DelegateCoverage]:
    """Coverage from `interpreter._get_ops_details()`; None when no delegate took anything."""
    delegates = [op for op in ops if op["op_name"] == "DELEGATE"]
    if not delegates:
        return None
    nodes = [op for op in ops if op["op_name"] != "DELEGATE"]
    delegate_in = {int(t) for op in delegates for t in op["inputs"]}
    delegate_out = {int(t) for op in delegates for t in op["outputs"]}
    readers: dict[int, list[int]] = {}
    for op in nodes:
        for tensor in op["inputs"]:
            readers.setdefault(int(tensor), []).append(op["index"])
    taken = {op["index"] for op in nodes if delegate_out & {int(t) for t in op["outputs"]}}
    changed = True
    while changed:
        changed = False
        for op in nodes:
            if op["index"] in taken:
                continue
            outputs = {int(t) for t in op["outputs"]}
            if outputs & (delegate_in | graph_outputs):
                continue
            if all(reader in taken for t in outputs for reader in readers.get(t, [])) and \
                    any(readers.get(t) for t in outputs):
                taken.add(op["index"])
                changed = True
    left = [NodeRef(index=op["index"], op_type=op["op_name"]) for op in nodes if op["index"] not in taken]
    return DelegateCoverage(delegated_nodes=len(taken), total_nodes=len(nodes), full=not left, not_delegated=left)
