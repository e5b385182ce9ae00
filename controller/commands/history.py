"""`controller history`: each cell's latency run by run, and the runs where it stepped."""

from __future__ import annotations

import argparse

from controller import history
from controller.commands import DB_HELP, open_results, percent, print_error, print_json, stderr_console, stdout_console
from controller.render.tables import history_table


def register(sub: argparse._SubParsersAction, name: str, help_text: str) -> None:
    """Add `controller history` and its flags to the parser."""
    p = sub.add_parser(name, help=help_text)
    p.add_argument("--tag", help="only runs with this tag (default: all runs but A/B sessions)")
    p.add_argument("--limit", type=int, default=history.DEFAULT_LIMIT, help="newest runs to read (default 100)")
    p.add_argument("--min-effect", type=percent, default="5%", help="smallest step reported (default 5%%)")
    p.add_argument("--db", help=DB_HELP)
    p.add_argument("--json", action="store_true", help="print the history as one JSON document")
    p.set_defaults(func=main)


def main(args: argparse.Namespace) -> int:
    """Carry out `controller history`; returns the exit status."""
    console = stderr_console()
    if args.limit < 1:
        print_error(console, f"--limit must be at least 1, not {args.limit}")
        return 2
    with open_results(args, must_exist=True) as store:
        report = history.load(store, args.tag, args.limit, args.min_effect)
    if args.json:
        print_json(report)
    (console if args.json else stdout_console()).print(history_table(report))
    return 0
