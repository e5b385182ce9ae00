"""Results as text: terminal tables of a run, a variant family and a regression check, and the
regression check as Markdown for a CI job summary."""

from __future__ import annotations

from typing import Optional

from rich.markup import escape
from rich.table import Table

from agent.wire.records import Cell
from agent.wire.text import printable
from controller.analysis import noise, opprofiles, steps
from controller.history import HistoryReport, StepFound
from controller.records import VERDICTS, CellComparison, FamilyComparison, FigureChange, RegressReport, RunReport
from controller.render.format import format_fraction, format_mb, format_us, interval_text, verdict_label


def sort_key(cell: Cell) -> tuple:
    """Rows that are compared sit next to each other: per model, delegate, threads."""
    return (cell.device, cell.model, cell.delegate or "", cell.threads, cell.round)


def results_table(report: RunReport) -> Table:
    """The run's cells as a table."""
    many_devices = len({c.device for c in report.cells}) > 1
    many_rounds = any(c.round for c in report.cells)
    table = Table(title=f"run {report.run_id}" + (f" ({report.tag})" if report.tag else ""))
    if many_devices:
        table.add_column("device")
    for name in ("model", "variant", "delegate", "threads"):
        table.add_column(name)
    if many_rounds:
        table.add_column("round", justify="right")
    accuracy = any(c.accuracy for c in report.cells)
    agreement = any(c.output_diff for c in report.cells)
    for name in ("p50", "p90", "spread", "n", "init", "peak MB", *(["top-1"] if accuracy else []),
                 *(["agree", "max |Δ|"] if agreement else []), "status"):
        table.add_column(name, justify="right" if name != "status" else "left")
    for cell in sorted(report.cells, key=sort_key):
        latency = cell.latency_us
        row: list[str] = [cell.device] if many_devices else []
        row += [cell.model, cell.variant or "-", cell.delegate or "-", str(cell.threads)]
        if many_rounds:
            row.append(str(cell.round))
        row += [
            centre_text(cell),
            format_us(latency.p90 if latency else None),
            *spread_and_count(cell),
            format_us(cell.init_ms * 1000 if cell.init_ms is not None else None),
            peak_text(cell),
        ]
        if accuracy:
            row.append(format_fraction(cell.accuracy.top1 if cell.accuracy else None))
        if agreement:
            diff = cell.output_diff
            row += [format_fraction(diff.top1_agreement if diff else None),
                    f"{diff.max_abs:.3g}" if diff else "-"]
        row.append(_status(cell))
        table.add_row(*row)
    return table


def centre_text(cell: Cell) -> str:
    """The p50 column: the median, or the mean marked as one where the source printed no median."""
    latency = cell.latency_us
    if latency is None or latency.centre is None:
        return "-"
    return format_us(latency.centre) + (" (mean)" if latency.centre_is_mean else "")


def peak_text(cell: Cell) -> str:
    """The peak memory column: the peak RSS, or where only a log's footprint was printed, its
    growth from the tool's start to the peak (`memory_mb.overall`), marked as growth."""
    memory = cell.memory_mb
    if memory is not None and memory.peak_rss is None and memory.overall is not None:
        return format_mb(memory.overall) + " (growth)"
    return format_mb(memory.peak_rss if memory else None)


def top_ops_tables(report: RunReport) -> list[Table]:
    """The slowest ops of every profiled cell, one section per cell (empty without profiles).

    Nodes that fell back to the CPU under a delegate are marked; a cell whose profile could
    not be measured shows why.
    """
    profiled = opprofiles.profiled_cells(report)
    missing = [c for c in report.cells if c.round == 0 and c.op_profile is None and c.status == "ok"
               and any(w.startswith("op profile") for w in c.warnings)]
    if not profiled and not missing:
        return []
    table = Table(title=f"slowest {opprofiles.TOP_NODES} ops per cell",
                  caption="Σ/p50: summed op times over the cell's own p50 (how far the profile can be trusted)")
    for name in ("cell", "node", "op", "ran on", "time/run", "share"):
        table.add_column(name, justify="right" if name in ("node", "time/run", "share") else "left")
    for cell in sorted(profiled, key=sort_key):
        profile = cell.op_profile
        label = (f"{opprofiles.cell_label(cell)}\n{profile.method}, Σ/p50 "
                 + ("-" if profile.reconciled is None else f"{profile.reconciled:.2f}"))
        for rank, node in enumerate(opprofiles.top_nodes(profile)):
            fell_back = cell.delegate != "cpu" and node.ran_on == "cpu"
            table.add_row(label if rank == 0 else "", f"#{node.index}", node.op_type,
                          f"[yellow]{node.ran_on} (fell back)[/yellow]" if fell_back else (node.ran_on or "?"),
                          format_us(node.avg_us), format_fraction(node.share),
                          end_section=rank == min(opprofiles.TOP_NODES, len(profile.nodes)) - 1)
        left = cell.delegate_coverage.not_delegated if cell.delegate_coverage else None
        if left:
            table.add_row("", "", f"[yellow]left to the CPU: {opprofiles.fallen_back_text(left)}[/yellow]",
                          end_section=True)
    for cell in sorted(missing, key=sort_key):
        reason = next(w for w in cell.warnings if w.startswith("op profile"))
        table.add_row(opprofiles.cell_label(cell), "", f"[yellow]{reason}[/yellow]", end_section=True)
    return [table]


