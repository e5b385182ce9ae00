"""Per-op profile reconciliation: how much of a cell's own p50 its per-op times account for.

MobileNet v2 0.35/96 and the four digits variants, XNNPACK on and off, one thread, each
measured as an ordinary profiled cell through a real local agent (`op_profile = true`:
the timed phase, then the isolated-op phase in the same child process), 3 times
(`--quick`) or 7 times (full), the configurations rotating from one repeat to the next.

Figure per configuration: the summed per-node `avg_us` against the cell's own p50 (the
yardstick, measured without profiling in the same cell); the ratio is the median of the
per-repeat `reconciled` values. Target: within 10 % (0.9-1.1). The top 3 nodes per
configuration (the last repeat) are printed.

On a busy machine the cell's timed phase and its profile phase see different loads. A
second figure per configuration separates the method's own error from that: in a freshly
spawned process, the whole model timed with the profile's own loop (interrupted invokes
left out) right before the profile, as the yardstick (no target: it explains the first).
"""

from __future__ import annotations

from statistics import median

import msgspec
from common import (
    DIGITS,
    MOBILENET,
    Figure,
    cell_spec,
    connected_agent,
    in_fresh_process,
    push,
    run_cells,
    scratch,
    source,
)

from agent.wire.records import Settings
from controller.analysis.opprofiles import top_nodes

NAME = "op_profile"
TARGET = 0.10


def same_phase(path: str, delegate: str, runs: int) -> tuple[float, float]:
    """(summed op avg_us, whole-model p50 us), both timed by the profile's own loop in this process."""
    from agent import opprofile
    from agent.inputs import random_inputs
    from agent.runtime import make_interpreter, require

    runtime = require()
    interpreter = make_interpreter(runtime, path, delegate, 1)[0]
    interpreter.allocate_tensors()
    inputs = random_inputs(interpreter.get_input_details(), 0)
    whole_us = opprofile.whole_model_ns(runtime, path, delegate, 1, None, None, inputs,
                                        opprofile.Timing(runs)) / 1e3
    found = opprofile.profile(runtime, path, delegate, 1, inputs, runs, whole_us, lambda index: None, 60.0)
    return sum(n.avg_us for n in found.nodes if n.avg_us is not None), whole_us


def run(quick: bool) -> list[Figure]:
    repeats = 3 if quick else 7
    settings = Settings(warmup_runs=5, warmup_min_secs=0.2, num_runs=50, min_secs=0.5 if quick else 1.0)
    models = [source(path) for path in [MOBILENET, *DIGITS]]
    configs = [(model, delegate) for model in models for delegate in ("cpu", "xnnpack")]
    ratios: dict[int, list[float]] = {i: [] for i in range(len(configs))}
    sums: dict[int, list[float]] = {i: [] for i in range(len(configs))}
    p50s: dict[int, list[float]] = {i: [] for i in range(len(configs))}
    last = {}
    with scratch(NAME) as tmp, connected_agent(tmp / "agent") as (_, client):
        for model in models:
            push(client, model)
        for repeat in range(repeats):
            order = configs[repeat % len(configs):] + configs[:repeat % len(configs)]
            specs = [msgspec.structs.replace(cell_spec(model, delegate, 1, settings), op_profile=True)
                     for model, delegate in order]
            for (model, delegate), (_, cell) in zip(order, run_cells(client, specs)):
                index = configs.index((model, delegate))
                profile = cell.op_profile
                if profile is None or profile.reconciled is None:
                    raise RuntimeError(f"{model.name} {delegate}: no op profile ({cell.warnings})")
                ratios[index].append(profile.reconciled)
                sums[index].append(sum(n.avg_us for n in profile.nodes if n.avg_us is not None))
                p50s[index].append(cell.latency_us.p50)
                last[index] = cell
        alone: dict[int, list[tuple[float, float]]] = {i: [] for i in range(len(configs))}
        for repeat in range(repeats):
            for model, delegate in configs[repeat % len(configs):] + configs[:repeat % len(configs)]:
                alone[configs.index((model, delegate))].append(
                    in_fresh_process(same_phase, str(model.path), delegate, settings.num_runs))
    figures = []
    for index, (model, delegate) in enumerate(configs):
        ratio = median(ratios[index])
        top = ", ".join(f"#{n.index} {n.op_type} {n.avg_us:.1f} us ({n.ran_on})"
                        for n in top_nodes(last[index].op_profile, 3))
        print(f"  {model.name} {delegate}: top 3 {top}; reconciled per repeat "
              + ", ".join(f"{r:.3f}" for r in ratios[index]), flush=True)
        figures.append(Figure(
            benchmark=NAME, name=f"Σ op avg_us, {model.name.removesuffix('.tflite')} {delegate} x1",
            value=median(sums[index]), unit="us", yardstick="cell p50", yardstick_value=median(p50s[index]),
            target=f"ratio {1 - TARGET:.2f}-{1 + TARGET:.2f}", holds=abs(ratio - 1) <= TARGET, paired_ratio=ratio))
        pairs = alone[index]
        figures.append(Figure(
            benchmark=NAME, name=f"  same phase, {model.name.removesuffix('.tflite')} {delegate} x1",
            value=median(s for s, _ in pairs), unit="us", yardstick="whole model, same loop",
            yardstick_value=median(w for _, w in pairs), paired_ratio=median(s / w for s, w in pairs)))
    return figures
