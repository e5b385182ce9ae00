"""The measurement engine: one cell, with `benchmark_model` semantics.

Runs inside the cell's own child process: load and init the interpreter, one first
inference, a warmup phase, then the timed phase (at least `num_runs` invokes and at
least `min_secs`, cut at `max_secs`). After each phase a snapshot of the cell is
reported, so that a crash later on still keeps what was measured before it.
"""

from __future__ import annotations

import time
from typing import Callable, Optional

import msgspec

from agent import memory, stats
from agent.evaluate import evaluate
from agent.facts import SysRoot, finish_state, read_state
from agent.inputs import random_inputs
from agent.protocol import CellSpec, Evaluation
from agent.runtime import Runtime, make_interpreter
from agent.schema import Cell, MemoryMB, WarmupStats

Report = Callable[[Cell], None]


def timed_loop(invoke: Callable[[], None], min_runs: int, min_secs: float, max_secs: float,
               delay_secs: float = 0.0) -> list[int]:
    """Invoke until at least `min_runs` runs and `min_secs` have passed, or `max_secs`.

    Returns each invoke's duration in nanoseconds. The loop body is kept minimal: it is
    the harness overhead every figure carries.
    """
    clock = time.perf_counter_ns
    min_ns, max_ns = int(min_secs * 1e9), int(max_secs * 1e9)
    samples: list[int] = []
    append = samples.append
    runs = 0
    start = clock()
    while True:
        t0 = clock()
        invoke()
        t1 = clock()
        append(t1 - t0)
        runs += 1
        elapsed = t1 - start
        if elapsed >= max_ns or (runs >= min_runs and elapsed >= min_ns):
            return samples
        if delay_secs:
            time.sleep(delay_secs)


def measure(model_path: str, spec: CellSpec, runtime: Runtime, cell: Cell,
            sys_root: SysRoot, report: Report,
            dataset_path: Optional[str] = None) -> tuple[Cell, Optional[Evaluation]]:
    """Measure one cell; `cell` names it and `report` receives progress snapshots.

    Failures inside the runtime come back as a failed cell that keeps every figure
    measured before the failure. When the spec asks for evaluation, the model then runs
    over the evaluation inputs (after timing and memory, which it must not disturb).
    """
    settings = spec.settings
    cell = msgspec.structs.replace(
        cell, runtime=runtime.name, runtime_version=runtime.version, settings=settings,
        device_state=read_state(sys_root),
    )
    stage = "loading the model"
    try:
        memory.reset_peak()
        rss_before = memory.rss_mb()
        t0 = time.perf_counter_ns()
        interpreter = make_interpreter(runtime, model_path, spec.delegate, spec.threads)
        t1 = time.perf_counter_ns()
        stage = "allocating tensors"
        interpreter.allocate_tensors()
        t2 = time.perf_counter_ns()
        cell = msgspec.structs.replace(
            cell, load_ms=(t1 - t0) / 1e6, init_ms=(t2 - t0) / 1e6,
            memory_mb=MemoryMB(init=memory.rss_mb() - rss_before, overall=None, peak_rss=None),
        )
        report(cell)

        stage = "setting inputs"
        for detail, value in zip(interpreter.get_input_details(),
                                 random_inputs(interpreter.get_input_details(), spec.seed)):
            interpreter.set_tensor(detail["index"], value)

        stage = "running the first inference"
        invoke = interpreter.invoke
        t0 = time.perf_counter_ns()
        invoke()
        cell = msgspec.structs.replace(cell, first_inference_us=(time.perf_counter_ns() - t0) / 1e3)
        report(cell)

        stage = "warming up"
        warmup = timed_loop(invoke, settings.warmup_runs, settings.warmup_min_secs,
                            settings.max_secs)
        cell = msgspec.structs.replace(
            cell, warmup=WarmupStats(count=len(warmup), mean_us=sum(warmup) / len(warmup) / 1e3))
        report(cell)

        stage = "running the timed phase"
        samples = timed_loop(invoke, settings.num_runs, settings.min_secs, settings.max_secs,
                             settings.run_delay)
    except Exception as exc:  # noqa: BLE001 - runtimes raise ValueError, RuntimeError and others
        return msgspec.structs.replace(
            cell, status="failed", error=f"{stage} failed: {_one_line(exc)}",
            device_state=finish_state(sys_root, cell.device_state)), None

    latency = stats.latency_stats(samples)
    cv = stats.coefficient_of_variation(latency)
    warning = stats.stability_warning(cv)
    peak = memory.peak_rss_mb()
    cell = msgspec.structs.replace(
        cell,
        status="ok",
        error=None,
        latency_us=latency,
        cv=cv,
        warnings=[warning] if warning else [],
        memory_mb=MemoryMB(init=cell.memory_mb.init, overall=peak - rss_before, peak_rss=peak),
        device_state=finish_state(sys_root, cell.device_state),
    )
    if not spec.evaluate:
        return cell, None
    report(cell)
    try:
        outcome = evaluate(interpreter, spec, dataset_path)
    except Exception as exc:  # noqa: BLE001 - a runtime error while evaluating keeps the timing
        return msgspec.structs.replace(
            cell, warnings=[*cell.warnings, f"evaluation failed: {_one_line(exc)}"]), None
    return msgspec.structs.replace(cell, accuracy=outcome.accuracy,
                                   warnings=cell.warnings + outcome.warnings), outcome.evaluation


def _one_line(exc: BaseException) -> str:
    """The first meaningful line of an exception message."""
    for line in str(exc).splitlines():
        if line.strip():
            return line.strip()
    return type(exc).__name__
