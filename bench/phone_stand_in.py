"""Can the emulated phone's numbers be trusted? The stand-in benchmark_model against a bare loop.

The stand-in `benchmark_model` (tests/support/fake_benchmark_model.py) runs on the emulated
phone in the Android tests. Here it runs as its own process, as on the phone, and its log
goes through edgebench's parser; the yardstick is a bare LiteRT invoke loop on the same
model in a fresh process, interleaved with it. Figures: the stand-in's p50 over the bare
loop's (cpu and xnnpack, one thread), and XNNPACK's speed-up as the stand-in reports it
over the same speed-up from bare loops.

    python bench/phone_stand_in.py [--quick]
"""

from __future__ import annotations

import argparse
import os
import statistics
import subprocess
import sys
from pathlib import Path

from common import MOBILENET, REPO, Figure, in_fresh_process, report, table
from fidelity import bare_loop

from agent.formats import benchmark_log
from agent.wire.records import Cell

NAME = "phone_stand_in"
STAND_IN = REPO / "tests" / "support" / "fake_benchmark_model.py"
# The stand-in is a Python loop around the same invoke as the bare loop: they should agree.
AGREEMENT = (0.8, 1.25)


def stand_in_p50(model: Path, delegate: str, seconds: float) -> float:
    """The p50 the stand-in prints, read back through the log parser."""
    flags = [f"--graph={model}", "--num_threads=1", f"--use_xnnpack={'true' if delegate == 'xnnpack' else 'false'}",
             "--warmup_runs=1", "--warmup_min_secs=0.2", "--num_runs=50", f"--min_secs={seconds}", "--max_secs=60"]
    result = subprocess.run([sys.executable, str(STAND_IN), *flags], capture_output=True, text=True, timeout=300,
                            check=False)
    template = Cell(model=model.name, model_sha256="0" * 64, model_size_bytes=1, delegate=delegate, threads=1,
                    status="failed")
    cell = benchmark_log.to_cell(benchmark_log.parse(result.stdout + result.stderr), template)
    if cell.status != "ok" or cell.latency_us.p50 is None:
        raise RuntimeError(f"the stand-in did not measure: {cell.error}")
    return cell.latency_us.p50


def run(quick: bool) -> list[Figure]:
    """Interleaved repeats of stand-in and bare loop, per delegate; medians of the paired ratios."""
    repeats, seconds = (3, 0.5) if quick else (5, 2.0)
    p50: dict[tuple[str, str], list[float]] = {}
    for _ in range(repeats):
        for delegate in ("cpu", "xnnpack"):
            p50.setdefault(("stand-in", delegate), []).append(stand_in_p50(MOBILENET, delegate, seconds))
            bare = in_fresh_process(bare_loop, str(MOBILENET), delegate, 1, 0.2, seconds)
            p50.setdefault(("bare", delegate), []).append(bare.p50_us)
    figures = []
    for delegate in ("cpu", "xnnpack"):
        ours, theirs = p50[("stand-in", delegate)], p50[("bare", delegate)]
        paired = statistics.median(a / b for a, b in zip(ours, theirs))
        figures.append(Figure(NAME, f"p50 {delegate} x1 (mobilenet_v2_035_96)", statistics.median(ours), "us",
                              "bare LiteRT loop", statistics.median(theirs), f"{AGREEMENT[0]}..{AGREEMENT[1]}",
                              AGREEMENT[0] <= paired <= AGREEMENT[1], paired_ratio=paired))
    speedups = [c / x for c, x in zip(p50[("stand-in", "cpu")], p50[("stand-in", "xnnpack")])]
    bare_speedups = [c / x for c, x in zip(p50[("bare", "cpu")], p50[("bare", "xnnpack")])]
    paired = statistics.median(a / b for a, b in zip(speedups, bare_speedups))
    figures.append(Figure(NAME, "xnnpack speed-up (cpu p50 / xnnpack p50)", statistics.median(speedups), "x",
                          "same from bare loops", statistics.median(bare_speedups), f"{AGREEMENT[0]}..{AGREEMENT[1]}",
                          AGREEMENT[0] <= paired <= AGREEMENT[1], paired_ratio=paired))
    return figures


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="fewer, shorter repeats")
    quick = parser.parse_args().quick
    load = os.getloadavg()
    busy = " (busier than its cores: figures may be disturbed, run again)" if load[0] > (os.cpu_count() or 1) else ""
    print(f"load average before: {', '.join(f'{value:.2f}' for value in load)}{busy}", flush=True)
    figures = run(quick)
    report(figures)
    print(table(figures))
    return 0 if all(f.holds is not False for f in figures) else 1


if __name__ == "__main__":
    raise SystemExit(main())
