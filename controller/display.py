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

from agent.schema import Cell, RunReport
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
    for name in ("p50", "p90", "init", "peak MB", "status"):
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
            "ok" + (" (unstable)" if cell.warnings else "") if cell.status == "ok"
            else f"[red]failed[/red]: {cell.error}",
        ]
        table.add_row(*row)
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

    def error(self, line: str) -> None:
        self.progress.console.print(f"[yellow]warning:[/yellow] {line}", highlight=False)
