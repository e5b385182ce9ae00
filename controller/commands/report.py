"""`controller report`: a run and its history as HTML, Markdown, CSV or a terminal table."""

from __future__ import annotations

import argparse
import io

from rich.markup import escape

from controller.commands import (
    DB_HELP,
    check_output,
    open_results,
    print_error,
    stderr_console,
    stdout_console,
    write_output,
)
from controller.history import HISTORY_RUNS, load_history
from controller.preflight import UsageError
from controller.render import report
from controller.render.tables import results_table, variants_table
from controller.store import RunNotFound


def register(sub: argparse._SubParsersAction, name: str, help_text: str) -> None:
    """Add `controller report` and its flags to the parser."""
    p = sub.add_parser(name, help=help_text)
    p.add_argument("--run", default="latest", metavar="REF", help="run id, tag (its latest run) or latest")
    p.add_argument("--html", metavar="OUT.html", help="one self-contained HTML file with plots")
    p.add_argument("--markdown", metavar="OUT.md", help="Markdown tables ('-' for stdout)")
    p.add_argument("--csv", metavar="OUT.csv", help="one row per cell ('-' for stdout)")
    p.add_argument("--history", type=int, default=HISTORY_RUNS, metavar="N",
                   help=f"runs in the trend (default {HISTORY_RUNS})")
    p.add_argument("--tag", help="history from runs of this tag only (default: every run with one of the cells)")
    p.add_argument("--db", help=DB_HELP)
    p.set_defaults(func=main)


def main(args: argparse.Namespace) -> int:
    """Carry out `controller report`; returns the exit status."""
    console = stderr_console()
    try:
        # Before the plots are drawn: a mistyped path costs nothing.
        for flag, path in (("--html", args.html), ("--markdown", args.markdown), ("--csv", args.csv)):
            check_output(path, flag)
        with open_results(args, must_exist=True) as store:
            history = load_history(store, args.run, max(1, args.history), args.tag)
        if args.html:
            write_output(args.html, "--html", report.render_html(history))
            console.print(f"wrote {escape(args.html)}", highlight=False, soft_wrap=True)
        if args.markdown:
            write_output(args.markdown, "--markdown", report.render_markdown(history))
        if args.csv:
            rows = io.StringIO()
            report.write_csv(history.run, rows)
            write_output(args.csv, "--csv", rows.getvalue())
    except (RunNotFound, UsageError) as exc:
        print_error(console, exc)
        return 2
    if not (args.html or args.markdown or args.csv):
        out = stdout_console()
        out.print(results_table(history.run))
        for comparison in history.run.variants:
            out.print(variants_table(comparison))
    return 0
