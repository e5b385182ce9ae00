"""Timing fidelity: edgebench's latency figures against a bare invoke loop and LiteRT's own tool.

Three models span the range: microseconds (digits int8, XNNPACK), a fraction of a
millisecond (MobileNet, XNNPACK) and milliseconds (MobileNet with XNNPACK off, `cpu`),
all at one thread. Each is measured three ways, in rotating order, `repeats` times:

- edgebench: one cell through a real agent (`agent serve`, the cell in its own child);
- bare: `interpreter.invoke()` timed with `perf_counter_ns` in a fresh process, the
  interpreter built by edgebench's `make_interpreter`, so threads, delegate and inputs match;
- LiteRT tool: `ai_edge_litert.tools.benchmark_litert_model`'s own `main()` in a fresh
  process. It runs the CompiledModel API on its CPU accelerator (XNNPACK) and cannot turn
  XNNPACK off, so it is compared only with XNNPACK cells.

Figures are medians over the repeats, ratios the medians of per-repeat ratios, so one
disturbed repeat does not decide.
"""

from __future__ import annotations

import statistics
import sys
import time
from dataclasses import dataclass
from functools import partial
from pathlib import Path
from statistics import median
from types import SimpleNamespace

from common import (
    DIGITS_INT8,
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

from agent.inputs import random_inputs
from agent.runtime import detect, make_interpreter
from agent.stats import latency_stats
from agent.wire.records import LatencyStats, Settings
from controller.client import AgentClient
from controller.models import ModelSource

NAME = "fidelity"
# Below this a model is "tiny": its target is added microseconds, not a ratio.
TINY_US = 100.0
ADDED_US_TARGET = 2.0
RATIO_TARGET = 1.02
TOOL_AGREEMENT = 0.05
WARMUP_S = 0.2


@dataclass(frozen=True)
class Config:
    """A model, delegate and thread count, and how long each measurement of it runs."""

    label: str
    model: Path
    delegate: str
    threads: int
    seconds: float


@dataclass
class Timing:
    """p50 and mean of single invokes, in microseconds, and how many there were."""

    p50_us: float
    mean_us: float
    count: int


def _timing(stats: LatencyStats) -> Timing:  # edgebench's own statistics for every method
    return Timing(p50_us=stats.p50, mean_us=stats.mean, count=stats.count)


def bare_loop(model: str, delegate: str, threads: int, warmup_s: float, seconds: float) -> Timing:
    """Time `interpreter.invoke()` alone for `seconds` after a warmup, with edgebench's inputs."""
    interpreter, _ = make_interpreter(detect(), model, delegate, threads)
    interpreter.allocate_tensors()
    details = interpreter.get_input_details()
    for detail, value in zip(details, random_inputs(details, 0)):
        interpreter.set_tensor(detail["index"], value)
    invoke, clock = interpreter.invoke, time.perf_counter_ns
    invoke()
    warm_until = clock() + int(warmup_s * 1e9)
    while clock() < warm_until:
        invoke()
    samples: list[int] = []
    stop_at = clock() + int(seconds * 1e9)
    while True:
        t0 = clock()
        invoke()
        t1 = clock()
        samples.append(t1 - t0)
        if t1 >= stop_at:
            return _timing(latency_stats(samples))


def litert_tool(model: str, threads: int, warmup_runs: int, runs: int) -> Timing:
    """Run `benchmark_litert_model`'s `main()` and summarise its own per-run times.

    The tool prints and saves its figures rounded to 0.01 ms, a 25 % step at 20 us; its
    unrounded run times are read where it hands them to `statistics.median`.
    """
    from ai_edge_litert.tools import benchmark_litert_model as tool

    handed: list[list[float]] = []

    def recording_median(values: list[float]) -> float:
        handed.append(list(values))
        return statistics.median(values)

    tool.statistics = SimpleNamespace(mean=statistics.mean, stdev=statistics.stdev, median=recording_median)
    sys.argv = ["benchmark_litert_model", f"--model={model}", f"--num_threads={threads}",
                f"--warmup_runs={warmup_runs}", f"--num_runs={runs}"]
    tool.main()
    return _timing(latency_stats([round(ms * 1e6) for ms in handed[-1]]))


def configs(quick: bool) -> list[Config]:
    """The three models, with seconds per measurement (twice as long in a full run)."""
    scale = 1.0 if quick else 2.0
    return [
        Config("digits int8 xnnpack x1", DIGITS_INT8, "xnnpack", 1, 0.5 * scale),
        Config("mobilenet xnnpack x1", MOBILENET, "xnnpack", 1, 0.5 * scale),
        Config("mobilenet cpu x1", MOBILENET, "cpu", 1, 1.0 * scale),
    ]


def _edgebench(client: AgentClient, model: ModelSource, config: Config) -> Timing:
    settings = Settings(warmup_runs=1, warmup_min_secs=WARMUP_S, num_runs=1,
                        min_secs=config.seconds, max_secs=config.seconds * 2 + 5)
    (_, cell), = run_cells(client, [cell_spec(model, config.delegate, config.threads, settings)])
    return _timing(cell.latency_us)


def _bare(config: Config) -> Timing:
    return in_fresh_process(bare_loop, str(config.model), config.delegate, config.threads, WARMUP_S, config.seconds)


def _tool(config: Config, seen: dict[str, list[Timing]]) -> Timing:
    # The tool counts runs, not seconds: as many runs as fill the same time.
    known = seen["bare"] or seen["edgebench"]
    expected_us = known[-1].p50_us if known else 1000.0
    runs = max(50, int(config.seconds * 1e6 / expected_us))
    warmup = max(5, int(WARMUP_S * 1e6 / expected_us))
    return in_fresh_process(litert_tool, str(config.model), config.threads, warmup, runs)


def run(quick: bool) -> list[Figure]:
    """Measure every configuration three ways, `repeats` times in rotating order."""
    # Many short repeats rather than a few long ones: here the latency of a model varies
    # more from one process to the next (up to 30 % for MobileNet) than within one.
    repeats = 5 if quick else 9
    plan = configs(quick)
    results = {c.label: {"bare": [], "edgebench": [], "tool": []} for c in plan}
    with scratch(NAME) as tmp, connected_agent(tmp / "agent") as (_, client):
        models = {c.model: source(c.model) for c in plan}
        for model in models.values():
            push(client, model)
        for repeat in range(repeats):
            for config in plan:
                seen = results[config.label]
                methods = {"bare": partial(_bare, config),
                           "edgebench": partial(_edgebench, client, models[config.model], config)}
                if config.delegate == "xnnpack":
                    methods["tool"] = partial(_tool, config, seen)
                names = list(methods)
                shift = repeat % len(names)
                for name in names[shift:] + names[:shift]:
                    seen[name].append(methods[name]())
                print(f"  repeat {repeat + 1}/{repeats} {config.label}: "
                      + ", ".join(f"{name} p50 {seen[name][-1].p50_us:.1f} us" for name in names), flush=True)
    return [figure for config in plan for figure in _figures(config, results[config.label])]


def _stat(timing: Timing, stat: str) -> float:
    return timing.p50_us if stat == "p50" else timing.mean_us


def _median(timings: list[Timing], stat: str) -> float:
    """Median over repeats of each repeat's p50 or mean."""
    return median([_stat(t, stat) for t in timings])


def _paired(ours: list[Timing], theirs: list[Timing], stat: str) -> float:
    """Median over repeats of ours / theirs, each pair measured in the same repeat."""
    return median([_stat(a, stat) / _stat(b, stat) for a, b in zip(ours, theirs)])


def _figures(config: Config, seen: dict[str, list[Timing]]) -> list[Figure]:
    """Harness vs bare loop (added microseconds for tiny models, a ratio otherwise), then vs the tool.

    Values and yardsticks are medians over the repeats; ratios and added times are medians
    of the per-repeat ratios and differences. Ratio targets are judged on the p50 (the mean
    follows every outlier on a shared machine); the added-time target of tiny models on both.
    """
    ours = {stat: _median(seen["edgebench"], stat) for stat in ("p50", "mean")}
    bare = {stat: _median(seen["bare"], stat) for stat in ("p50", "mean")}
    figures = []
    for stat in ("p50", "mean"):
        if bare["p50"] < TINY_US:
            added = median([_stat(a, stat) - _stat(b, stat) for a, b in zip(seen["edgebench"], seen["bare"])])
            figures.append(Figure(NAME, f"{config.label}: added time per invoke ({stat})", added, "us",
                                  f"bare loop {stat}", bare[stat], f"<= {ADDED_US_TARGET:g} us",
                                  added <= ADDED_US_TARGET))
        else:
            judged, ratio = stat == "p50", _paired(seen["edgebench"], seen["bare"], stat)
            figures.append(Figure(NAME, f"{config.label}: edgebench {stat}", ours[stat], "us", f"bare loop {stat}",
                                  bare[stat], f"ratio <= {RATIO_TARGET:g}" if judged else "-",
                                  ratio <= RATIO_TARGET if judged else None, paired_ratio=ratio))
    if seen["tool"]:
        for stat in ("p50", "mean"):
            judged, ratio = stat == "p50", _paired(seen["edgebench"], seen["tool"], stat)
            figures.append(Figure(NAME, f"{config.label}: edgebench {stat} vs LiteRT tool", ours[stat], "us",
                                  f"benchmark_litert_model {stat}", _median(seen["tool"], stat),
                                  f"ratio within 1 +- {TOOL_AGREEMENT:g}" if judged else "-",
                                  abs(ratio - 1) <= TOOL_AGREEMENT if judged else None, paired_ratio=ratio))
        # How far the tool's own API path (CompiledModel.run_by_name) is from a bare invoke, edgebench aside.
        figures.append(Figure(NAME, f"{config.label}: bare loop p50 vs LiteRT tool", bare["p50"], "us",
                              "benchmark_litert_model p50", _median(seen["tool"], "p50"),
                              paired_ratio=_paired(seen["bare"], seen["tool"], "p50")))
    return figures