def spread_and_count(cell: Cell) -> tuple[str, str]:
    """The interquartile spread of single invokes as a percentage of the median, and how many
    invokes were timed; `-` where unknown."""
    spread = cell.stability.spread if cell.stability else None
    count = cell.latency_us.count if cell.latency_us else None
    return format_fraction(spread), "-" if count is None else f"{count:,}"


def _status(cell: Cell) -> str:
    if cell.status != "ok":
        return f"[red]failed[/red]: {escape(printable(cell.error or ''))}"
    unstable = cell.unstable
    parity = cell.preprocess_parity is not None and not cell.preprocess_parity.ok
    state = cell.device_state
    throttled = state is not None and state.throttled
    hot = state is not None and state.cooled is False
    return ("ok" + (" (unstable)" if unstable else "") + (" [red](input mismatch)[/red]" if parity else "")
            + (" [red](throttled)[/red]" if throttled else "") + (" [yellow](started hot)[/yellow]" if hot else ""))


def variants_table(comparison: FamilyComparison) -> Table:
    """One family on one device, side by side, with the recommendation as caption."""
    table = Table(title=f"{comparison.family} on {comparison.device}"
                        + (f" (reference {comparison.reference})" if comparison.reference else ""),
                  caption=comparison.statement)
    for name in ("model", "variant", "delegate", "threads", "size", "p50", "p90", "init", "peak MB",
                 "top-1", "Δ top-1", "agree", "speed-up"):
        table.add_column(name, justify="left" if name in ("model", "variant", "delegate") else "right")
    pick = comparison.recommendation
    for row in comparison.rows:
        chosen = pick is not None and (row.model, row.delegate, row.threads) == (
            pick.model, pick.delegate, pick.threads)
        table.add_row(
            ("★ " if chosen else "") + row.model, row.variant or "-", row.delegate or "-", str(row.threads),
            f"{row.size_bytes / 1000:.0f} KB", format_us(row.p50_us), format_us(row.p90_us),
            format_us(row.init_ms * 1000 if row.init_ms is not None else None), format_mb(row.peak_mb),
            format_fraction(row.top1),
            "-" if row.top1_delta is None else f"{row.top1_delta * 100:+.1f} pt",
            format_fraction(row.top1_agreement),
            "-" if row.speedup is None else f"{row.speedup:.2f}x",
            style="bold" if chosen else None,
        )
    return table


_STYLE = {"REGRESSION": "bold red", "IMPROVEMENT": "green", "NO CHANGE": "", "INCONCLUSIVE": "yellow"}


def _change(figure: Optional[FigureChange], percent: bool = True) -> str:
    if figure is None or figure.change is None:
        return "-"
    return interval_text(figure) if percent else f"{-figure.change * 100:+.1f} pt"


def _latency_verdict(figure: FigureChange) -> str:
    """Latency's own verdict beside its change."""
    return f"{figure.verdict}: {_change(figure)}"


def _notes(cell: CellComparison) -> str:
    """The cell's flags, and what would decide an undecided latency."""
    reason = cell.latency_p50.reason if cell.latency_p50.verdict == "INCONCLUSIVE" else None
    return "; ".join([*cell.flags, *([reason] if reason else [])])


def _latency(figure: FigureChange) -> str:
    return f"{format_us(figure.baseline)} → {format_us(figure.candidate)}"


def _memory(figure: Optional[FigureChange]) -> str:
    if figure is None:
        return "-"
    change = "" if figure.change is None else f" ({figure.change:+.1%})"
    return f"{format_mb(figure.baseline)} → {format_mb(figure.candidate)} MB{change}"


def _rows(report: RegressReport) -> list[CellComparison]:
    order = {verdict: i for i, verdict in enumerate(VERDICTS)}
    return sorted(report.cells, key=lambda c: (order[c.verdict], c.device, c.model, c.delegate or "", c.threads))


def headline(report: RegressReport) -> str:
    """What the check found, in a few words, undecided cells never passed over."""
    if report.baseline is None:
        return "no baseline yet"
    if not report.cells:
        return "no shared cells: nothing was compared"
    undecided = report.counts.get("INCONCLUSIVE", 0)
    found = "regression found" if report.regressed else "no regression confirmed"
    return f"{found}, {undecided} of {len(report.cells)} cell(s) undecided" if undecided else (
        found if report.regressed else "no regression")


