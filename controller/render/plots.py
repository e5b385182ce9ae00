"""The report's figures, drawn with matplotlib.

Each function takes plain records and returns a `Chart`: the figure and the caption printed
under it, which says what is drawn and what is not (a figure the source did not give is left
out and named, never made up); or None when the data has nothing to show (a run with one
thread count has no thread scaling). Times are plotted in microseconds and labelled in the
units `format_us` writes in the tables.
"""

from __future__ import annotations

import io
import math
from collections import defaultdict
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Optional

import matplotlib

matplotlib.use("Agg")  # no display: figures are rendered to files

import matplotlib.pyplot as plt
from matplotlib.figure import Figure
from matplotlib.patches import Patch
from matplotlib.ticker import FuncFormatter, LogLocator, MaxNLocator, NullFormatter

from agent.wire.records import Cell, LatencyStats
from controller.analysis.stats import CellKey, cell_key, median_or_none
from controller.history import CellHistory
from controller.records import FamilyComparison, RunReport, VariantRow
from controller.render.format import format_us

WIDTH = 13.5  # inches: 1296 px at 96 dpi, shown unscaled on a page 1400 px wide
COLUMNS = 4
MAX_PANELS = 16  # trend panels: a 4 x 4 grid still reads at a glance
MAX_BOXES = 32
MAX_SERIES = 12
MAX_FAMILIES = 6
# Over more than this factor a time axis is log-scaled, with as many labels as fit.
LOG_RATIO = 5.0
LINE, STEP, RING, MEDIAN = "#1f5fa8", "#7a3e9d", "#d62728", "#0b2a55"


@dataclass
class Chart:
    """A figure and the sentence printed under it: what is drawn, what was left out and why."""

    figure: Figure
    caption: str

    def png(self) -> bytes:
        """The figure as PNG bytes; the figure is closed."""
        return _png(self.figure)


def _png(fig) -> bytes:
    buffer = io.BytesIO()
    fig.tight_layout()
    fig.savefig(buffer, format="png", dpi=96)
    plt.close(fig)
    return buffer.getvalue()


def _p50(cells: Sequence[Cell]) -> Optional[float]:
    return median_or_none([c.latency_us.p50 for c in cells
                           if c.status == "ok" and c.latency_us and c.latency_us.p50 is not None])


def time_label(us: float, _position: object = None) -> str:
    """A tick value in microseconds as `600 µs`, `1.5 ms` or `2 s`: the unit `format_us` picks,
    without its trailing zeros."""
    if us <= 0:
        return "0" if us == 0 else ""
    number, unit = format_us(us).split(" ")
    if "." in number:
        number = number.rstrip("0").rstrip(".")
    return f"{number} {unit}"


def time_axis(ax, which: str, values: Sequence[float]) -> None:
    """Times in microseconds on the `x` or `y` axis of `ax`, labelled as plain times.

    Over more than a factor of LOG_RATIO the axis is log-scaled and labelled at 1-2-5 in each
    decade, 1-3 over a wider range and decades only beyond, so that labels never run into
    each other; a narrower range stays linear (a log axis there would show no labelled tick).
    """
    axis = ax.xaxis if which == "x" else ax.yaxis
    low, high = min(values), max(values)
    if low > 0 and high > LOG_RATIO * low:
        (ax.set_xscale if which == "x" else ax.set_yscale)("log")
        decades = math.log10(high / low)
        subs = (1.0, 2.0, 5.0) if decades <= 2.5 else (1.0, 3.0) if decades <= 4.5 else (1.0,)
        axis.set_major_locator(LogLocator(base=10, subs=subs))
        axis.set_minor_locator(LogLocator(base=10, subs=tuple(float(n) for n in range(2, 10))))
        axis.set_minor_formatter(NullFormatter())
    else:
        axis.set_major_locator(MaxNLocator(nbins=4, steps=[1, 2, 5, 10]))
    axis.set_major_formatter(FuncFormatter(time_label))


def _key_name(key: CellKey, many_devices: bool) -> str:
    """`model delegate xN`, the device first when the run has several (the file name usually
    says the variant; the cells table lists it)."""
    device, model, delegate, threads = key
    return (f"{device} " if many_devices else "") + f"{model.removesuffix('.tflite')} {delegate or '-'} x{threads}"


