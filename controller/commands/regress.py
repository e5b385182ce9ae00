"""`controller regress`: did the candidate run get slower, fatter or less accurate?"""

from __future__ import annotations

import argparse
import math
import sys

import msgspec

from controller import history
from controller.analysis import regress
from controller.analysis.sequential import DEFAULT_BATCH, DEFAULT_MAX_DEVICE_SECONDS, Plan
from controller.commands import (
    DB_HELP,
    check_output,
    open_results,
    percent,
    print_error,
    print_json,
    stderr_console,
    stdout_console,
    write_output,
)
from controller.preflight import UsageError
from controller.records import RegressReport
from controller.render import annotations, junit
from controller.render.tables import regress_markdown, regress_table
from controller.store import ResultStore, RunNotFound


def register(sub: argparse._SubParsersAction, name: str, help_text: str) -> None:
    """Add `controller regress` and its flags to the parser."""
    p = sub.add_parser(name, help=help_text)
    p.add_argument("--baseline", required=True, metavar="REF",
                   help="run id, tag (its latest run), latest, or last-good (newest earlier run of the "
                        "candidate's tag without a regression)")
    p.add_argument("--candidate", default="latest", metavar="REF", help="run id, tag or latest (default)")
    add_verdict_flags(p)
    p.set_defaults(func=main)


def add_verdict_flags(p: argparse.ArgumentParser) -> None:
    """The flags of how cells are judged and the verdict reported (regress and compare)."""
    p.add_argument("--threshold", type=percent, default="5%", help="minimum latency effect (default 5%%)")
    p.add_argument("--model-threshold", type=model_percent, action="append", default=[], metavar="MODEL=PCT",
                   help="latency threshold for one model file, e.g. tiny.tflite=15%% (repeatable)")
    p.add_argument("--memory-threshold", type=percent, default="10%",
                   help="minimum peak-memory effect (default 10%%)")
    p.add_argument("--accuracy-threshold", type=points, default="1", metavar="POINTS",
                   help="top-1 points that count as an accuracy change (default 1)")
    p.add_argument("--min-rounds", type=int, default=regress.MIN_ROUNDS,
                   help=f"rounds each side needs for a latency verdict (default {regress.MIN_ROUNDS})")
    _add_sequential_flags(p)
    p.add_argument("--fail-on", choices=("regression", "undecided", "never"), default="regression",
                   help="exit 1 on a confirmed regression (default); `undecided` also exits 3 when a cell "
                        "stayed INCONCLUSIVE; `never` exits 0")
    p.add_argument("--fail-on-metric", type=metric_names, default=tuple(regress.METRICS), metavar="METRICS",
                   help=f"metrics whose regression fails the check, e.g. latency,memory (default all: "
                        f"{','.join(regress.METRICS)}); a candidate that fails to run always does")
    p.add_argument("--markdown", nargs="?", const="-", metavar="OUT.md",
                   help="also write a Markdown summary (to stdout without a path), e.g. for a CI job summary")
    p.add_argument("--junit", metavar="OUT.xml",
                   help="also write a JUnit XML report: a test case per cell, a failure per regression")
    p.add_argument("--db", help=DB_HELP)
    p.add_argument("--json", action="store_true", help="print the comparison as one JSON document")


def _add_sequential_flags(p: argparse.ArgumentParser) -> None:
    """--more-rounds, --rounds-per-look and --max-device-seconds."""
    p.add_argument("--more-rounds", type=int, default=0, metavar="N",
                   help="measure up to N more rounds per side, in one session on the device, for cells "
                        "not decided yet (default 0: judge what is stored)")
    p.add_argument("--rounds-per-look", type=int, default=DEFAULT_BATCH, metavar="K",
                   help=f"extra rounds per side before the first look at them; each later look doubles "
                        f"the extra rounds so far (default {DEFAULT_BATCH})")
    p.add_argument("--max-device-seconds", type=float, default=DEFAULT_MAX_DEVICE_SECONDS, metavar="S",
                   help="stop measuring more rounds after S seconds on the device "
                        f"(default {DEFAULT_MAX_DEVICE_SECONDS:.0f})")


def model_percent(text: str) -> tuple[str, float]:
    """`MODEL=PCT` as (model, fraction) (an argparse type): one model file's latency threshold."""
    model, sep, value = text.partition("=")
    try:
        if not sep or not model.strip():
            raise argparse.ArgumentTypeError("no MODEL=")
        return model.strip(), percent(value)
    except argparse.ArgumentTypeError:
        raise argparse.ArgumentTypeError(f"expected MODEL=PCT such as tiny.tflite=15%, got {text!r}") from None


def metric_names(text: str) -> tuple[str, ...]:
    """`latency,memory` as metric names (an argparse type): each one of `regress.METRICS`."""
    names = tuple(name.strip() for name in text.split(","))
    unknown = [name for name in names if name not in regress.METRICS]
    if unknown or not all(names):
        raise argparse.ArgumentTypeError(f"expected metrics from {','.join(regress.METRICS)}, got {text!r}")
    return names


def points(text: str) -> float:
    """Top-1 accuracy points from 0 to 100 (an argparse type)."""
    try:
        value = float(text)
    except ValueError:
        value = math.nan
    if not 0 <= value <= 100:  # NaN fails too
        raise argparse.ArgumentTypeError(f"expected top-1 points from 0 to 100, got {text!r}")
    return value


