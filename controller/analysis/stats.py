"""The one median and the one cell key every analysis and report uses."""

from __future__ import annotations

import statistics
from collections import defaultdict
from typing import Optional

from agent.wire.records import Cell
from controller.records import RunReport

# A cell across runs and rounds: device, model file name, delegate (None when the source
# did not say), threads.
CellKey = tuple[str, str, Optional[str], int]


def median_or_none(values: list[float]) -> Optional[float]:
    """The median, or None for no values."""
    return statistics.median(values) if values else None


def cell_key(cell: Cell) -> CellKey:
    """The key that matches a cell with the same cell of other runs and rounds."""
    return (cell.device, cell.model, cell.delegate, cell.threads)


def key_text(key: CellKey) -> str:
    """A cell key as `device model delegate xN`."""
    device, model, delegate, threads = key
    return f"{device} {model} {delegate or '-'} x{threads}"


def p50_by_cell(run: RunReport) -> dict[CellKey, float]:
    """Each cell's p50 latency in a run (its mean where the source printed no median),
    the median over its ok rounds."""
    grouped: dict[CellKey, list[float]] = defaultdict(list)
    for cell in run.cells:
        if cell.status == "ok" and cell.latency_us and cell.latency_us.centre is not None:
            grouped[cell_key(cell)].append(cell.latency_us.centre)
    return {key: median_or_none(values) for key, values in grouped.items()}
