"""Does `controller regress` find planted regressions, and does it cry wolf on quiet pairs?

Each trial is two nights measured on the local agent, five cells each under their own file
names: two quiet cells (the same file both nights) and three planted ones (the base
network the first night, a copy with 5 %, 10 % or 20 % more convolutions the second;
examples/models/planted/). Every trial is judged twice, on the same data:

- before: the two nights alone (one look at 95 %), what `regress` did without more rounds;
- after: `regress --more-rounds 160 --max-device-seconds 300` (the nightly script's
  defaults): cells not decided NO CHANGE by the nights get more rounds per side in A/B
  sessions, looked at after 5, 10, 20, 40, 80 and 160 of them, every look at the
  Bonferroni-corrected 99.3 %, until decided, given up or the 300 s are spent.

A quiet cell's REGRESSION is a false alarm; a planted cell's REGRESSION is a detection.
The yardstick of device time is the two nights' own measuring time.

    python bench/false_alarms.py [--trials 12] [--rounds 5] [--minutes 18] [--out results.json]
"""

from __future__ import annotations

import argparse
import collections
import json
import os
import shutil
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from agent.wire.records import Settings  # noqa: E402
from controller.analysis.regress import Thresholds, compare, parse_percent  # noqa: E402
from controller.analysis.sequential import Plan  # noqa: E402
from controller.runner import RunRequest, run  # noqa: E402
from controller.sessions import follow_up  # noqa: E402
from controller.store import ResultStore, open_store  # noqa: E402

PLANTED = ROOT / "examples" / "models" / "planted"
# Cell name -> (first night's copy, second night's copy).
CELLS = {"quiet_a.tflite": ("base", "base"), "quiet_b.tflite": ("base", "base"),
         "planted_5.tflite": ("base", "slower_5"), "planted_10.tflite": ("base", "slower_10"),
         "planted_20.tflite": ("base", "slower_20")}
KIND = {"quiet_a.tflite": "quiet", "quiet_b.tflite": "quiet", "planted_5.tflite": "+5 %",
        "planted_10.tflite": "+10 %", "planted_20.tflite": "+20 %"}
VERDICTS = ("REGRESSION", "NO CHANGE", "INCONCLUSIVE", "IMPROVEMENT")


def night_models(folder: Path, night: int) -> list[str]:
    """The night's five files, each cell under its own name."""
    folder.mkdir(parents=True, exist_ok=True)
    paths = []
    for name, copies in CELLS.items():
        target = folder / name
        shutil.copyfile(PLANTED / copies[night] / "conv_stack.tflite", target)
        paths.append(str(target))
    return paths


def trial(store: ResultStore, scratch: Path, number: int, args, plan: Plan) -> dict:
    """Two nights, judged before and after; per cell the verdicts and device seconds."""
    thresholds = Thresholds(latency=parse_percent(args.threshold))
    settings = Settings(warmup_min_secs=0.05, min_secs=args.min_secs, num_runs=20)
    nights, night_seconds = [], 0.0
    for night in (0, 1):
        models = night_models(scratch / f"trial{number}" / f"night{night}", night)
        started = time.monotonic()
        nights.append(run(RunRequest(devices=["local"], models=models, threads=[1], delegates=["xnnpack"],
                                     rounds=args.rounds, tag="power", settings=settings), store))
        night_seconds += time.monotonic() - started
    before = compare(nights[0], nights[1], thresholds)
    sequential = Thresholds(latency=thresholds.latency, confidence=plan.confidence)
    after = follow_up(compare(nights[0], nights[1], sequential), nights[0], nights[1], plan, sequential, store)
    cells = {}
    for name in CELLS:
        b = next(c for c in before.cells if c.model == name)
        a = next(c for c in after.cells if c.model == name)
        cells[name] = {"kind": KIND[name], "before": b.verdict, "after": a.verdict, "looks": a.looks,
                       "change_after": a.latency_p50.change, "low": a.latency_p50.low, "high": a.latency_p50.high,
                       "disturbed": sum(a.disturbed_rounds)}
    return {"night_seconds": night_seconds, "session_seconds": after.more_rounds.device_seconds,
            "load_avg": os.getloadavg()[0], "cells": cells, "notes": after.more_rounds.notes}