def _summary(report: RegressReport) -> str:
    if report.baseline is None:
        return report.note or "no baseline"
    counts = ", ".join(f"{n} {verdict.lower()}" for verdict, n in report.counts.items() if n)
    text = (f"baseline {report.baseline} vs candidate {report.candidate}: {counts or 'no shared cells'} "
            f"(latency threshold {report.threshold:.0%}, {report.confidence:.1%} intervals)")
    if report.disturbed_rounds:
        text += f"; {report.disturbed_rounds} disturbed round(s) left out"
    more = report.more_rounds
    if more is not None:
        text += (f"; more rounds: {more.device_seconds:.0f} device-s of {more.max_device_seconds:.0f}, "
                 f"{len(more.sessions)} session run(s)")
        if more.notes:
            text += "; " + "; ".join(more.notes)
    return text


def _change_heading(report: RegressReport) -> str:
    """The latency change column's heading, with the confidence of its intervals."""
    return f"change [{report.confidence * 100:.3g}% CI]"


def regress_table(report: RegressReport) -> Table:
    """The comparison as a terminal table, regressions first."""
    table = Table(title=f"regression check: {headline(report)}", caption=_summary(report))
    for name in ("verdict", "device", "model", "delegate", "threads", "p50", f"latency {_change_heading(report)}",
                 "rounds", "peak memory", "top-1", "notes"):
        table.add_column(name)
    for cell in _rows(report):
        latency = cell.latency_p50
        label = escape(verdict_label(cell))
        table.add_row(
            f"[{_STYLE[cell.verdict]}]{label}[/]" if _STYLE[cell.verdict] else label,
            cell.device, cell.model, cell.delegate or "-", str(cell.threads), _latency(latency),
            _latency_verdict(latency), f"{latency.rounds[0]}/{latency.rounds[1]}",
            _memory(cell.memory_peak),
            _change(cell.accuracy_top1, percent=False), escape(_notes(cell)))
    return table


def regress_markdown(report: RegressReport) -> str:
    """The comparison as Markdown for a CI job summary."""
    head = f"## edgebench: {headline(report)}\n\n"
    lines = [head + _summary(report) + "\n",
             f"| verdict | device | model | delegate | threads | p50 | latency {_change_heading(report)} "
             "| peak memory | top-1 | notes |",
             "|---|---|---|---|---|---|---|---|---|---|"]
    for cell in _rows(report):
        label = verdict_label(cell)
        verdict = f"**{label}**" if cell.verdict == "REGRESSION" else label
        lines.append(" | ".join([
            f"| {verdict}", cell.device, f"`{cell.model}`", cell.delegate or "-", str(cell.threads),
            _latency(cell.latency_p50), _latency_verdict(cell.latency_p50), _memory(cell.memory_peak),
            _change(cell.accuracy_top1, percent=False), _notes(cell) + " |"]))
    for title, keys in (("Only in the baseline", report.only_in_baseline),
                        ("Only in the candidate", report.only_in_candidate)):
        if keys:
            lines.append(f"\n{title}: " + ", ".join(keys))
    return "\n".join(lines) + "\n"


def step_text(step: StepFound) -> str:
    """`+21.3% [+15.0%, +27.9%] at run R (date)`: a step in one line."""
    return (f"{step.change:+.1%} [{step.low:+.1%}, {step.high:+.1%}] at run {step.run_id} "
            f"({step.started_at[:16].replace('T', ' ')}): {format_us(step.before_us)} → {format_us(step.after_us)}")


def history_table(report: HistoryReport) -> Table:
    """One row per cell: runs, first and latest value, steps found."""
    scope = f"tag {report.tag}" if report.tag else "all tags"
    table = Table(title=f"history: {report.runs} run(s), {scope}",
                  caption=f"steps: binary segmentation on run values (each run's noise at least its rounds'), "
                          f"at least {report.min_effect:.0%}, segments of {steps.MIN_SEGMENT}+ runs, t-test p <= "
                          f"{steps.ALPHA} over the positions tried; run-to-run noise: one run's spread "
                          f"({noise.BOUND_CONFIDENCE:.0%} upper bound), from {noise.MIN_RUNS}+ runs")
    for name in ("device", "model", "delegate", "threads", "runs", "first p50", "latest p50", "run-to-run noise",
                 "steps"):
        table.add_column(name)
    for cell in report.cells:
        spread = f"±{cell.noise.upper:.1%} ({cell.noise.runs} runs)" if cell.noise else "unknown (too few runs)"
        table.add_row(cell.device, cell.model, cell.delegate, str(cell.threads), str(len(cell.points)),
                      format_us(cell.points[0].p50_us), format_us(cell.points[-1].p50_us), spread,
                      "\n".join(map(step_text, cell.steps)) or "-")
    return table