def _left_out(names: Sequence[str]) -> str:
    return f"; left out: {', '.join(names)}" if names else ""


def latency_trend(runs: Sequence[RunReport], regressed: dict[str, set[CellKey]],
                  cells: Sequence[CellHistory]) -> Optional[Chart]:
    """Small multiples of the history: one panel per cell (at most MAX_PANELS), each on its own
    scale, its p50 run by run (oldest first) as a line in the band of the run's rounds,
    confirmed regressions ringed and steps found drawn as dashed lines."""
    if len(runs) < 2 or not cells:
        return None  # one run is no history
    # A panel per cell rather than per model: verdicts and steps belong to a cell, and on its
    # own scale a cell shows its own noise and steps, which a neighbour three times slower
    # in a shared panel would flatten.
    shown = _trend_cells(cells, regressed)
    position = {run.run_id: i for i, run in enumerate(runs)}
    columns = min(COLUMNS, len(shown))
    rows = math.ceil(len(shown) / columns)
    fig, axes = plt.subplots(rows, columns, figsize=(max(6.5, WIDTH * columns / COLUMNS), 2.2 * rows + 1.0),
                             sharex=True, squeeze=False)
    many_devices = len({c.device for c in cells}) > 1
    marks: set[str] = set()
    for index, (ax, cell) in enumerate(zip(axes.flat, shown)):
        marks |= _trend_panel(ax, cell, position, regressed)
        ax.set_title(_key_name(cell.key, many_devices), fontsize=9)
        # Above a gap in a short last row a panel carries the run labels itself.
        ax.tick_params(axis="x", labelbottom=index + columns >= len(shown))
    for ax in axes.flat[len(shown):]:
        ax.set_visible(False)
    _run_axis(axes.flat[0], runs)
    legend = ["line: the run's p50", "band: its rounds, lowest to highest",
              *(["red ring: regression confirmed"] if "regression" in marks else []),
              *(["dashed: step found"] if "step" in marks else [])]
    fig.suptitle(f"p50 per cell over {len(runs)} run(s), oldest first ({'; '.join(legend)})", fontsize=10)
    left_out = [_key_name(c.key, many_devices) for c in cells if c not in shown]
    caption = (f"{len(shown)} of {len(cells)} cell(s), one panel each on its own scale: the cell's p50 in each run "
               "(the median over the run's undisturbed rounds), in a band from the lowest to the highest round "
               "p50 of that run (a one-round run has no band)"
               + ("; red rings: regressions a check confirmed" if "regression" in marks else "")
               + ("; dashed lines: steps found in the history" if "step" in marks else "")
               + (". Cells with a regression or a step get a panel first" if left_out else "")
               + _left_out(left_out) + ".")
    return Chart(fig, caption)


def _trend_cells(cells: Sequence[CellHistory], regressed: dict[str, set[CellKey]]) -> list[CellHistory]:
    """The cells that get a panel, in key order: with more than MAX_PANELS, those with a
    confirmed regression or a step come first."""
    flagged = set().union(*regressed.values()) if regressed else set()
    ranked = sorted(cells, key=lambda c: (not (c.steps or c.key in flagged), c.key))
    return sorted(ranked[:MAX_PANELS], key=lambda c: c.key)


def _trend_panel(ax, cell: CellHistory, position: dict[str, int], regressed: dict[str, set[CellKey]]) -> set[str]:
    """One cell's history; returns the marks drawn (`regression`, `step`) for the legend."""
    points = [p for p in cell.points if p.run_id in position]
    xs = [position[p.run_id] for p in points]
    values = [p.p50_us for p in points]
    lows = [min(p.round_p50_us or [p.p50_us]) for p in points]
    highs = [max(p.round_p50_us or [p.p50_us]) for p in points]
    ax.fill_between(xs, lows, highs, color=LINE, alpha=0.18, linewidth=0)
    ax.plot(xs, values, color=LINE, marker="o", markersize=3, linewidth=1.2)
    marks = set()
    bad = [(x, v) for x, v, p in zip(xs, values, points) if cell.key in regressed.get(p.run_id, set())]
    if bad:
        marks.add("regression")
        ax.scatter([x for x, _ in bad], [v for _, v in bad], s=110, facecolors="none", edgecolors=RING,
                   linewidths=1.8, zorder=5)
    for step in cell.steps:
        if step.run_id in position:
            marks.add("step")
            x = position[step.run_id] - 0.5
            ax.axvline(x, color=STEP, linestyle="--", linewidth=1)
            # The label sits on the side of the line with more room.
            right = x < len(position) / 2
            ax.text(x, 0.96, f" step {step.change:+.0%} " if right else f"step {step.change:+.0%} ",
                    transform=ax.get_xaxis_transform(), ha="left" if right else "right", va="top", fontsize=7,
                    color=STEP)
    _trend_limits(ax, lows + highs)
    time_axis(ax, "y", ax.get_ylim())
    ax.grid(True, alpha=0.3)
    return marks


