"""Does `controller history` find a step at its first night, and how often does it cry wolf?

Measures RUNS real runs of one cell (the planted base network, examples/models/planted/base,
xnnpack, one thread), each a whole `controller run` with its own local agent and ROUNDS
rounds, so that run-to-run noise is the real one of this machine. Then replays histories made
of those runs in random order:

- planted steps: Q quiet runs, then three runs whose rounds are multiplied by the step
  (x1.10, x1.20, x2): is a step found, and at the first run after it?
- quiet histories of 30 runs: how many show a step that is not there?

Every history goes through `controller.analysis.steps.find_steps` as `controller history`
calls it (run values and their rounds). Replays reuse the measured runs, so they are not
independent trials.

    python bench/step_power.py [--runs 40] [--rounds 5] [--replays 200] [--save runs.json | --load runs.json]
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import tempfile
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from agent.wire.records import Settings  # noqa: E402
from controller.analysis.steps import find_steps  # noqa: E402
from controller.runner import RunRequest, run  # noqa: E402
from controller.store import open_store  # noqa: E402

MODEL = ROOT / "examples" / "models" / "planted" / "base" / "conv_stack.tflite"
STEPS = (1.10, 1.20, 2.0)
QUIET_BEFORE = (3, 5, 10)
AFTER = 3
QUIET_RUNS = 30


def measure(runs: int, rounds: int) -> list[list[float]]:
    """Per run, the p50 (us) of each of its rounds: `runs` separate runs, each its own session."""
    measured = []
    with tempfile.TemporaryDirectory() as scratch:
        os.environ["XDG_DATA_HOME"] = scratch
        settings = Settings(warmup_runs=2, warmup_min_secs=0.0, num_runs=20, min_secs=0.1, max_secs=10.0)
        with open_store(Path(scratch) / "runs.sqlite") as store:
            for n in range(runs):
                report = run(RunRequest(devices=["local"], models=[str(MODEL)], threads=[1], delegates=["xnnpack"],
                                        settings=settings, rounds=rounds), store)
                measured.append([c.latency_us.p50 for c in report.cells if c.status == "ok"])
                print(f"run {n + 1}/{runs}: median {np.median(measured[-1]):.0f} us", file=sys.stderr)
    return measured


def replay(runs: list[list[float]], quiet: int, step: float, rng: np.random.Generator) -> tuple[bool, bool]:
    """One history: `quiet` runs, then AFTER runs slower by `step`. (found, found at its first run)."""
    chosen = [runs[i] for i in rng.choice(len(runs), size=quiet + AFTER, replace=False)]
    rounds = [list(r) for r in chosen[:quiet]] + [[v * step for v in r] for r in chosen[quiet:]]
    found = find_steps([float(np.median(r)) for r in rounds], rounds=rounds)
    return bool(found), any(s.position == quiet for s in found)


def false_steps(runs: list[list[float]], rng: np.random.Generator) -> int:
    """Steps found in one quiet history of QUIET_RUNS runs in random order."""
    chosen = [runs[i] for i in rng.choice(len(runs), size=min(QUIET_RUNS, len(runs)), replace=False)]
    return len(find_steps([float(np.median(r)) for r in chosen], rounds=chosen))


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=40)
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--replays", type=int, default=200)
    parser.add_argument("--seed", type=int, default=7)
    parser.add_argument("--save", type=Path)
    parser.add_argument("--load", type=Path)
    args = parser.parse_args()
    runs = json.loads(args.load.read_text()) if args.load else measure(args.runs, args.rounds)
    if args.save:
        args.save.write_text(json.dumps(runs))
    rng = np.random.default_rng(args.seed)
    values = np.log([np.median(r) for r in runs])
    result = {"runs": len(runs), "rounds_per_run": args.rounds, "replays": args.replays,
              "run_to_run_sd_log": round(float(np.std(np.diff(values)) / np.sqrt(2)), 4),
              "within_run_sd_log": round(float(np.median([np.std(np.log(r), ddof=1) for r in runs])), 4),
              "planted": {}, "quiet_histories_with_a_false_step": None}
    for step in STEPS:
        for quiet in QUIET_BEFORE:
            outcomes = [replay(runs, quiet, step, rng) for _ in range(args.replays)]
            result["planted"][f"x{step:g} after {quiet}"] = {
                "found": sum(found for found, _ in outcomes) / args.replays,
                "at_its_first_run": sum(first for _, first in outcomes) / args.replays}
    quiet_counts = [false_steps(runs, rng) for _ in range(args.replays)]
    result["quiet_histories_with_a_false_step"] = sum(n > 0 for n in quiet_counts) / args.replays
    print(json.dumps(result, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
