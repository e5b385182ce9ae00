"""`controller run`: measure models on devices and store the results."""

from __future__ import annotations

import argparse
import signal
from typing import Optional

from agent.formats.preprocess import PreprocessError, load_spec
from controller import families, preflight, profiles
from controller.analysis import variants
from controller.commands import (
    DB_HELP,
    add_settings_flags,
    comma_ints,
    comma_list,
    comma_names,
    open_results,
    print_error,
    print_json,
    settings_from,
    stderr_console,
    stdout_console,
)
from controller.records import RunReport, new_run_id
from controller.render.progress import ProgressDisplay
from controller.render.tables import results_table, top_ops_tables, variants_table
from controller.runner import NothingToMeasure, RunRequest, resume, run
from controller.store import RunNotFound


def register(sub: argparse._SubParsersAction, name: str, help_text: str) -> None:
    """Add `controller run` and its flags to the parser."""
    p = sub.add_parser(name, help=help_text)
    p.add_argument("--device", type=comma_list, default=[], help="profile name(s), comma-separated")
    p.add_argument("--fleet", metavar="FILE",
                   help="a TOML file listing devices (`devices = [\"pi4\", \"pi5\"]`), measured at once")
    p.add_argument("--models", nargs="+", metavar="PATH",
                   help=".tflite files, directories or quoted globs")
    p.add_argument("--threads", type=comma_ints, help="thread counts, e.g. 1,2,4 (default: profile)")
    p.add_argument("--delegates", type=comma_names, help="e.g. cpu,xnnpack (default: profile)")
    add_settings_flags(p)
    p.add_argument("--rounds", type=int, default=1, help="repeat the whole matrix this many times")
    p.add_argument("--dataset", metavar="DIR",
                   help="class-per-directory images: measure top-1/top-5 accuracy on the device")
    p.add_argument("--preprocess", metavar="SPEC.toml", help="how dataset images become input tensors")
    p.add_argument("--reference", metavar="MODEL",
                   help="compare every model's outputs with this one (default: each family's fp32 member)")
    p.add_argument("--family", action="append", default=[], metavar="NAME=GLOB[,GLOB]",
                   help="group models into a variant family by file name (repeatable)")
    p.add_argument("--require-full-delegation", action="store_true",
                   help="fail a cell whose delegate did not take every node of the graph")
    p.add_argument("--op-profile", action="store_true",
                   help="also profile every cell per op, in a phase after its timed phase "
                        "(default: the profile's op_profile)")
    p.add_argument("--accuracy-tolerance", type=float, default=variants.DEFAULT_TOLERANCE * 100,
                   metavar="POINTS", help="top-1 points a recommended variant may lose (default: 1)")
    p.add_argument("--tag", help="label for this run (e.g. nightly)")
    p.add_argument("--meta", action="append", default=[], metavar="KEY=VALUE",
                   help="free-form run metadata, e.g. commit=abc123 (repeatable)")
    p.add_argument("--job-timeout", type=float, metavar="SECONDS",
                   help="give up on a device whose agent makes no progress this long (default: each job's "
                        "slowest cell at its --max-secs, plus the cooldown and a margin)")
    p.add_argument("--resume", metavar="RUN_ID",
                   help="finish an interrupted run: collect what agents kept, measure what is missing")
    p.add_argument("--db", help=DB_HELP)
    p.add_argument("--json", action="store_true", help="print the run as one JSON document")
    p.set_defaults(func=main)


def parse_meta(items: list[str]) -> dict[str, str]:
    """`--meta key=value` items as a dict; ValueError for an item without `=`."""
    meta = {}
    for item in items:
        key, sep, value = item.partition("=")
        if not sep or not key.strip():
            raise ValueError(f"--meta expects KEY=VALUE, got {item!r}")
        meta[key.strip()] = value.strip()
    return meta


def _interrupt(*_) -> None:
    raise KeyboardInterrupt