def _trend_limits(ax, values: list[float]) -> None:
    """At least ±10 % around the middle value: a quiet history looks quiet instead of having
    its noise stretched over the whole panel."""
    middle = median_or_none(values)
    low, high = min(*values, middle * 0.9), max(*values, middle * 1.1)
    pad = 0.08 * (high - low)
    ax.set_ylim(low - pad, high + pad)


def _run_labels(runs: Sequence[RunReport]) -> list[str]:
    """Each run's start as its date (`12-04`), or with the time where dates repeat (`12-04 02:30`),
    or the seconds too where minutes repeat: never two runs under one label."""
    starts = [run.started_at.replace("T", " ") for run in runs]
    for end in (10, 16):
        labels = [start[5:end] for start in starts]
        if len(set(labels)) == len(labels):
            return labels
    return [start[5:19] for start in starts]


def _run_axis(ax, runs: Sequence[RunReport]) -> None:
    """Runs at 0, 1, ... (shared by every panel), at most five of them labelled with their start
    time at even steps, the first and the last always."""
    labels = _run_labels(runs)
    last = len(runs) - 1
    step = max(1, math.ceil(last / 4))
    ticks = list(range(0, last, step))
    if len(ticks) > 1 and last - ticks[-1] <= step / 2:
        ticks.pop()  # too close to the last run's label
    ticks.append(last)
    ax.set_xlim(-0.5, len(runs) - 0.5)
    ax.set_xticks(ticks, [labels[i] for i in ticks])
    for shared in ax.get_shared_x_axes().get_siblings(ax):
        shared.tick_params(axis="x", labelsize=7, labelrotation=30)


def latency_distribution(run: RunReport) -> Optional[Chart]:
    """Single invokes of each cell's first round as standard box plots: the box from p25 to
    p75, a line at the median, whiskers at p5 and p95. A cell whose source printed fewer
    figures (an imported log) shows only what it printed, and the caption names it."""
    cells = sorted((c for c in run.cells if c.status == "ok" and c.round == 0 and c.latency_us
                    and c.latency_us.centre is not None),
                   key=lambda c: (c.device, c.model, c.delegate or "", c.threads))
    if not cells:
        return None
    shown = cells[:MAX_BOXES]
    many_devices = len({c.device for c in cells}) > 1
    fig, ax = plt.subplots(figsize=(WIDTH, 0.3 * len(shown) + 1.6))
    full = [(i, c) for i, c in enumerate(shown) if _box(c.latency_us) is not None]
    colors = _delegate_colors([c for _, c in full])
    if full:
        drawn = ax.bxp([_box(c.latency_us) for _, c in full], positions=[i for i, _ in full],
                       orientation="horizontal", showfliers=False, widths=0.6, patch_artist=True,
                       medianprops={"color": MEDIAN, "linewidth": 2})
        for box, (_, cell) in zip(drawn["boxes"], full):
            box.set_facecolor(colors[cell.delegate or "-"])
    partial = [f"{_key_name(cell_key(c), many_devices)} ({_partial_marks(ax, i, c.latency_us)})"
               for i, c in enumerate(shown) if _box(c.latency_us) is None]
    ax.set_yticks(range(len(shown)), [_key_name(cell_key(c), many_devices) for c in shown], fontsize=8)
    ax.set_ylim(len(shown) - 0.5, -0.5)
    for i in range(1, len(shown)):  # a rule between models: each model's settings read as a group
        if (shown[i].device, shown[i].model) != (shown[i - 1].device, shown[i - 1].model):
            ax.axhline(i - 0.5, color="#bbbbbb", linewidth=0.8)
    time_axis(ax, "x", [v for c in shown for v in _known(c.latency_us)])
    ax.set_xlabel("latency of single invokes")
    if colors:
        ax.legend(handles=[Patch(facecolor=color, edgecolor="black", label=delegate)
                           for delegate, color in colors.items()], title="delegate", fontsize=8,
                  loc="upper left", bbox_to_anchor=(1.01, 1.0))
    ax.grid(True, axis="x", which="major", alpha=0.3)
    ax.set_title("Single invokes of each cell's first round: box p25..p75, line at the median, whiskers p5..p95",
                 fontsize=10)
    caption = ("Single invokes of each cell's first round (round 0): the box spans p25 to p75, the line in it is "
               "the median, the whiskers reach p5 and p95"
               + (f". The source gave no quartiles for {len(partial)} cell(s), drawn with what it gave: "
                  + "; ".join(partial) if partial else "")
               + _left_out([_key_name(cell_key(c), many_devices) for c in cells[MAX_BOXES:]]) + ".")
    return Chart(fig, caption)


