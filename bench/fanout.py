"""Controller fan-out: one controller measuring 32 agents at once on loopback.

N `agent serve --insecure` processes listen on distinct loopback ports; each gets a zmq
device profile in a temporary `EDGEBENCH_PROFILES` directory, and one
`controller.runner.run` measures them all (one thread per device, as `controller run
--device a,b,c` does). Cells are tiny (digits int8, XNNPACK on and off, 1 and 2 threads,
5 runs, no minimum time). The yardstick is the same run with one agent. A warm-up run
on every agent comes first, so both measured runs find fork servers started and the
model cached, as in a nightly run.

Controller CPU is `getrusage(RUSAGE_SELF)` of this process around `run()`: the
controller's threads only, none of the agents.
"""

from __future__ import annotations

import contextlib
import json
import os
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

from common import DIGITS_INT8, Figure, scratch, self_cpu_seconds

from agent.wire.records import Settings
from controller.local_agent import LocalAgent
from controller.records import RunReport
from controller.runner import RunRequest
from controller.runner import run as run_request
from controller.store import ResultStore, open_store

NAME = "fanout"
DELEGATES = ["xnnpack", "cpu"]
THREADS = [1, 2]
SETTINGS = Settings(warmup_runs=1, warmup_min_secs=0.0, num_runs=5, min_secs=0.0, max_secs=10.0)


@dataclass
class Outcome:
    """One controller run over some agents."""

    planned: int
    stored: int
    problems: int
    wall_s: float
    cpu_s: float


@contextlib.contextmanager
def environment(**values: str) -> Iterator[None]:
    """Environment variables set for the duration, then restored."""
    saved = {name: os.environ.get(name) for name in values}
    os.environ.update(values)
    try:
        yield
    finally:
        for name, value in saved.items():
            if value is None:
                os.environ.pop(name, None)
            else:
                os.environ[name] = value


def write_profile(directory: Path, name: str, endpoint: str) -> None:
    """A zmq device profile without keys: the controller connects in plain mode."""
    # JSON strings and arrays of these values are valid TOML.
    (directory / f"{name}.toml").write_text(
        f'name = {json.dumps(name)}\ntransport = "zmq"\naddress = {json.dumps(endpoint)}\n'
        f"threads = {json.dumps(THREADS)}\ndelegates = {json.dumps(DELEGATES)}\n")


def measure(store: ResultStore, devices: list[str]) -> Outcome:
    """Run the tiny matrix on `devices` at once; what arrived and what it cost the controller."""
    start, cpu_before = time.perf_counter(), self_cpu_seconds()
    report: RunReport = run_request(RunRequest(devices=devices, models=[str(DIGITS_INT8)], settings=SETTINGS), store)
    wall, cpu = time.perf_counter() - start, self_cpu_seconds() - cpu_before
    planned = len(devices) * len(DELEGATES) * len(THREADS)
    failed = sum(cell.status != "ok" for cell in report.cells)
    for line in report.errors[:5]:
        print(f"  error: {line}", flush=True)
    return Outcome(planned=planned, stored=len(report.cells),
                   problems=len(report.errors) + failed + (not report.complete), wall_s=wall, cpu_s=cpu)


def run(quick: bool) -> list[Figure]:
    """A warm-up, one agent (yardstick), then N agents at once, through the same controller library call."""
    count = 8 if quick else 32
    with scratch(NAME) as tmp, contextlib.ExitStack() as agents:
        profiles = tmp / "profiles"
        profiles.mkdir()
        names = [f"fan{index:02d}" for index in range(count + 1)]
        for name in names:
            write_profile(profiles, name, agents.enter_context(LocalAgent(tmp / name)).endpoint)
        with environment(EDGEBENCH_PROFILES=str(profiles), EDGEBENCH_DB=str(tmp / "results.sqlite")), \
                open_store(tmp / "results.sqlite") as store:
            measure(store, names)  # warm-up: every agent starts its fork server and caches the model
            one = measure(store, names[:1])
            fan = measure(store, names[1:])
    print(f"  1 agent: {one.stored} cells in {one.wall_s:.1f} s; {count} agents: {fan.stored} cells in "
          f"{fan.wall_s:.1f} s, controller CPU {fan.cpu_s:.2f} s", flush=True)
    if quick:
        print(f"  quick: {count} agents instead of 32", flush=True)
    label = f"{count} agents"
    return [
        Figure(NAME, f"{label}: cells stored", fan.stored, "", "cells planned", fan.planned,
               "ratio = 1", fan.stored == fan.planned),
        Figure(NAME, f"{label}: errors, lost devices, failed cells", fan.problems, "", "same with 1 agent",
               one.problems, "0", fan.problems == 0),
        Figure(NAME, f"{label}: controller CPU per cell result", fan.cpu_s / max(fan.stored, 1) * 1e3, "ms",
               "1 agent, per cell", one.cpu_s / max(one.stored, 1) * 1e3),
        Figure(NAME, f"{label}: controller CPU per agent", fan.cpu_s / count * 1e3, "ms",
               "1 agent", one.cpu_s * 1e3),
        Figure(NAME, f"{label}: controller CPU over the run", fan.cpu_s, "s", "wall time (one core)", fan.wall_s),
        Figure(NAME, f"{label}: wall time", fan.wall_s, "s", "1 agent", one.wall_s),
    ]