def plan_from(args: argparse.Namespace) -> Plan:
    """The sequential plan the flags name; ValueError with one line when one is out of range."""
    if args.more_rounds < 0 or args.rounds_per_look < 1 or args.max_device_seconds <= 0:
        raise ValueError("--more-rounds must be >= 0, --rounds-per-look >= 1 and --max-device-seconds > 0")
    return Plan(more_rounds=args.more_rounds, batch=args.rounds_per_look, max_device_seconds=args.max_device_seconds)


def thresholds_from(args: argparse.Namespace) -> regress.Thresholds:
    """The thresholds the flags name (parsed by their argparse types); ValueError with one line
    when the sequential plan is out of range."""
    return regress.Thresholds(
        latency=args.threshold, memory=args.memory_threshold, accuracy=args.accuracy_threshold / 100,
        per_model=dict(args.model_threshold), min_rounds=args.min_rounds, confidence=plan_from(args).confidence,
        fail_on_metric=args.fail_on_metric)


def check_outputs(args: argparse.Namespace) -> None:
    """UsageError naming the flag when --junit or --markdown names a path no file can be written to."""
    check_output(args.junit, "--junit")
    check_output(args.markdown, "--markdown")


class NoBaselineYet(LookupError):
    """`last-good` on a first night: no earlier good run of the candidate's tag."""


def resolve_pair(store: ResultStore, baseline: str, candidate: str) -> tuple[str, str]:
    """Run ids for the two references; `last-good` is relative to the candidate's tag.

    NoBaselineYet when `last-good` finds no earlier good run, RunNotFound for other references.
    """
    candidate_id = store.resolve(candidate)
    if baseline == "last-good":
        run = store.load_run(candidate_id)
        try:
            return store.last_good(run.tag, before=candidate_id, devices=sorted(run.devices)), candidate_id
        except RunNotFound as exc:
            raise NoBaselineYet(str(exc)) from None
    return store.resolve(baseline), candidate_id


def first_night(candidate_id: str, thresholds: regress.Thresholds, reason: str) -> RegressReport:
    """The report of a check that has nothing to compare with yet."""
    return RegressReport(baseline=None, candidate=candidate_id, threshold=thresholds.latency,
                         memory_threshold=thresholds.memory, accuracy_threshold=thresholds.accuracy,
                         regressed=False, counts=regress.count_verdicts([]), cells=[],
                         note=f"no baseline yet: {reason}; run {candidate_id} is stored and will be the "
                              "baseline of the next check")


def main(args: argparse.Namespace) -> int:
    """Carry out `controller regress`; returns the exit status."""
    console = stderr_console()
    try:
        thresholds, plan = thresholds_from(args), plan_from(args)
        check_outputs(args)
    except ValueError as exc:  # UsageError too
        print_error(console, exc)
        return 2
    with open_results(args, must_exist=True) as store:
        try:
            baseline_id, candidate_id = resolve_pair(store, args.baseline, args.candidate)
        except NoBaselineYet as exc:
            report = first_night(store.resolve(args.candidate), thresholds, str(exc))
            console.print(report.note, highlight=False)
            return show(report, args)
        except RunNotFound as exc:
            print_error(console, exc)
            return 2
        if baseline_id == candidate_id:
            print_error(console, f"baseline and candidate are the same run ({baseline_id})")
            return 2
        baseline, candidate = store.load_run(baseline_id), store.load_run(candidate_id)
        values = history.run_values(store, baseline_id)
        report = regress.compare(baseline, candidate, thresholds, values)
        if plan.more_rounds:
            from controller import sessions  # the run engine, only when measuring more

            report = sessions.follow_up(report, baseline, candidate, plan, thresholds, store,
                                        history=values)
        store.record_check(candidate_id, baseline_id, report.regressed, msgspec.json.encode(report).decode())
    if not candidate.complete:
        console.print(f"[yellow]warning:[/yellow] candidate run {candidate_id} is incomplete")
    return show(report, args)


def show(report: RegressReport, args: argparse.Namespace) -> int:
    """Print and write the report as the flags ask (table, JSON, Markdown, JUnit, GitHub
    annotations); the exit status it implies."""
    console = stderr_console()
    try:
        if args.junit:
            write_output(args.junit, "--junit", junit.to_xml(report))
        if args.markdown and args.markdown != "-":
            write_output(args.markdown, "--markdown", regress_markdown(report))
    except UsageError as exc:
        print_error(console, exc)
        return 2
    if annotations.in_github_actions():
        # stderr: stdout may carry the one JSON document; the runner reads commands on both.
        for line in annotations.lines(report):
            print(line, file=sys.stderr)
    if args.json:
        print_json(report)
    # stdout carries one document: the JSON, else the Markdown when it goes there, else the table.
    markdown_out = args.markdown == "-" and not args.json
    (console if args.json or markdown_out else stdout_console()).print(regress_table(report))
    if args.markdown == "-":
        (sys.stdout if markdown_out else sys.stderr).write(regress_markdown(report))
    return exit_status(report, args.fail_on, console)


def exit_status(report: RegressReport, fail_on: str, console) -> int:
    """The contract's status: 2 when nothing was compared, 1 on a confirmed regression (of a metric
    `--fail-on-metric` allows), 3 with `--fail-on undecided` when a cell stayed INCONCLUSIVE."""
    if report.baseline is not None and not report.cells:
        print_error(console, f"runs {report.baseline} and {report.candidate} share no cell (device, model, delegate "
                             "and threads): nothing was compared")
        return 2
    if fail_on == "never":
        return 0
    if report.regressed:
        return 1
    return 3 if fail_on == "undecided" and report.counts.get("INCONCLUSIVE", 0) else 0