def main(args: argparse.Namespace) -> int:
    """Carry out `controller run`; returns the exit status."""
    console = stderr_console()
    try:
        devices = args.device + (profiles.load_fleet(args.fleet) if args.fleet else [])
        spec = load_spec(args.preprocess) if args.preprocess else None
        family_map = families.parse_mapping(args.family)
        meta = parse_meta(args.meta)
    except (PreprocessError, families.FamilyError, profiles.ProfileError, ValueError) as exc:
        print_error(console, exc)
        return 2
    if args.resume is None and not (devices and args.models):
        print_error(console, "--device (or --fleet) and --models are required (unless --resume RUN_ID)")
        return 2
    settings = settings_from(args)
    try:
        preflight.check_job_timeout(args.job_timeout)
        if args.resume is None:
            preflight.check_run(devices, args.threads, settings, args.rounds, args.accuracy_tolerance, args.db)
        else:
            preflight.check_db(args.db)
    except preflight.UsageError as exc:
        print_error(console, exc)
        return 2
    request = RunRequest(
        devices=list(dict.fromkeys(devices)), models=args.models, threads=args.threads, delegates=args.delegates,
        settings=settings,
        rounds=args.rounds, tag=args.tag, dataset=args.dataset, preprocess=spec,
        reference=args.reference, families=family_map, accuracy_tolerance=args.accuracy_tolerance / 100,
        require_full_delegation=args.require_full_delegation, op_profile=args.op_profile, meta=meta,
        job_timeout_s=args.job_timeout,
    )
    # SIGTERM (a CI job cancelled, systemd stopping a timer's service) ends the run like
    # Ctrl-C: what is stored stays, and the run is marked incomplete.
    signal.signal(signal.SIGTERM, _interrupt)
    # Our own id, not "latest": other controllers may be storing runs in the same database.
    run_id = new_run_id()
    with open_results(args) as store, ProgressDisplay(console) as display:
        try:
            stored_before = store.count_cells(store.resolve(args.resume)) if args.resume else 0
            report = (resume(args.resume, store, display, job_timeout_s=args.job_timeout) if args.resume
                      else run(request, store, display, run_id=run_id))
        except (NothingToMeasure, RunNotFound) as exc:
            print_error(console, exc)
            return 2
        except KeyboardInterrupt:
            if not (args.resume or store.has_run(run_id)):
                console.print("[red]interrupted[/red] before the run started: nothing was stored")
                return 130
            report = store.load_run(store.resolve(args.resume) if args.resume else run_id)
            console.print(f"[red]interrupted:[/red] the {len(report.cells)} cell(s) measured so far are stored "
                          f"and the run is marked incomplete; `controller run --resume {report.run_id}` "
                          "measures the rest")
            show(report, args.json, console)
            return 130
    show(report, args.json, console)
    return _status(report, console, resumed=stored_before if args.resume else None)


def _status(report: RunReport, console, resumed: Optional[int]) -> int:
    """The exit status of a finished run (the contract's): 2, with one line why, when the results
    could not be kept, nothing was measured, or a resume left cells unmeasured and measured none."""
    if report.store_problem is not None:
        print_error(console, f"results database: {report.store_problem}")
        return 2
    # Nothing measured: no device answered, or no cell came back ok (every one failed).
    if not any(cell.status == "ok" for cell in report.cells):
        print_error(console, "nothing was measured: no cell finished ok")
        return 2
    if resumed is not None and not report.complete and len(report.cells) == resumed:
        why = report.errors[-1] if report.errors else "no device answered"
        print_error(console, f"the resume of {report.run_id} measured nothing: {why}")
        return 2
    return 0


def show(report: RunReport, as_json: bool, console) -> None:
    """The run as one JSON document on stdout (tables to stderr), or as tables on stdout."""
    out = console if as_json else stdout_console()
    if as_json:
        print_json(report)
    out.print(results_table(report))
    for table in top_ops_tables(report):
        out.print(table)
    for comparison in report.variants:
        out.print(variants_table(comparison))
