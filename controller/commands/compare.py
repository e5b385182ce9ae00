"""`controller compare`: two model files measured A/B in one session on one device."""

from __future__ import annotations

import argparse
from pathlib import Path

from agent.formats.modelfile import ModelFormatError
from controller import preflight
from controller.commands import (
    add_settings_flags,
    comma_ints,
    comma_names,
    open_results,
    print_error,
    settings_from,
    stderr_console,
)
from controller.commands import regress as regress_command


def register(sub: argparse._SubParsersAction, name: str, help_text: str) -> None:
    """Add `controller compare` and its flags to the parser."""
    p = sub.add_parser(name, help=help_text)
    p.add_argument("--baseline-model", required=True, metavar="A.tflite")
    p.add_argument("--candidate-model", required=True, metavar="B.tflite")
    p.add_argument("--device", required=True, help="profile name")
    p.add_argument("--threads", type=comma_ints, help="thread counts (default: profile)")
    p.add_argument("--delegates", type=comma_names, help="delegates (default: profile)")
    p.add_argument("--rounds", type=int, default=5, help="rounds per side before the first look (default 5)")
    add_settings_flags(p)
    p.add_argument("--tag", default="compare", help="tag of the session runs (default compare)")
    regress_command.add_verdict_flags(p)
    p.set_defaults(func=main)


def main(args: argparse.Namespace) -> int:
    """Carry out `controller compare`; returns the exit status."""
    from controller import sessions  # the run engine

    console = stderr_console()
    settings = settings_from(args)
    try:
        thresholds, plan = regress_command.thresholds_from(args), regress_command.plan_from(args)
        regress_command.check_outputs(args)  # before the session, not after minutes of measuring
        (profile,) = preflight.check_run([args.device], args.threads, settings, args.rounds, None, args.db)
        for path in (args.baseline_model, args.candidate_model):
            if not Path(path).is_file():
                raise ValueError(f"{path}: no such file")
    except ValueError as exc:
        print_error(console, exc)
        return 2
    with open_results(args) as store:
        try:
            report = sessions.compare_models(
                Path(args.baseline_model), Path(args.candidate_model), args.device,
                args.delegates or profile.delegates, args.threads or profile.threads, args.rounds, settings,
                plan, thresholds, store, tag=args.tag)
        except (ModelFormatError, OSError) as exc:
            print_error(console, exc)
            return 2
    if not any(sum(c.latency_p50.rounds) for c in report.cells):
        print_error(console, "nothing could be measured: "
                    + "; ".join(report.more_rounds.notes if report.more_rounds else []))
        return 2
    return regress_command.show(report, args)
