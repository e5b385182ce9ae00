"""Run edgebench's benchmarks and print one table of figures, yardsticks, ratios and targets.

    python bench/run.py                  # every benchmark, full length
    python bench/run.py --quick          # every benchmark, shortened (a few minutes)
    python bench/run.py transfer fanout  # only the named ones

Exit status 0 when every target holds, 1 when one is missed.
"""

from __future__ import annotations

import argparse
import importlib
import os
import time

# Names only: benchmarks (and everything else heavy) are imported inside functions, because
# each child that multiprocessing starts, measured cells among them, runs this script's top
# level again (as `__mp_main__`) and must not pay for importing the whole suite.
BENCHMARKS = ("fidelity", "transfer", "cell_cost", "footprint", "fanout", "store", "op_profile")


def machine() -> str:
    """One line about the machine the figures belong to, as the agent reads it."""
    from agent.facts import read_facts

    facts = read_facts("/")
    return (f"{facts.cpu.model or facts.machine}, {facts.cpu.count} cores, {facts.memory_mb} MB, {facts.os}, "
            f"kernel {facts.kernel}, Python {facts.python}, {facts.runtime} {facts.runtime_version}")


def main() -> int:
    from common import report, table

    parser = argparse.ArgumentParser(description="edgebench benchmarks")
    parser.add_argument("names", nargs="*", metavar="NAME",
                        help=f"benchmarks to run (default all): {', '.join(BENCHMARKS)}")
    parser.add_argument("--quick", action="store_true", help="shorter windows, fewer repeats and agents")
    args = parser.parse_args()
    unknown = [name for name in args.names if name not in BENCHMARKS]
    if unknown:
        parser.error(f"unknown benchmark(s) {', '.join(unknown)}; choose from {', '.join(BENCHMARKS)}")
    names = args.names or list(BENCHMARKS)
    print(f"machine: {machine()}", flush=True)
    figures = []
    started = time.monotonic()
    for name in names:
        load = os.getloadavg()
        busy = " (busier than its cores: figures may be disturbed, run again)" if load[0] > os.cpu_count() else ""
        print(f"\n== {name}{' (quick)' if args.quick else ''}; load average before: "
              f"{', '.join(f'{value:.2f}' for value in load)}{busy}", flush=True)
        begun = time.monotonic()
        produced = importlib.import_module(name).run(args.quick)
        report(produced)
        print(f"  ({time.monotonic() - begun:.0f} s)", flush=True)
        figures += produced
    print(f"\n{table(figures)}\n\ntotal {time.monotonic() - started:.0f} s", flush=True)
    return 0 if all(f.holds is not False for f in figures) else 1


if __name__ == "__main__":
    raise SystemExit(main())
