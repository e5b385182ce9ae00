"""`controller export`: stored runs as JSON Lines on stdout, one run document a line."""

from __future__ import annotations

import argparse
import logging
import sys

from controller import exchange
from controller.commands import DB_HELP, open_results, print_error, stderr_console
from controller.store import RunNotFound

log = logging.getLogger(__name__)


def register(sub: argparse._SubParsersAction, name: str, help_text: str) -> None:
    """Add `controller export` and its flags to the parser."""
    p = sub.add_parser(name, help=help_text)
    which = p.add_mutually_exclusive_group()
    which.add_argument("--run", metavar="REF", help="one run: run id, tag (its latest run) or latest")
    which.add_argument("--tag", metavar="TAG", help="every run of a tag")
    which.add_argument("--all", action="store_true", help="every run (the default)")
    which.add_argument("--schema", action="store_true", help="print the run document's JSON Schema instead")
    p.add_argument("--db", help=DB_HELP)
    p.set_defaults(func=main)


def main(args: argparse.Namespace) -> int:
    """Write the selected runs to stdout, oldest first."""
    if args.schema:
        sys.stdout.write(exchange.json_schema_text())
        return 0
    with open_results(args, must_exist=True) as store:
        try:
            run_ids = exchange.select(store, run=args.run, tag=args.tag)
        except RunNotFound as exc:
            print_error(stderr_console(), exc)
            return 2
        for line in exchange.export_lines(store, run_ids):
            sys.stdout.write(line)
        cells = sum(store.count_cells(run_id) for run_id in run_ids)
    sys.stdout.flush()
    log.info("exported %d run(s) with %d cell(s) from %s", len(run_ids), cells, store.location)
    return 0