def _box(latency: LatencyStats) -> Optional[dict]:
    """The box `Axes.bxp` draws, or None when any of p5, p25, median, p75, p95 is unknown."""
    figures = (latency.p5, latency.p25, latency.p50, latency.p75, latency.p95)
    if None in figures:
        return None
    p5, p25, p50, p75, p95 = figures
    return {"whislo": p5, "q1": p25, "med": p50, "q3": p75, "whishi": p95, "fliers": []}


def _partial_marks(ax, y: int, latency: LatencyStats) -> str:
    """What a source without quartiles printed, and only that: p5..p95 as a plain line where
    both are known, the median as a bar or else the mean as a diamond. Returns what was drawn."""
    drawn = []
    if latency.p5 is not None and latency.p95 is not None:
        ax.plot([latency.p5, latency.p95], [y, y], color="black", linewidth=1)
        drawn.append("p5..p95 as a line")
    if latency.p50 is not None:
        ax.plot([latency.p50], [y], marker="|", markersize=14, markeredgewidth=2, color=MEDIAN)
        drawn.append("the median as a bar")
    else:
        ax.plot([latency.mean], [y], marker="D", markersize=6, color=MEDIAN)
        drawn.append("the mean as a diamond: no median was printed")
    return ", ".join(drawn)


def _known(latency: LatencyStats) -> list[float]:
    """The figures the distribution draws for a cell, those that exist."""
    return [v for v in (latency.p5, latency.p25, latency.centre, latency.p75, latency.p95) if v is not None]


def _delegate_colors(cells: Sequence[Cell]) -> dict[str, str]:
    palette = ["#9ec5ea", "#f5c48a", "#a8d5a2", "#d9b3e6", "#f2a7a7", "#cccccc"]
    delegates = sorted({c.delegate or "-" for c in cells})
    return {delegate: palette[i % len(palette)] for i, delegate in enumerate(delegates)}


def thread_scaling(run: RunReport) -> Optional[Chart]:
    """p50 against thread count, one panel per delegate, one line per device and model;
    threads ticked at the counts measured."""
    lines: dict[str, dict[tuple[str, str], dict[int, list[Cell]]]] = defaultdict(
        lambda: defaultdict(lambda: defaultdict(list)))
    for cell in run.cells:
        lines[cell.delegate or "-"][(cell.device, cell.model)][cell.threads].append(cell)
    if not any(len(by_threads) > 1 for per_delegate in lines.values() for by_threads in per_delegate.values()):
        return None
    delegates = sorted(lines)
    series = sorted({key for per_delegate in lines.values() for key in per_delegate})
    shown = series[:MAX_SERIES]
    many_devices = len({device for device, _ in series}) > 1
    # One color per device and model in every panel, so one legend serves them all.
    colors = {key: f"C{i % 10}" for i, key in enumerate(shown)}
    fig, axes = plt.subplots(1, len(delegates), figsize=(min(WIDTH, 4.2 * len(delegates) + 3), 4.2),
                             sharey=True, squeeze=False)
    values = []
    for ax, delegate in zip(axes[0], delegates):
        for key in shown:
            points = sorted((n, p50) for n, cells in lines[delegate].get(key, {}).items()
                            if (p50 := _p50(cells)) is not None)
            if points:
                values += [v for _, v in points]
                ax.plot([n for n, _ in points], [v for _, v in points], marker="o", color=colors[key],
                        label=(f"{key[0]} " if many_devices else "") + key[1].removesuffix(".tflite"))
        counts = sorted({n for by_threads in lines[delegate].values() for n in by_threads})
        ax.set_xticks(counts, [str(n) for n in counts])  # the counts measured, never 1.5 threads
        ax.set_xlim(counts[0] - 0.3, counts[-1] + 0.3)
        ax.set_title(delegate, fontsize=10)
        ax.set_xlabel("threads")
        ax.grid(True, which="major", alpha=0.3)
    if not values:
        plt.close(fig)
        return None
    time_axis(axes[0][0], "y", values)
    axes[0][0].set_ylabel("p50 (median over rounds)")
    axes[0][-1].legend(fontsize=8, loc="center left", bbox_to_anchor=(1.02, 0.5))
    missing = [f"{device} {model}" for device, model in series
               if not any(_p50(cells) is not None for per_delegate in lines.values()
                          for cells in per_delegate.get((device, model), {}).values())]
    caption = ("Each model's p50 (the median over its rounds) at each thread count measured, one panel per "
               "delegate" + (f"; no median to draw for {', '.join(missing)}" if missing else "")
               + _left_out([f"{device} {model}" for device, model in series[MAX_SERIES:]]) + ".")
    return Chart(fig, caption)


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


