"""Live progress while a run measures: one bar per device on stderr, errors as they happen.

`ProgressDisplay` satisfies the runner's `Observer` protocol structurally, so showing
progress never imports the run engine.
"""

from __future__ import annotations

from rich.console import Console
from rich.markup import escape
from rich.progress import (
    BarColumn,
    MofNCompleteColumn,
    Progress,
    TextColumn,
    TimeElapsedColumn,
)

from agent.wire.protocol import Cooling
from agent.wire.records import Cell
from agent.wire.text import printable


class ProgressDisplay:
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
        """Add the device's progress bar."""
        self._tasks[device] = self.progress.add_task(device, total=cells, last="")

    def cell_done(self, device: str, cell: Cell) -> None:
        """Advance the device's bar and show the cell just measured."""
        task = self._tasks.get(device)
        if task is not None:
            self.progress.update(task, advance=1,
                                 last=f"{cell.model} {cell.delegate or '-'} x{cell.threads}")

    def cooling(self, device: str, message: Cooling) -> None:
        """Show the cooldown wait on the device's bar."""
        task = self._tasks.get(device)
        if task is not None:
            temp = "?" if message.temp_c is None else f"{message.temp_c:.1f}"
            self.progress.update(task, last=f"cooling: {temp} C, waiting for < {message.target_c:g} C "
                                            f"({message.remaining_s:.0f} s left)")

    def device_finished(self, device: str) -> None:
        """Nothing to do: the device's bar stays where it stopped."""

    def error(self, line: str) -> None:
        """Print a warning line above the bars."""
        self.progress.console.print(f"[yellow]warning:[/yellow] {escape(printable(line))}", highlight=False)
