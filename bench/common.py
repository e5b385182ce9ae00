"""What every benchmark shares: figures and their table, example models, local agents.

Each benchmark returns `Figure`s: a measured value, the yardstick it is compared with
(measured in the same run on the same machine), their ratio, the target and whether
it holds.
"""

from __future__ import annotations

import contextlib
import os
import resource
import subprocess
import tempfile
import time
import uuid
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from multiprocessing import get_context
from multiprocessing.connection import Connection
from pathlib import Path
from typing import Any, Optional

import psutil

from agent.wire.protocol import READY_PREFIX, CellDone, CellSpec
from agent.wire.records import Cell, Settings
from controller.client import AgentClient
from controller.local_agent import START_TIMEOUT_S, STOP_TIMEOUT_S, LocalAgent, read_line
from controller.models import ModelSource, load

REPO = Path(__file__).resolve().parent.parent
MODELS = REPO / "examples" / "models"
DIGITS = [MODELS / f"digits_cnn_{variant}.tflite" for variant in ("fp32", "fp16", "dynamic", "int8")]
DIGITS_INT8 = MODELS / "digits_cnn_int8.tflite"
MOBILENET = MODELS / "mobilenet_v2_035_96_fp32.tflite"


@dataclass
class Figure:
    """One measured figure next to its yardstick; `holds` is None for figures without a target.

    `paired_ratio` is set when value and yardstick were measured in interleaved repeats:
    the median of the per-repeat ratios, which cancels drift between repeats.
    """

    benchmark: str
    name: str
    value: float
    unit: str
    yardstick: str
    yardstick_value: float
    target: str = "-"
    holds: Optional[bool] = None
    paired_ratio: Optional[float] = None

    @property
    def ratio(self) -> Optional[float]:
        """The paired ratio, else value / yardstick; None when the yardstick is zero."""
        if self.paired_ratio is not None:
            return self.paired_ratio
        return self.value / self.yardstick_value if self.yardstick_value else None


def fmt(value: Optional[float], unit: str = "") -> str:
    """A number with three significant digits (no exponent below a million) and its unit."""
    if value is None:
        return "n/a"
    if value == 0 or 0.001 <= abs(value) < 1e6:
        text = f"{value:.3g}" if abs(value) < 1000 else f"{value:.0f}"
    else:
        text = f"{value:.2e}"
    return f"{text} {unit}".strip()


def report(figures: Sequence[Figure]) -> None:
    """Print figures one per line, as a benchmark produces them."""
    for f in figures:
        holds = "" if f.holds is None else f"  [{'holds' if f.holds else 'MISSED'}: {f.target}]"
        print(f"  {f.name}: {fmt(f.value, f.unit)} vs {f.yardstick} {fmt(f.yardstick_value, f.unit)}"
              f" (ratio {fmt(f.ratio)}){holds}", flush=True)


def table(figures: Sequence[Figure]) -> str:
    """All figures as one Markdown table: benchmark, figure, value, yardstick, ratio, target, holds."""
    header = ("benchmark", "figure", "value", "yardstick", "ratio", "target", "holds")
    rows = [(f.benchmark, f.name, fmt(f.value, f.unit), f"{f.yardstick}: {fmt(f.yardstick_value, f.unit)}",
             fmt(f.ratio), f.target, "-" if f.holds is None else ("yes" if f.holds else "NO"))
            for f in figures]
    widths = [max(len(row[i]) for row in (header, *rows)) for i in range(len(header))]

    def line(cells: Sequence[str]) -> str:
        return "| " + " | ".join(cell.ljust(width) for cell, width in zip(cells, widths)) + " |"

    return "\n".join([line(header), line(["-" * w for w in widths]), *(line(row) for row in rows)])


def self_cpu_seconds() -> float:
    """CPU time of this process so far: all its threads, not its children."""
    usage = resource.getrusage(resource.RUSAGE_SELF)
    return usage.ru_utime + usage.ru_stime


def process_cpu_seconds(process: psutil.Process) -> float:
    """CPU time of another process so far: all its threads, not its children (10 ms ticks)."""
    times = process.cpu_times()
    return times.user + times.system


@contextlib.contextmanager
def scratch(name: str) -> Iterator[Path]:
    """A temporary directory, removed afterwards; agents and databases live here, never in $HOME."""
    with tempfile.TemporaryDirectory(prefix=f"edgebench-{name}-") as path:
        yield Path(path)


