"""`controller import FILE.jsonl`: run documents from `controller export` into this database."""

from __future__ import annotations

import argparse
import sys

from controller import exchange
from controller.commands import DB_HELP, open_results, print_error, stderr_console


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
        # Bytes: a line that is not UTF-8 is rejected on its own, not the rest of the file with it.
        stream = sys.stdin.buffer if args.file == "-" else open(args.file, "rb")  # noqa: SIM115
    except OSError as exc:
        print_error(console, f"{args.file}: {exc.strerror or exc}")
        return 2
    with stream, open_results(args) as store:
        try:
            summary = exchange.import_lines(store, stream, source=args.file)
        except OSError as exc:  # a directory, or a read error halfway
            print_error(console, f"{args.file}: {exc.strerror or exc}")
            return 2
    for problem in summary.problems:
        print_error(console, problem)
    console.print(summary.line(), highlight=False)
    return 2 if summary.problems else 0
