"""`controller import-log`: a `benchmark_model` console log someone ran by hand, stored as a run."""

from __future__ import annotations

import argparse
from pathlib import Path

from rich.markup import escape

from agent.formats.modelfile import ModelFormatError
from agent.wire.text import printable
from controller import models, validate
from controller.commands import DB_HELP, open_results, print_error, print_json, stderr_console, stdout_console
from controller.imported import ModelMismatch, UnknownThreads, import_log
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
    p.add_argument("--strict", action="store_true",
                   help="store nothing (exit 2) when the log's own model file name or size is not --model's "
                        "(default: store it with a warning)")
    p.add_argument("--db", help=DB_HELP)
    p.add_argument("--json", action="store_true", help="print the run as one JSON document")
    p.set_defaults(func=main)


def main(args: argparse.Namespace) -> int:
    """Carry out `controller import-log`; returns the exit status."""
    console = stderr_console()

    def error(line: str) -> int:
        print_error(console, line)
        return 2

    try:
        # `--device` is the name the result is filed under (no profile needed: the log may come
        # from a phone in another lab), held to the bounds every stored name keeps.
        validate.check_name(args.device, "--device")
        if args.tag is not None:
            validate.check_name(args.tag, "--tag")
        if args.delegate is not None:
            validate.check_delegate(args.delegate, "--delegate")
        if args.threads is not None:
            validate.check_threads(args.threads, "--threads")
    except validate.DocumentError as exc:
        return error(str(exc))
    try:
        text = Path(args.file).read_text(encoding="utf-8", errors="replace")
    except OSError as exc:
        return error(f"{args.file}: {exc.strerror or exc}")
    try:
        source = models.load(Path(args.model))
    except (OSError, ModelFormatError) as exc:
        reason = exc.strerror if isinstance(exc, OSError) and exc.strerror else exc
        return error(f"{args.model}: {reason}")
    try:
        with open_results(args) as store:
            report = import_log(store, text, source, args.device, args.delegate, args.threads, args.tag,
                                args.strict)
    except (UnknownThreads, ModelMismatch, validate.DocumentError) as exc:
        return error(f"{args.file}: {exc}")
    # What the log does not say, or says against the command line, is stored with the cell;
    # the person importing it reads it here too.
    for cell in report.cells:
        for line in cell.warnings:
            console.print(f"[yellow]warning:[/yellow] {escape(printable(line))}", highlight=False, soft_wrap=True)
    if args.json:
        print_json(report)
        console.print(results_table(report))
    else:
        stdout_console().print(results_table(report))
    return 0
