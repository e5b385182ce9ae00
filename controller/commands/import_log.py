"""`controller import-log`: a `benchmark_model` console log someone ran by hand, stored as a run."""

from __future__ import annotations

import argparse
from pathlib import Path

from agent.formats.modelfile import ModelFormatError
from controller import models
from controller.commands import DB_HELP, open_results, print_json, stderr_console, stdout_console
from controller.imported import UnknownThreads, import_log
from controller.render.tables import results_table


def register(sub: argparse._SubParsersAction, name: str, help_text: str) -> None:
    """Add `controller import-log` and its flags to the parser."""
    p = sub.add_parser(name, help=help_text)
    p.add_argument("file", metavar="FILE", help="the console output (adb shell, logcat or a file)")
    p.add_argument("--device", required=True, help="device name the result is filed under")
    p.add_argument("--model", required=True, metavar="PATH", help="the .tflite file the log measured")
    p.add_argument("--delegate", help="delegate name, when the log does not say (default: what the log says)")
    p.add_argument("--threads", type=int, help="thread count (default: read from the log's parameters)")
    p.add_argument("--tag", help="label for this run")
    p.add_argument("--db", help=DB_HELP)
    p.add_argument("--json", action="store_true", help="print the run as one JSON document")
    p.set_defaults(func=main)


def main(args: argparse.Namespace) -> int:
    """Carry out `controller import-log`; returns the exit status."""
    console = stderr_console()
    if args.threads is not None and args.threads < 1:
        console.print("[red]error:[/red] --threads must be at least 1", highlight=False)
        return 2
    try:
        text = Path(args.file).read_text(encoding="utf-8", errors="replace")
    except OSError as exc:
        console.print(f"[red]error:[/red] {args.file}: {exc.strerror or exc}", highlight=False)
        return 2
    try:
        source = models.load(Path(args.model))
    except (OSError, ModelFormatError) as exc:
        reason = exc.strerror if isinstance(exc, OSError) and exc.strerror else exc
        console.print(f"[red]error:[/red] {args.model}: {reason}", highlight=False)
        return 2
    try:
        with open_results(args) as store:
            report = import_log(store, text, source, args.device, args.delegate, args.threads, args.tag)
    except UnknownThreads as exc:
        console.print(f"[red]error:[/red] {args.file}: {exc}", highlight=False)
        return 2
    if args.json:
        print_json(report)
        console.print(results_table(report))
    else:
        stdout_console().print(results_table(report))
    return 0
