"""What a person sees: a progress bar per device while cells run, then the results table."""

from __future__ import annotations

from typing import Optional

from rich.console import Console
from rich.progress import (
    BarColumn,
    MofNCompleteColumn,
    Progress,
    TextColumn,
    TimeElapsedColumn,
)
from rich.table import Table

from agent.protocol import Cooling
from agent.schema import Cell, FamilyComparison, RunReport
from agent.stats import UNSTABLE_CV
from controller.runner import Observer


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
    return "-" if mb is None else f"{mb:.1f}"


def sort_key(cell: Cell) -> tuple:
    """Rows that are compared sit next to each other: per model, delegate, threads."""
    return (cell.device, cell.model, cell.delegate, cell.threads, cell.round)


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
    for name in ("p50", "p90", "init", "peak MB", *(["top-1"] if accuracy else []),
                 *(["agree", "max |Δ|"] if agreement else []), "status"):
        table.add_column(name, justify="right" if name != "status" else "left")
    for cell in sorted(report.cells, key=sort_key):
        latency = cell.latency_us
        row: list[str] = [cell.device] if many_devices else []
        row += [cell.model, cell.variant or "-", cell.delegate, str(cell.threads)]
        if many_rounds:
            row.append(str(cell.round))
        row += [
            format_us(latency.p50 if latency else None),
            format_us(latency.p90 if latency else None),
            format_us(cell.init_ms * 1000 if cell.init_ms is not None else None),
            format_mb(cell.memory_mb.peak_rss if cell.memory_mb else None),
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


def format_fraction(value: Optional[float]) -> str:
    return "-" if value is None else f"{value * 100:.1f}%"


def _status(cell: Cell) -> str:
    if cell.status != "ok":
        return f"[red]failed[/red]: {cell.error}"
    unstable = cell.cv is not None and cell.cv > UNSTABLE_CV
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
            ("★ " if chosen else "") + row.model, row.variant or "-", row.delegate, str(row.threads),
            f"{row.size_bytes / 1000:.0f} KB", format_us(row.p50_us), format_us(row.p90_us),
            format_us(row.init_ms * 1000 if row.init_ms is not None else None), format_mb(row.peak_mb),
            format_fraction(row.top1),
            "-" if row.top1_delta is None else f"{row.top1_delta * 100:+.1f} pt",
            format_fraction(row.top1_agreement),
            "-" if row.speedup is None else f"{row.speedup:.2f}x",
            style="bold" if chosen else None,
        )
    return table


class ProgressDisplay(Observer):
    """One progress bar per device on stderr; errors printed as they happen."""

    def __init__(self, console: Console):
        self.console = console
        self.progress = Progress(
            TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn(),
            TimeElapsedColumn(), TextColumn("{task.fields[last]}"),
            console=console, transient=False,
        )
        self._tasks: dict[str, int] = {}

    def __enter__(self) -> ProgressDisplay:
        self.progress.start()
        return self

    def __exit__(self, *exc) -> None:
        self.progress.stop()

    def device_started(self, device: str, cells: int) -> None:
        self._tasks[device] = self.progress.add_task(device, total=cells, last="")

    def cell_done(self, device: str, cell: Cell) -> None:
        task = self._tasks.get(device)
        if task is not None:
            self.progress.update(task, advance=1,
                                 last=f"{cell.model} {cell.delegate} x{cell.threads}")

    def cooling(self, device: str, message: Cooling) -> None:
        task = self._tasks.get(device)
        if task is not None:
            temp = "?" if message.temp_c is None else f"{message.temp_c:.1f}"
            self.progress.update(task, last=f"cooling: {temp} C, waiting for < {message.target_c:g} C "
                                            f"({message.remaining_s:.0f} s left)")

    def error(self, line: str) -> None:
        self.progress.console.print(f"[yellow]warning:[/yellow] {line}", highlight=False)