def summarize(trials: list[dict]) -> str:
    """Shares of verdicts per kind, before and after, and device seconds."""
    lines = [f"{len(trials)} trials; per kind of cell, share of cells by verdict (before -> after):"]
    kinds = list(dict.fromkeys(KIND.values()))
    for kind in kinds:
        rows = [c for t in trials for c in t["cells"].values() if c["kind"] == kind]
        counts = {when: collections.Counter(c[when] for c in rows) for when in ("before", "after")}
        shares = ", ".join(f"{v} {counts['before'][v] / len(rows):.0%} -> {counts['after'][v] / len(rows):.0%}"
                           for v in VERDICTS if counts["before"][v] or counts["after"][v])
        changes = sorted(c["change_after"] for c in rows if c["change_after"] is not None)
        median = f"; median change measured {changes[len(changes) // 2]:+.1%}" if changes else ""
        lines.append(f"  {kind:<6} ({len(rows)} cells): {shares}{median}")
    nights = sum(t["night_seconds"] for t in trials)
    sessions = sum(t["session_seconds"] for t in trials)
    disturbed = sum(c["disturbed"] for t in trials for c in t["cells"].values())
    loads = sorted(t["load_avg"] for t in trials)
    lines.append(f"1-minute load average after each trial: median {loads[len(loads) // 2]:.1f} "
                 f"(min {loads[0]:.1f}, max {loads[-1]:.1f}) on {os.cpu_count()} CPUs")
    lines.append(f"device seconds: nights {nights:.0f} s (before), + sessions {sessions:.0f} s (after: "
                 f"{(nights + sessions) / nights:.2f}x); per trial {nights / len(trials):.0f} s -> "
                 f"{(nights + sessions) / len(trials):.0f} s; disturbed rounds left out: {disturbed}")
    return "\n".join(lines)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--trials", type=int, default=12)
    parser.add_argument("--rounds", type=int, default=5, help="rounds per night (default 5)")
    parser.add_argument("--threshold", default="5%")
    parser.add_argument("--min-secs", type=float, default=0.2)
    parser.add_argument("--more-rounds", type=int, default=160)
    parser.add_argument("--max-device-seconds", type=float, default=300.0)
    parser.add_argument("--minutes", type=float, default=18.0, help="stop starting trials after this long")
    parser.add_argument("--out", help="write every trial's verdicts to this JSON file")
    args = parser.parse_args()
    plan = Plan(more_rounds=args.more_rounds, max_device_seconds=args.max_device_seconds)
    trials: list[dict] = []
    started = time.monotonic()
    with tempfile.TemporaryDirectory() as scratch:
        os.environ["XDG_DATA_HOME"] = scratch  # a private local agent and model cache
        with open_store(Path(scratch) / "power.sqlite") as store:
            for number in range(args.trials):
                if time.monotonic() - started > args.minutes * 60:
                    print(f"time limit: stopping after {number} trials", flush=True)
                    break
                trials.append(trial(store, Path(scratch), number, args, plan))
                last = trials[-1]
                print(f"trial {number + 1}/{args.trials} (load {last['load_avg']:.1f}): nights "
                      f"{last['night_seconds']:.0f} s, sessions "
                      f"{last['session_seconds']:.0f} s; " + ", ".join(
                          f"{c['kind']} {c['before']}->{c['after']}" for c in last["cells"].values()), flush=True)
                if args.out:
                    Path(args.out).write_text(json.dumps(trials, indent=1))
    print()
    print(summarize(trials))
    return 0


if __name__ == "__main__":
    sys.exit(main())
