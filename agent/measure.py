"""The measurement engine: one cell, with `benchmark_model` semantics.

Runs inside the cell's own child process: load and init the interpreter, one first
inference, a warmup phase, then the timed phase (at least `num_runs` invokes and at
least `min_secs`, cut at `max_secs`), and when asked a per-op profile in a phase of its
own, so that profiling never slows the timed phase. After each phase a snapshot of the cell is
reported, so that a crash later on still keeps what was measured before it.
"""

from __future__ import annotations

import os
import time
from typing import Callable, Optional

import msgspec

from agent import memory, opprofile, stats
from agent.coverage import coverage
from agent.evaluate import evaluate
from agent.facts import SysRoot, finish_state, read_sched_ns, read_state, state_warning, wait_share
from agent.gpu import CompiledModelRunner
from agent.inputs import random_inputs
from agent.runtime import DelegateError, Runtime, first_line, make_interpreter
from agent.wire.delegates import recipe_of
from agent.wire.protocol import CellSpec, Evaluation
from agent.wire.records import Cell, DelegateCoverage, MemoryMB, WarmupStats, judge_stability

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
    stage = "pinning to CPUs"
    try:
        if spec.cpu_affinity:
            os.sched_setaffinity(0, spec.cpu_affinity)
        stage = "loading the model"
        memory.reset_peak()
        rss_before = memory.rss_mb()
        t0 = time.perf_counter_ns()
        interpreter, delegate_ms = make_interpreter(runtime, model_path, spec.delegate, spec.threads,
                                                    spec.delegate_library, spec.delegate_options)
        t1 = time.perf_counter_ns()
        stage = "allocating tensors"
        interpreter.allocate_tensors()
        t2 = time.perf_counter_ns()
        cell = msgspec.structs.replace(
            cell, load_ms=(t1 - t0) / 1e6, init_ms=(t2 - t0) / 1e6, delegate_init_ms=delegate_ms,
            memory_mb=MemoryMB(init=memory.rss_mb() - rss_before, overall=None, peak_rss=None),
            delegate_coverage=delegate_coverage(interpreter),
        )
        report(cell)
        if spec.require_full_delegation and recipe_of(spec.delegate) != "kernels" and not (
                cell.delegate_coverage and cell.delegate_coverage.full):
            taken = cell.delegate_coverage
            detail = (f"{taken.delegated_nodes} of {taken.total_nodes} nodes" if taken and taken.delegated_nodes
                      is not None else "no nodes")
            return msgspec.structs.replace(
                cell, status="failed", device_state=finish_state(sys_root, cell.device_state),
                error=f"delegation incomplete: {spec.delegate} took {detail} (full delegation required)"), None

        stage = "setting inputs"
        inputs = random_inputs(interpreter.get_input_details(), spec.seed)
        for detail, value in zip(interpreter.get_input_details(), inputs):
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
        sched_start = read_sched_ns()
        samples = timed_loop(invoke, settings.num_runs, settings.min_secs, settings.max_secs,
                             settings.run_delay)
        waited = wait_share(sched_start, read_sched_ns())
    except Exception as exc:  # noqa: BLE001 - runtimes raise ValueError, RuntimeError and others
        error = str(exc) if isinstance(exc, DelegateError) else f"{stage} failed: {first_line(exc)}"
        return msgspec.structs.replace(
            cell, status="failed", error=error,
            device_state=finish_state(sys_root, cell.device_state)), None

    latency = stats.latency_stats(samples)
    stability = judge_stability(latency, stats.spread_bounds(samples))
    peak = memory.peak_rss_mb()
    state = finish_state(sys_root, cell.device_state)
    cell = msgspec.structs.replace(
        cell,
        status="ok",
        error=None,
        latency_us=latency,
        cv=latency.cv,
        stability=stability,
        warnings=[w for w in (stability.warning, state_warning(sys_root, state)) if w],
        memory_mb=MemoryMB(init=cell.memory_mb.init, overall=peak - rss_before, peak_rss=peak),
        device_state=msgspec.structs.replace(state, cpu_wait_share=waited),
    )
    if spec.op_profile:
        report(cell)
        cell = profile_phase(model_path, spec, runtime, cell, inputs)
    if not spec.evaluate:
        return cell, None
    report(cell)
    try:
        outcome = evaluate(interpreter, spec, dataset_path)
    except Exception as exc:  # noqa: BLE001 - a runtime error while evaluating keeps the timing
        return msgspec.structs.replace(
            cell, warnings=[*cell.warnings, f"evaluation failed: {first_line(exc)}"]), None
    return msgspec.structs.replace(cell, accuracy=outcome.accuracy,
                                   warnings=cell.warnings + outcome.warnings), outcome.evaluation


def profile_phase(model_path: str, spec: CellSpec, runtime: Runtime, cell: Cell, inputs: list) -> Cell:
    """The cell with its per-op profile, measured after (and apart from) the timed phase;
    a profile that cannot be measured leaves `op_profile` null and says why."""
    taken = cell.delegate_coverage
    left = {node.index for node in taken.not_delegated or []} if taken else set()

    def ran_on(index: int) -> Optional[str]:
        if taken is None:  # no delegate took any node: all interpreter kernels
            return "cpu"
        if taken.not_delegated is None:
            return None
        return "cpu" if index in left else spec.delegate

    try:
        found = opprofile.profile(runtime, model_path, spec.delegate, spec.threads, inputs,
                                  spec.settings.num_runs, cell.latency_us.p50, ran_on, spec.settings.max_secs,
                                  spec.delegate_library, spec.delegate_options)
    except opprofile.OpProfileUnavailable as exc:
        return msgspec.structs.replace(cell, warnings=[*cell.warnings, f"op profile not measured: {exc}"])
    except Exception as exc:  # noqa: BLE001 - a runtime error while profiling keeps the timing
        return msgspec.structs.replace(
            cell, warnings=[*cell.warnings, f"op profile failed: {first_line(exc)}"])
    return msgspec.structs.replace(cell, op_profile=found)


def delegate_coverage(model) -> Optional[DelegateCoverage]:
    """How much of the graph a delegate took (None for plain interpreter kernels)."""
    if isinstance(model, CompiledModelRunner):
        full = model.fully_accelerated()
        total = model.operator_count
        # the accelerator says only whether it took everything, not which nodes it left
        return DelegateCoverage(delegated_nodes=total if full else None, total_nodes=total, full=full,
                                not_delegated=[] if full else None)
    outputs = {int(d["index"]) for d in model.get_output_details()}
    return coverage(model._get_ops_details(), outputs)