def variant_tradeoff(comparisons: Sequence[FamilyComparison]) -> Optional[Chart]:
    """Per variant family and device: latency against top-1 (or agreement with the reference)
    and size where that quality differs between the variants, else latency against size
    only, the caption saying why. A quality axis where every variant scores the same, or where
    nothing was scored, would show a flat line at a number that says nothing."""
    panels = [c for c in comparisons if any(r.p50_us for r in c.rows)]
    shown = panels[:MAX_FAMILIES]
    if not shown:
        return None
    columns = min(2, len(shown))
    rows = math.ceil(len(shown) / columns)
    fig, axes = plt.subplots(rows, columns, figsize=(WIDTH if columns > 1 else 8.5, 4.2 * rows), squeeze=False)
    notes = []
    for ax, comparison in zip(axes.flat, shown):
        quality = _quality(comparison)
        if quality is None:
            _size_panel(ax, comparison)
        else:
            _quality_panel(ax, comparison, quality)
        notes.append(_variant_note(comparison, quality))
    for ax in axes.flat[len(shown):]:
        ax.set_visible(False)
    caption = ". ".join(notes) + _left_out([f"{c.family} on {c.device}" for c in panels[MAX_FAMILIES:]]) + "."
    return Chart(fig, caption)


QUALITY_WORDS = {"top1": "top-1", "top1_agreement": "top-1 agreement with the reference"}


def _quality(comparison: FamilyComparison) -> Optional[str]:
    """The quality the family's panel plots latency against: top-1 on the dataset, else top-1
    agreement with the reference, whichever differs between the rows; None for neither."""
    for quality in QUALITY_WORDS:
        scores = {getattr(r, quality) for r in comparison.rows if r.p50_us is not None} - {None}
        if len(scores) > 1:
            return quality
    return None


def _variant_note(comparison: FamilyComparison, quality: Optional[str]) -> str:
    """What the family's panel shows, and why it shows no quality axis when it does not."""
    name = f"{comparison.family} on {comparison.device}"
    rows = [r for r in comparison.rows if r.p50_us is not None]
    if quality is None:
        return f"{name}: {_no_quality(rows, comparison.reference)}, so p50 is plotted against the variants' sizes only"
    basis = ("top-1 on the dataset" if quality == "top1" else
             f"top-1 agreement with {comparison.reference} (no accuracy was measured: no dataset)")
    unscored = sum(getattr(r, quality) is None for r in rows)
    return (f"{name}: p50 against {basis}; marker area: model size; dashed: the Pareto front"
            + (f"; {unscored} of {len(rows)} row(s) have no score and are not drawn" if unscored else ""))


