"""`controller compare`: two model files measured A/B in one session on one device."""

from __future__ import annotations

import argparse
from pathlib import Path

from agent.formats.modelfile import ModelFormatError
from agent.wire.records import Settings
from controller import profiles
from controller.analysis.regress import MIN_ROUNDS
from controller.commands import DB_HELP, comma_ints, comma_list, open_results, stderr_console
from controller.commands import regress as regress_command

_DEFAULTS = Settings()


def register(sub: argparse._SubParsersAction, name: str, help_text: str) -> None:
    """Add `controller compare` and its flags to the parser."""
    p = sub.add_parser(name, help=help_text)
    p.add_argument("--baseline-model", required=True, metavar="A.tflite")
    p.add_argument("--candidate-model", required=True, metavar="B.tflite")
    p.add_argument("--device", required=True, help="profile name")
    p.add_argument("--threads", type=comma_ints, help="thread counts (default: profile)")
    p.add_argument("--delegates", type=comma_list, help="delegates (default: profile)")
    p.add_argument("--rounds", type=int, default=5, help="rounds per side before the first look (default 5)")
    p.add_argument("--warmup-runs", type=int, default=_DEFAULTS.warmup_runs)
    p.add_argument("--warmup-min-secs", type=float, default=_DEFAULTS.warmup_min_secs)
    p.add_argument("--num-runs", type=int, default=_DEFAULTS.num_runs)
    p.add_argument("--min-secs", type=float, default=_DEFAULTS.min_secs)
    p.add_argument("--max-secs", type=float, default=_DEFAULTS.max_secs)
    p.add_argument("--threshold", default="5%", help="minimum latency effect (default 5%%)")
    p.add_argument("--memory-threshold", default="10%", help="minimum peak-memory effect (default 10%%)")
    p.add_argument("--accuracy-threshold", default="1", metavar="POINTS")
    p.add_argument("--min-rounds", type=int, default=MIN_ROUNDS)
    p.add_argument("--model-threshold", action="append", default=[], metavar="MODEL=PCT")
    regress_command.add_sequential_flags(p)
    p.add_argument("--fail-on", choices=("regression", "never"), default="regression")
    p.add_argument("--markdown", nargs="?", const="-", metavar="OUT.md")
    p.add_argument("--tag", default="compare", help="tag of the session runs (default compare)")
    p.add_argument("--db", help=DB_HELP)
    p.add_argument("--json", action="store_true", help="print the comparison as one JSON document")
    p.set_defaults(func=main)


def main(args: argparse.Namespace) -> int:
    """Carry out `controller compare`; returns the exit status."""
    from controller import sessions  # the run engine

    console = stderr_console()
    try:
        thresholds, plan = regress_command.thresholds_from(args), regress_command.plan_from(args)
        if args.rounds < 1:
            raise ValueError("--rounds must be at least 1")
        profile = profiles.load(args.device)
        for path in (args.baseline_model, args.candidate_model):
            if not Path(path).is_file():
                raise ValueError(f"{path}: no such file")
    except (ValueError, profiles.ProfileError) as exc:
        console.print(f"[red]error:[/red] {exc}", highlight=False)
        return 2
    settings = Settings(warmup_runs=args.warmup_runs, warmup_min_secs=args.warmup_min_secs,
                        num_runs=args.num_runs, min_secs=args.min_secs, max_secs=args.max_secs)
    with open_results(args) as store:
        try:
            report = sessions.compare_models(
                Path(args.baseline_model), Path(args.candidate_model), args.device,
                args.delegates or profile.delegates, args.threads or profile.threads, args.rounds, settings,
                plan, thresholds, store, tag=args.tag)
        except (ModelFormatError, OSError) as exc:
            console.print(f"[red]error:[/red] {exc}", highlight=False)
            return 2
    if not any(sum(c.latency_p50.rounds) for c in report.cells):
        console.print("[red]error:[/red] nothing could be measured: "
                      + "; ".join(report.more_rounds.notes if report.more_rounds else []), highlight=False)
        return 2
    return regress_command.show(report, args)
