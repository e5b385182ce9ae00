"""Per-cell cost: what running a cell costs beyond the time spent measuring it.

A matrix of short cells (30, or 90 in a full run: the four digits models, XNNPACK on and
off, one thread, one warmup run, 1-5 timed runs, no minimum time) runs

- through a local agent, as one job (the agent as shipped: each cell in a child forked
  from a fork server that has the runtime imported), the per-cell wall time taken
  between consecutive results. Once started as `python -m agent` (as the systemd unit and
  `controller run --device local` do), once as the `agent serve` console script;
- through `CellRunner.run` directly, alternating cell by cell between "after" (the
  agent's fork server) and "before" (a freshly spawned Python process per cell, which
  imports the runtime every time), so the two differ in nothing else.

A cell's added cost is its wall time minus the time inside its measurement loops
(first inference + warmup runs x their mean + timed runs x their mean).
"""

from __future__ import annotations

import sys
import time
from itertools import cycle, islice
from multiprocessing import get_context
from pathlib import Path
from statistics import median

from common import DIGITS, Figure, cell_spec, push, run_cells, scratch, serving, source, stderr_to

from agent.isolation import CellRunner
from agent.jobs import cell_template
from agent.runtime import require
from agent.wire.protocol import CellSpec
from agent.wire.records import Cell, Settings
from controller.client import AgentClient
from controller.local_agent import LocalAgent
from controller.models import ModelSource

NAME = "cell_cost"
TARGET_MS = 50.0
# The `agent` command pip installed next to this interpreter.
CONSOLE_SCRIPT = Path(sys.executable).with_name("agent")


def matrix(models: list[ModelSource], cells: int) -> list[CellSpec]:
    """Short cells cycling through the models, XNNPACK on and off, and 1-5 timed runs."""
    combos = [(model, delegate) for model in models for delegate in ("xnnpack", "cpu")]
    return [cell_spec(model, delegate, 1, Settings(warmup_runs=1, warmup_min_secs=0.0, num_runs=1 + index % 5,
                                                   min_secs=0.0, max_secs=10.0))
            for index, (model, delegate) in enumerate(islice(cycle(combos), cells))]


def loop_seconds(cell: Cell) -> float:
    """Seconds spent inside the cell's measurement loops."""
    return (cell.first_inference_us + cell.warmup.count * cell.warmup.mean_us
            + cell.latency_us.count * cell.latency_us.mean) / 1e6


def through_agent(endpoint: str, models: list[ModelSource], specs: list[CellSpec]) -> tuple[list[float], list[float]]:
    """(wall seconds, loop seconds) per cell of one agent job; wall runs from the previous result."""
    with AgentClient(endpoint) as client:
        client.hello()
        for model in models:
            push(client, model)
        start = time.perf_counter()
        results = run_cells(client, specs)
    arrivals = [start] + [arrived for arrived, _ in results]
    return ([later - earlier for earlier, later in zip(arrivals, arrivals[1:])],
            [loop_seconds(cell) for _, cell in results])


def added_ms(walls: list[float], loops: list[float]) -> float:
    """Median of wall minus loop time, in milliseconds."""
    return median([wall - loop for wall, loop in zip(walls, loops)]) * 1e3


def timed_run(runner: CellRunner, model: ModelSource, spec: CellSpec) -> tuple[float, float]:
    """(wall seconds, loop seconds) of one cell run by `runner`."""
    start = time.perf_counter()
    cell, _ = runner.run(str(model.path), spec, cell_template(spec, model.size))
    wall = time.perf_counter() - start
    if cell.status != "ok":
        raise RuntimeError(f"cell {spec.model_name} {spec.delegate} failed: {cell.error}")
    return wall, loop_seconds(cell)


def run(quick: bool) -> list[Figure]:
    """Median added cost per cell through the agent (both ways of starting it), and CellRunner before/after."""
    models = [source(path) for path in DIGITS]
    by_sha = {model.sha256: model for model in models}
    specs = matrix(models, 30 if quick else 90)
    runtime = require()
    after = CellRunner(runtime)
    before = CellRunner(runtime)
    before._ctx = get_context("spawn")  # a new interpreter per cell, as before the fork server
    runs: dict[str, list[tuple[float, float]]] = {"before": [], "after": []}
    console = None
    with scratch(NAME) as tmp:
        with LocalAgent(tmp / "module") as agent:
            module = through_agent(agent.endpoint, models, specs)
        if CONSOLE_SCRIPT.exists():
            script = [str(CONSOLE_SCRIPT), "serve", "--bind", "tcp://127.0.0.1:*", "--insecure",
                      "--data-dir", str(tmp / "script")]
            with serving(script, tmp / "script.log") as (_, endpoint):
                console = through_agent(endpoint, models, specs)
        else:
            print(f"  no console script at {CONSOLE_SCRIPT}: `agent serve` not measured", flush=True)
        with stderr_to(tmp / "cells.log"):  # the runtime's banner, once per cell
            for spec in specs:
                model = by_sha[spec.model_sha256]
                runs["after"].append(timed_run(after, model, spec))
                runs["before"].append(timed_run(before, model, spec))
    agent_added = added_ms(*module)
    added = {name: added_ms(*zip(*pairs)) for name, pairs in runs.items()}
    print(f"  agent: {sum(module[0]):.2f} s for {len(specs)} cells; CellRunner added per cell: "
          f"after {added['after']:.1f} ms, before {added['before']:.1f} ms", flush=True)
    figures = [
        Figure(NAME, f"agent (python -m agent): median added cost per cell ({len(specs)} cells)", agent_added, "ms",
               "median time in measurement loops", median(module[1]) * 1e3, f"<= {TARGET_MS:g} ms",
               agent_added <= TARGET_MS),
        Figure(NAME, f"agent (python -m agent): wall time of the {len(specs)}-cell matrix", sum(module[0]), "s",
               "sum of time in measurement loops", sum(module[1])),
    ]
    if console is not None:
        script_added = added_ms(*console)
        figures.append(Figure(NAME, "agent (`agent serve` console script): median added cost per cell", script_added,
                              "ms", "python -m agent", agent_added, f"<= {TARGET_MS:g} ms",
                              script_added <= TARGET_MS))
    figures += [
        Figure(NAME, "after (fork server): median added cost per cell", added["after"], "ms",
               "before (spawn per cell)", added["before"], f"<= {TARGET_MS:g} ms", added["after"] <= TARGET_MS),
        Figure(NAME, "before (spawn per cell): median added cost per cell", added["before"], "ms",
               "median time in measurement loops", median([loop for _, loop in runs["before"]]) * 1e3),
    ]
    return figures
