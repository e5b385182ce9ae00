"""Which statistic and which looks decide a regression in the fewest rounds, on real rounds?

Measures ROUNDS rounds of five cells through the local agent, A/B order alternating from
round to round: two copies of the planted base network (a quiet pair) and its copies with
5 %, 10 % and 20 % more convolutions (examples/models/planted/). Then replays sessions on
those measured rounds: each replay draws rounds in a random order, pairs round i of the
base with round i of the other cell (measured in the same round, seconds apart) and looks
at the design's marks, stopping when decided. The same rounds serve every design, so the
designs differ only in how they judge:

- `median`: what `controller regress` does (`verdicts.judge(paired=True)`: the median of
  the per-pair ratios, a bootstrap interval over pairs), without and with the give-up rule
  (`sequential.out_of_reach` before the last doubling);
- `unpaired`: the ratio of the two sides' medians, each side resampled on its own;
- `mean`, `trimmed`: the mean and the 25 %-trimmed mean of the per-pair log ratios.

Replays reuse the measured rounds, so they are not independent trials: the figures rank
the designs; `bench/false_alarms.py` measures the chosen one on fresh sessions.

    python bench/sequential_design.py [--rounds 300] [--replays 100] [--save rounds.json | --load rounds.json]
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from agent.wire.records import Settings  # noqa: E402
from controller.analysis.sequential import Plan, out_of_reach  # noqa: E402
from controller.analysis.verdicts import Interval, classify, judge  # noqa: E402
from controller.runner import RunRequest, run  # noqa: E402
from controller.store import open_store  # noqa: E402

PLANTED = ROOT / "examples" / "models" / "planted"
COPIES = {"quiet_a.tflite": "base", "quiet_b.tflite": "base", "planted_5.tflite": "slower_5",
          "planted_10.tflite": "slower_10", "planted_20.tflite": "slower_20"}
# Kind of pair -> (baseline cell, candidate cell).
PAIRS = {"quiet": ("quiet_a.tflite", "quiet_b.tflite"), "+5 %": ("quiet_a.tflite", "planted_5.tflite"),
         "+10 %": ("quiet_b.tflite", "planted_10.tflite"), "+20 %": ("quiet_a.tflite", "planted_20.tflite")}
THRESHOLD = 0.05
RESAMPLES = 4000


def measure(rounds: int) -> dict[str, list[float]]:
    """Per-round p50 (us) of the five cells, in round order, through a private local agent."""
    with tempfile.TemporaryDirectory() as scratch:
        os.environ["XDG_DATA_HOME"] = scratch
        models = []
        for name, copy in COPIES.items():
            target = Path(scratch) / name
            target.write_bytes((PLANTED / copy / "conv_stack.tflite").read_bytes())
            models.append(str(target))
        with open_store(Path(scratch) / "design.sqlite") as store:
            report = run(RunRequest(devices=["local"], models=models, threads=[1], delegates=["xnnpack"],
                                    rounds=rounds, tag="design", alternate_order=True,
                                    settings=Settings(warmup_min_secs=0.05, min_secs=0.2, num_runs=20)), store)
    by_model: dict[str, list[float]] = {name: [] for name in COPIES}
    for cell in sorted(report.cells, key=lambda c: c.round):
        if cell.status == "ok" and cell.latency_us and cell.latency_us.p50:
            by_model[cell.model].append(cell.latency_us.p50)
    return by_model


def _interval(base: np.ndarray, cand: np.ndarray, design: str, confidence: float, rng) -> tuple[float, float, float]:
    """Estimate, low and high of the relative change under a design other than `median`."""
    tail = (1 - confidence) / 2 * 100
    if design == "unpaired":
        ib, ic = (rng.integers(0, base.size, (RESAMPLES, base.size)) for _ in range(2))
        stats = np.median(cand[ic], axis=1) / np.median(base[ib], axis=1)
        point = np.median(cand) / np.median(base)
    else:
        logs = np.log(cand / base)
        resampled = np.sort(logs[rng.integers(0, logs.size, (RESAMPLES, logs.size))], axis=1)
        cut = logs.size // 4 if design == "trimmed" else 0
        stats = np.exp(resampled[:, cut:logs.size - cut].mean(axis=1))
        ordered = np.sort(logs)
        point = np.exp(ordered[cut:logs.size - cut].mean())
    low, high = np.percentile(stats, [tail, 100 - tail])
    return float(point - 1), float(low - 1), float(high - 1)


def replay(base: np.ndarray, cand: np.ndarray, design: str, give_up: bool, plan: Plan, rng) -> tuple[str, int]:
    """One session replayed on a random order of the measured rounds: verdict and pairs used."""
    order = rng.permutation(min(base.size, cand.size))
    base, cand = base[order], cand[order]
    verdict, used = "INCONCLUSIVE", 0
    for mark in plan.schedule:
        used = mark
        if design == "median":
            verdict, change = judge(list(base[:mark]), list(cand[:mark]), THRESHOLD,
                                    confidence=plan.confidence, paired=True)
            estimate, low, high = change.estimate, change.low, change.high
        else:
            estimate, low, high = _interval(base[:mark], cand[:mark], design, plan.confidence, rng)
            verdict = classify(Interval(estimate, low, high), THRESHOLD)
        if verdict != "INCONCLUSIVE":
            break
        if give_up and 2 * mark >= plan.more_rounds and out_of_reach(
                estimate, low, high, THRESHOLD, mark, plan.more_rounds - mark):
            break
    return verdict, used


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=300)
    parser.add_argument("--replays", type=int, default=100)
    parser.add_argument("--more-rounds", type=int, default=160)
    parser.add_argument("--save", help="write the measured rounds to this JSON file")
    parser.add_argument("--load", help="replay rounds measured earlier (a --save file) instead of measuring")
    args = parser.parse_args()
    if args.load:
        rounds = json.loads(Path(args.load).read_text())
    else:
        started = time.monotonic()
        rounds = measure(args.rounds)
        print(f"measured {args.rounds} rounds of {len(COPIES)} cells in {time.monotonic() - started:.0f} s "
              f"(load average {os.getloadavg()[0]:.1f})")
        if args.save:
            Path(args.save).write_text(json.dumps(rounds))
    data = {name: np.asarray(values, dtype=float) for name, values in rounds.items()}
    truth = {kind: np.median(data[c]) / np.median(data[b]) - 1 for kind, (b, c) in PAIRS.items()}
    print("change over all rounds (ratio of medians): " + ", ".join(f"{k} {v:+.1%}" for k, v in truth.items()))
    plan = Plan(more_rounds=args.more_rounds)
    print(f"looks at {', '.join(map(str, plan.schedule))} pairs, each at {plan.confidence:.2%}; "
          f"{args.replays} replays per design and pair")
    for design, give_up in (("median", False), ("median", True), ("unpaired", False), ("mean", False),
                            ("trimmed", False)):
        rng = np.random.default_rng(1)
        label = design + (" + give-up" if give_up else "")
        for kind, (b, c) in PAIRS.items():
            results = [replay(data[b], data[c], design, give_up, plan, rng) for _ in range(args.replays)]
            shares = {v: sum(r[0] == v for r in results) / len(results)
                      for v in ("REGRESSION", "NO CHANGE", "INCONCLUSIVE", "IMPROVEMENT")}
            print(f"  {label:<17} {kind:<6} " + "  ".join(f"{v} {s:4.0%}" for v, s in shares.items())
                  + f"  mean pairs {np.mean([r[1] for r in results]):.0f}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
