"""How often does `controller regress` cry wolf? Repeated quiet runs, each checked against the last.

Nothing changes between the runs: same machine, models, settings and software. Every
REGRESSION (or IMPROVEMENT) verdict is therefore a false alarm; INCONCLUSIVE is the
honest answer to noise. The yardstick is the number of cell comparisons made.

    python bench/false_alarms.py [--runs 6] [--rounds 5] [--threshold 5%] [--models ...]
"""

from __future__ import annotations

import argparse
import collections
import os
import sys
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from agent.wire.records import Settings  # noqa: E402
from controller.analysis.regress import Thresholds, compare, parse_percent  # noqa: E402
from controller.runner import RunRequest, run  # noqa: E402
from controller.store import open_store  # noqa: E402

DEFAULT_MODELS = [str(p) for p in sorted((ROOT / "examples" / "models").glob("*.tflite"))]


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=6)
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--threshold", default="5%")
    parser.add_argument("--min-secs", type=float, default=0.3)
    parser.add_argument("--models", nargs="+", default=DEFAULT_MODELS)
    args = parser.parse_args()
    thresholds = Thresholds(latency=parse_percent(args.threshold))
    verdicts: collections.Counter[str] = collections.Counter()
    alarms = []
    with tempfile.TemporaryDirectory() as scratch:
        os.environ["XDG_DATA_HOME"] = scratch  # a private local agent and model cache
        with open_store(Path(scratch) / "quiet.sqlite") as store:
            previous = None
            for number in range(args.runs):
                report = run(RunRequest(devices=["local"], models=args.models, rounds=args.rounds, tag="quiet",
                                        settings=Settings(warmup_min_secs=0.1, min_secs=args.min_secs)), store)
                print(f"run {number + 1}/{args.runs}: {report.run_id}, {len(report.cells)} cells", flush=True)
                if previous is not None:
                    check = compare(previous, report, thresholds)
                    for cell in check.cells:
                        verdicts[cell.verdict] += 1
                        if cell.verdict in ("REGRESSION", "IMPROVEMENT"):
                            latency = cell.latency_p50
                            alarms.append(f"{cell.verdict} {cell.model} {cell.delegate} x{cell.threads}: "
                                          f"{latency.change:+.1%} [{latency.low:+.1%}, {latency.high:+.1%}]")
                previous = report
    compared = sum(verdicts.values())
    false = verdicts["REGRESSION"] + verdicts["IMPROVEMENT"]
    print(f"\n{compared} cell comparisons across {args.runs - 1} pairs of quiet runs "
          f"({args.rounds} rounds each, threshold {thresholds.latency:.0%}):")
    for verdict in ("NO CHANGE", "INCONCLUSIVE", "REGRESSION", "IMPROVEMENT"):
        print(f"  {verdict:<13} {verdicts[verdict]:4d}")
    print(f"false alarms: {false} of {compared} ({false / max(compared, 1):.1%}); "
          f"false regressions: {verdicts['REGRESSION']}")
    for line in alarms:
        print("  " + line)
    return 0


if __name__ == "__main__":
    sys.exit(main())
