"""Numbers as people read them: durations, megabytes, fractions, verdicts (pure, no rich)."""

from __future__ import annotations

from typing import Optional

from controller.records import CellComparison, FigureChange

# How each metric of a regression check is named where people read it.
METRIC_WORDS = {"latency_p50": "latency", "memory_peak": "memory", "accuracy_top1": "top-1",
                "delegate_coverage": "coverage", "status": "fails in the candidate"}


def format_us(us: Optional[float]) -> str:
    """A duration given in microseconds, in the unit that reads best."""
    if us is None:
        return "-"
    if us < 1000:
        return f"{us:.1f} µs"
    if us < 1_000_000:
        return f"{us / 1000:.2f} ms"
    return f"{us / 1e6:.2f} s"


def format_mb(mb: Optional[float]) -> str:
    """Megabytes with one decimal."""
    return "-" if mb is None else f"{mb:.1f}"


def format_fraction(value: Optional[float]) -> str:
    """A fraction as a percentage with one decimal."""
    return "-" if value is None else f"{value * 100:.1f}%"


def change_text(metric: str, figure: Optional[FigureChange]) -> str:
    """A metric's change as people read it: `+18.0%`, `-1.2 pt` of top-1, `-3 nodes`; "" when unknown."""
    if figure is None or figure.change is None:
        return ""
    if metric == "accuracy_top1":
        return f"{-figure.change * 100:+.1f} pt"
    if metric == "delegate_coverage":
        return f"{figure.change:+.0f} node(s) on the CPU"
    return f"{figure.change:+.1%}"


def verdict_label(cell: CellComparison) -> str:
    """The cell's verdict and the metrics that made it: `REGRESSION (memory +18.0%)`."""
    if cell.verdict == "NO CHANGE" or not cell.decided_by:
        return cell.verdict
    parts = []
    for metric in cell.decided_by:
        change = change_text(metric, getattr(cell, metric, None))
        parts.append(f"{METRIC_WORDS.get(metric, metric)} {change}".strip())
    return f"{cell.verdict} ({', '.join(parts)})"


def interval_text(figure: Optional[FigureChange]) -> str:
    """A relative change with its interval, `+1.8% [+0.4%, +3.2%]`, or `(no interval)` where
    nothing bounds it; "-" without a change."""
    if figure is None or figure.change is None:
        return "-"
    if figure.low is None or figure.high is None:
        return f"{figure.change:+.1%} (no interval)"
    return f"{figure.change:+.1%} [{figure.low:+.1%}, {figure.high:+.1%}]"
