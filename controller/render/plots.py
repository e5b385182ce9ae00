"""The report's figures, drawn with matplotlib and returned as PNG bytes.

Each function takes plain records and returns one PNG, or None when the data has
nothing to show (a run with one thread count has no thread scaling).
"""

from __future__ import annotations

import io
from collections import defaultdict
from collections.abc import Sequence
from typing import Optional

import matplotlib

matplotlib.use("Agg")  # no display: figures are rendered to files

import matplotlib.pyplot as plt
from matplotlib.ticker import FuncFormatter, LogLocator

from agent.wire.records import Cell
from controller.analysis.stats import CellKey, key_text, median_or_none
from controller.history import CellHistory
from controller.records import FamilyComparison, RunReport, VariantRow

MAX_SERIES = 12


def _png(fig) -> bytes:
    buffer = io.BytesIO()
    fig.tight_layout()
    fig.savefig(buffer, format="png", dpi=96)
    plt.close(fig)
    return buffer.getvalue()


def _p50(cells: Sequence[Cell]) -> Optional[float]:
    return median_or_none([c.latency_us.p50 for c in cells
                           if c.status == "ok" and c.latency_us and c.latency_us.p50 is not None])


def _time_label(ms: float, _position=None) -> str:
    """A tick value given in milliseconds as plain `2 ms` / `600 us` / `1.5 s`."""
    if ms <= 0:
        return ""
    if ms >= 1000:
        return f"{ms / 1000:g} s"
    if ms >= 1:
        return f"{ms:.3g} ms"
    return f"{ms * 1000:.3g} us"


def plain_time_axis(axis) -> None:
    """Label a log-scaled millisecond axis with plain times on major and minor ticks alike
    (matplotlib's default writes `6x10^0`); at most a handful of minor labels."""
    axis.set_major_formatter(FuncFormatter(_time_label))
    axis.set_minor_locator(LogLocator(base=10, subs=(2.0, 3.0, 5.0)))
    axis.set_minor_formatter(FuncFormatter(_time_label))


def latency_trend(runs: Sequence[RunReport], regressed: dict[str, set[CellKey]],
                  cells: Sequence[CellHistory]) -> Optional[bytes]:
    """Each cell's p50 over runs (oldest first); regressions ringed, steps found drawn as dashed lines."""
    if not cells:
        return None
    position = {run.run_id: i for i, run in enumerate(runs)}
    shown = sorted(cells, key=lambda c: -len(c.points))[:MAX_SERIES]
    fig, ax = plt.subplots(figsize=(10, 4.5))
    marked = stepped = False
    for cell in sorted(shown, key=lambda c: c.key):
        points = [(position[p.run_id], p.p50_us / 1000) for p in cell.points if p.run_id in position]
        line, = ax.plot([x for x, _ in points], [v for _, v in points], marker="o", markersize=3,
                        label=key_text(cell.key))
        bad = [(x, v) for (x, v), p in zip(points, cell.points) if cell.key in regressed.get(p.run_id, set())]
        if bad:
            marked = True
            ax.scatter([x for x, _ in bad], [v for _, v in bad], s=120, facecolors="none",
                       edgecolors="red", linewidths=2, zorder=5)
        for step in cell.steps:
            if step.run_id in position:
                stepped = True
                x = position[step.run_id] - 0.5
                ax.axvline(x, color=line.get_color(), linestyle="--", linewidth=1)
                ax.annotate(f"step {step.change:+.0%}", (x, step.after_us / 1000), fontsize=7,
                            color=line.get_color(), xytext=(3, 3), textcoords="offset points")
    ax.set_xticks(range(len(runs)), [run.started_at[5:16].replace("T", " ") + (f" {run.tag}" if run.tag else "")
                                     for run in runs], rotation=45, ha="right", fontsize=7)
    ax.set_xlim(-0.5, len(runs) - 0.5)
    ax.set_yscale("log")
    plain_time_axis(ax.yaxis)
    ax.set_ylabel("p50 latency")
    notes = [n for n, shown_ in (("red rings: regression confirmed", marked), ("dashed: step found", stepped))
             if shown_]
    ax.set_title(f"Latency per cell over {len(runs)} run(s)" + (f" ({'; '.join(notes)})" if notes else ""))
    ax.legend(fontsize=6, loc="center left", bbox_to_anchor=(1.0, 0.5))
    ax.grid(True, which="both", alpha=0.3)
    return _png(fig)