def _no_quality(rows: list[VariantRow], reference: Optional[str]) -> str:
    """Why a family's panel plots no quality: every score is the same, or there is none.
    The reference's agreement with itself is no measurement and is not counted."""
    top1 = [r.top1 for r in rows if r.top1 is not None]
    if top1:
        scope = ("every variant scores" if len(top1) == len(rows)
                 else f"only {len(top1)} of {len(rows)} rows have a top-1:")
        return f"{scope} {top1[0]:.1%} top-1"
    others = [r for r in rows if r.model != reference]
    agreement = [r.top1_agreement for r in others if r.top1_agreement is not None]
    if agreement:
        scope = ("every variant agrees" if len(agreement) == len(others)
                 else f"only {len(agreement)} of {len(others)} rows have an agreement with the reference: each agrees")
        return (f"no accuracy was measured (no dataset) and {scope} with {reference} on {agreement[0]:.1%} "
                "of top-1 answers")
    return "no accuracy was measured (no dataset) and no agreement with a reference"


def _quality_panel(ax, comparison: FamilyComparison, quality: str) -> None:
    """p50 against the quality, one color per variant, marker area by size, the Pareto front dashed."""
    rows = [r for r in comparison.rows if r.p50_us is not None and getattr(r, quality) is not None]
    largest = max(r.size_bytes for r in rows)
    for i, model in enumerate(dict.fromkeys(r.model for r in sorted(rows, key=lambda r: -r.size_bytes))):
        mine = [r for r in rows if r.model == model]
        ax.scatter([r.p50_us for r in mine], [getattr(r, quality) * 100 for r in mine], color=f"C{i}", alpha=0.6,
                   s=[40 + 300 * r.size_bytes / largest for r in mine], label=_variant_name(mine[0]))
    front = pareto_front(rows, quality)
    ax.plot([r.p50_us for r in front], [getattr(r, quality) * 100 for r in front], color=RING, linestyle="--",
            linewidth=1, label="Pareto front")
    for row in front:
        ax.annotate(f"{row.delegate or '-'} x{row.threads}", (row.p50_us, getattr(row, quality) * 100), fontsize=7,
                    xytext=(4, 4), textcoords="offset points")
    time_axis(ax, "x", [r.p50_us for r in rows])
    ax.set_xlabel("p50")
    ax.yaxis.set_major_formatter(FuncFormatter(lambda v, _position: f"{v:g} %"))
    ax.set_ylabel(QUALITY_WORDS[quality])
    ax.set_title(f"{comparison.family} on {comparison.device}: latency, {QUALITY_WORDS[quality]} and size",
                 fontsize=10)
    legend = ax.legend(fontsize=7, loc="upper left", bbox_to_anchor=(1.01, 1.0))
    for handle in legend.legend_handles[:-1]:  # one marker size in the legend: the colors name the variants
        handle.set_sizes([40])
    ax.margins(y=0.15)  # room for the labels of the top points
    ax.grid(True, which="major", alpha=0.3)


def _size_panel(ax, comparison: FamilyComparison) -> None:
    """Without a quality that differs: one row per variant, largest file on top, its p50 at each
    setting as a marker."""
    rows = [r for r in comparison.rows if r.p50_us is not None]
    models = list(dict.fromkeys(r.model for r in sorted(rows, key=lambda r: (-r.size_bytes, r.model))))
    settings = sorted({(r.delegate or "-", r.threads) for r in rows})
    for i, setting in enumerate(settings):
        mine = [r for r in rows if (r.delegate or "-", r.threads) == setting]
        ax.scatter([r.p50_us for r in mine], [models.index(r.model) for r in mine], color=f"C{i}",
                   marker="osD^v<>p"[i % 8], s=45, zorder=3, label=f"{setting[0]} x{setting[1]}")
    first = {r.model: r for r in reversed(rows)}
    ax.set_yticks(range(len(models)), [_variant_name(first[m]) for m in models], fontsize=8)
    ax.set_ylim(len(models) - 0.5, -0.5)
    time_axis(ax, "x", [r.p50_us for r in rows])
    ax.set_xlabel("p50")
    ax.set_title(f"{comparison.family} on {comparison.device}: latency and size", fontsize=10)
    ax.legend(title="setting", fontsize=7, loc="upper left", bbox_to_anchor=(1.01, 1.0))
    ax.grid(True, which="major", alpha=0.3)


def _variant_name(row: VariantRow) -> str:
    """`int8 · 46 KB`: the variant (or model) and its file size, as the variants table gives it."""
    return f"{row.variant or row.model.removesuffix('.tflite')} · {row.size_bytes / 1000:.0f} KB"