@contextlib.contextmanager
def serving(command: Sequence[str], log: Path) -> Iterator[tuple[subprocess.Popen, str]]:
    """A server that prints the agent's ready line (endpoint) on stdout: (process, endpoint), stopped afterwards."""
    with open(log, "ab") as log_file:
        process = subprocess.Popen(list(command), stdout=subprocess.PIPE, stderr=log_file, stdin=subprocess.DEVNULL)
    try:
        line = read_line(process.stdout, START_TIMEOUT_S)
        if not line.startswith(READY_PREFIX):
            raise RuntimeError(f"{command[0]} did not start ({line.strip() or 'no output'}); see {log}")
        yield process, line[len(READY_PREFIX):].strip()
    finally:
        process.terminate()
        try:
            process.wait(STOP_TIMEOUT_S)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()
        process.stdout.close()


@contextlib.contextmanager
def connected_agent(data_dir: Path) -> Iterator[tuple[LocalAgent, AgentClient]]:
    """`agent serve` on a free loopback port with its own data directory, and a client that said hello."""
    with LocalAgent(data_dir) as agent, AgentClient(agent.endpoint) as client:
        client.hello()
        yield agent, client


def source(path: Path) -> ModelSource:
    """A model file read, hashed and classified the way `controller run` does it."""
    return load(Path(path))


def push(client: AgentClient, model: ModelSource) -> int:
    """Send a model unless the agent holds it; the bytes sent."""
    return client.push_model(str(model.path), model.sha256, model.size, model.name)


def cell_spec(model: ModelSource, delegate: str, threads: int, settings: Settings) -> CellSpec:
    """One cell of a job: the model (pushed before), delegate, thread count and run control."""
    return CellSpec(model_sha256=model.sha256, model_name=model.name, delegate=delegate,
                    threads=threads, settings=settings)


def run_cells(client: AgentClient, specs: list[CellSpec]) -> list[tuple[float, Cell]]:
    """Run one job on the agent; (arrival time on the perf_counter clock, cell) per cell in order."""
    arrived: dict[int, tuple[float, Cell]] = {}

    def on_cell(done: CellDone) -> None:
        arrived[done.index] = (time.perf_counter(), done.cell)

    client.run_job(f"bench-{uuid.uuid4().hex}", specs, on_cell=on_cell)
    cells = [arrived[index] for index in sorted(arrived)]
    failed = [cell.error for _, cell in cells if cell.status != "ok"]
    if len(cells) != len(specs) or failed:
        raise RuntimeError(f"agent job: {len(cells)} of {len(specs)} cells returned; failures: {failed[:3]}")
    return cells


@contextlib.contextmanager
def stderr_to(path: Path) -> Iterator[None]:
    """Send this process's stderr file descriptor (and that of children started meanwhile) to `path`."""
    saved = os.dup(2)
    with open(path, "ab") as log:
        os.dup2(log.fileno(), 2)
    try:
        yield
    finally:
        os.dup2(saved, 2)
        os.close(saved)


def _silence() -> None:
    """Send a worker's stdout and stderr (runtime banners, the LiteRT tool's report) to /dev/null."""
    devnull = os.open(os.devnull, os.O_WRONLY)
    os.dup2(devnull, 1)
    os.dup2(devnull, 2)


def _call(sender: Connection, function: Callable[..., Any], args: tuple) -> None:
    _silence()
    try:
        sender.send((True, function(*args)))
    except Exception as exc:  # noqa: BLE001 - reported to the parent, which raises it
        sender.send((False, f"{type(exc).__name__}: {exc}"))


def in_fresh_process(function: Callable[..., Any], *args: Any, timeout_s: float = 600.0) -> Any:
    """`function(*args)` in a newly spawned, silenced Python process; its return value.

    A fresh process per call, so no measurement inherits another's warm caches or threads.
    """
    ctx = get_context("spawn")
    receiver, sender = ctx.Pipe(duplex=False)
    process = ctx.Process(target=_call, args=(sender, function, args), daemon=True)
    process.start()
    sender.close()
    try:
        if not receiver.poll(timeout_s):
            raise TimeoutError(f"{function.__name__} took longer than {timeout_s:.0f} s")
        ok, value = receiver.recv()
    except EOFError:
        raise RuntimeError(f"{function.__name__}: worker process died") from None
    finally:
        process.join(10.0)
        if process.is_alive():
            process.kill()
            process.join()
        receiver.close()
    if not ok:
        raise RuntimeError(f"{function.__name__}: {value}")
    return value