def latency_distribution(run: RunReport) -> Optional[bytes]:
    """Per model and setting: min, p50, p90, p99 and max of single invokes (round 0)."""
    # A box needs the median and both ends; a log that printed only a mean has none of them.
    cells = sorted((c for c in run.cells if c.status == "ok" and c.latency_us and c.round == 0
                    and None not in (c.latency_us.min, c.latency_us.p50, c.latency_us.max)),
                   key=lambda c: (c.device, c.variant or "", c.model, c.delegate or "", c.threads))[:24]
    if not cells:
        return None
    stats = [{"label": f"{c.model.removesuffix('.tflite')} ({c.variant or '?'}) {c.delegate or '-'} x{c.threads}",
              "whislo": c.latency_us.min / 1000, "q1": c.latency_us.p50 / 1000, "med": c.latency_us.p50 / 1000,
              "q3": (c.latency_us.p90 or c.latency_us.p50) / 1000,
              "whishi": (c.latency_us.p99 or c.latency_us.max) / 1000, "fliers": [c.latency_us.max / 1000]}
             for c in cells]
    fig, ax = plt.subplots(figsize=(10, 0.35 * len(stats) + 1.5))
    ax.bxp(stats, orientation="horizontal", showfliers=True)
    ax.set_xscale("log")
    plain_time_axis(ax.xaxis)
    ax.set_xlabel("latency (log scale): whiskers min..p99, box p50..p90, dot max")
    ax.set_title("Latency distribution per variant and setting")
    ax.tick_params(axis="y", labelsize=7)
    ax.grid(True, axis="x", which="both", alpha=0.3)
    return _png(fig)


def thread_scaling(run: RunReport) -> Optional[bytes]:
    """p50 against thread count, one panel per delegate, one line per device and model."""
    lines: dict[str, dict[tuple[str, str], dict[int, list[Cell]]]] = defaultdict(
        lambda: defaultdict(lambda: defaultdict(list)))
    for cell in run.cells:
        lines[cell.delegate or "-"][(cell.device, cell.model)][cell.threads].append(cell)
    if not any(len(by_threads) > 1 for per_delegate in lines.values() for by_threads in per_delegate.values()):
        return None
    delegates = sorted(lines)
    fig, axes = plt.subplots(1, len(delegates), figsize=(4.5 * len(delegates), 4), squeeze=False)
    for ax, delegate in zip(axes[0], delegates):
        for (device, model), by_threads in sorted(lines[delegate].items())[:MAX_SERIES]:
            medians = {n: _p50(cells) for n, cells in by_threads.items()}
            points = sorted((n, value) for n, value in medians.items() if value is not None)
            if points:
                ax.plot([n for n, _ in points], [v / 1000 for _, v in points], marker="o",
                        label=f"{device} {model.removesuffix('.tflite')}")
        ax.set_title(f"Thread scaling: {delegate}")
        ax.set_xlabel("threads")
        ax.set_ylabel("p50 (log scale)")
        ax.set_yscale("log")
        plain_time_axis(ax.yaxis)
        ax.grid(True, which="both", alpha=0.3)
        ax.legend(fontsize=6)
    return _png(fig)


def pareto_front(rows: Sequence[VariantRow], quality: str) -> list[VariantRow]:
    """Rows no other row beats on both latency (lower) and `quality` (higher), fastest first."""
    candidates = sorted((r for r in rows if r.p50_us is not None and getattr(r, quality) is not None),
                        key=lambda r: (r.p50_us, -getattr(r, quality)))
    front, best = [], float("-inf")
    for row in candidates:
        if getattr(row, quality) > best:
            front.append(row)
            best = getattr(row, quality)
    return front


def variant_tradeoff(comparisons: Sequence[FamilyComparison]) -> Optional[bytes]:
    """Latency vs accuracy (or agreement with the reference) vs size, per family and device."""
    panels = [c for c in comparisons if any(r.p50_us for r in c.rows)][:6]
    if not panels:
        return None
    fig, axes = plt.subplots(1, len(panels), figsize=(5 * len(panels), 4.2), squeeze=False)
    for ax, comparison in zip(axes[0], panels):
        quality = "top1" if any(r.top1 is not None for r in comparison.rows) else "top1_agreement"
        rows = [r for r in comparison.rows if r.p50_us is not None and getattr(r, quality) is not None]
        largest = max((r.size_bytes for r in rows), default=1)
        ax.scatter([r.p50_us / 1000 for r in rows], [getattr(r, quality) * 100 for r in rows],
                   s=[40 + 400 * r.size_bytes / largest for r in rows], alpha=0.5)
        for row in rows:
            ax.annotate(f"{row.variant or row.model} {row.delegate} x{row.threads}",
                        (row.p50_us / 1000, getattr(row, quality) * 100), fontsize=6)
        front = pareto_front(rows, quality)
        ax.plot([r.p50_us / 1000 for r in front], [getattr(r, quality) * 100 for r in front], color="red",
                linestyle="--", marker="*", markersize=10, label="Pareto front")
        ax.set_xscale("log")
        plain_time_axis(ax.xaxis)
        ax.set_xlabel("p50 (log scale); marker area: model size")
        ax.set_ylabel("top-1 (%)" if quality == "top1" else "top-1 agreement with reference (%)")
        ax.set_title(f"{comparison.family} on {comparison.device}", fontsize=9)
        ax.legend(fontsize=7)
        ax.grid(True, which="both", alpha=0.3)
    return _png(fig)
