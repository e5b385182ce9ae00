"""`controller import FILE.jsonl`: run documents from `controller export` into this database."""

from __future__ import annotations

import argparse
import sys

from controller import exchange
from controller.commands import DB_HELP, open_results, stderr_console


def register(sub: argparse._SubParsersAction, name: str, help_text: str) -> None:
    """Add `controller import` and its flags to the parser."""
    p = sub.add_parser(name, help=help_text)
    p.add_argument("file", metavar="FILE.jsonl", help="JSON Lines from `controller export` ('-' for stdin)")
    p.add_argument("--db", help=DB_HELP)
    p.set_defaults(func=main)


def main(args: argparse.Namespace) -> int:
    """Import the file; 2 when it cannot be read or a line was rejected (the rest is imported)."""
    console = stderr_console()
    try:
        stream = sys.stdin if args.file == "-" else open(args.file, encoding="utf-8")  # noqa: SIM115
    except OSError as exc:
        console.print(f"[red]error:[/red] {args.file}: {exc.strerror or exc}", highlight=False)
        return 2
    with stream, open_results(args) as store:
        summary = exchange.import_lines(store, stream, source=args.file)
    for problem in summary.problems:
        console.print(f"[red]error:[/red] {problem}", highlight=False)
    console.print(summary.line(), highlight=False)
    return 2 if summary.problems else 0
