"""`controller profile-diff A B`: where two runs or two variants spend their time differently, per op."""

from __future__ import annotations

import argparse
from typing import Optional

from rich.table import Table

from controller.commands import DB_HELP, open_results, print_error, print_json, stderr_console, stdout_console
from controller.history import NothingToCompare, profile_diffs
from controller.records import ProfileDiff
from controller.render.format import format_us
from controller.store import RunNotFound

TOP_CHANGES = 10
# Node keys carry the output tensor's name, which converters make very long.
KEY_WIDTH = 64


def register(sub: argparse._SubParsersAction, name: str, help_text: str) -> None:
    """Add `controller profile-diff` and its flags to the parser."""
    p = sub.add_parser(name, help=help_text)
    p.add_argument("baseline", metavar="A", help="run id, tag or latest; or a model file name (NAME.tflite)")
    p.add_argument("candidate", metavar="B", help="the same kind of reference as A")
    p.add_argument("--run", default="latest", metavar="REF", help="the run two models are taken from")
    p.add_argument("--device", help="only cells of this device")
    p.add_argument("--delegate", help="only cells of this delegate")
    p.add_argument("--threads", type=int, help="only cells with this thread count")
    p.add_argument("--top", type=int, default=TOP_CHANGES, help=f"nodes shown per cell (default {TOP_CHANGES})")
    p.add_argument("--db", help=DB_HELP)
    p.add_argument("--json", action="store_true", help="print the differences as one JSON document")
    p.set_defaults(func=main)


def main(args: argparse.Namespace) -> int:
    """Compare the two references' per-op profiles; 2 when there is nothing to compare."""
    console = stderr_console()
    with open_results(args, must_exist=True) as store:
        try:
            found = profile_diffs(store, args.baseline, args.candidate, args.run, args.device,
                                  args.delegate, args.threads)
        except (RunNotFound, NothingToCompare) as exc:
            print_error(console, exc)
            return 2
    if args.json:
        print_json(found)
    out = console if args.json else stdout_console()
    for one in found:
        out.print(diff_table(one, max(1, args.top)))
    return 0


def _us(value: Optional[float], signed: bool = False) -> str:
    if value is None:
        return "-"
    return ("+" if signed and value >= 0 else "-" if signed else "") + format_us(abs(value) if signed else value)


def diff_table(found: ProfileDiff, top: int) -> Table:
    """Per op type, then the `top` nodes, each with the change in time per run."""
    table = Table(title=f"{found.baseline} → {found.candidate}")
    for name in ("", "op", "A", "B", "change", "B/A"):
        table.add_column(name, justify="left" if name in ("", "op") else "right")
    sections = (("by type", found.by_type), ("nodes", found.nodes[:top]))
    for title, changes in sections:
        for i, change in enumerate(changes):
            key = change.key if len(change.key) <= KEY_WIDTH else change.key[:KEY_WIDTH - 1] + "…"
            table.add_row(title if i == 0 else "", key, _us(change.baseline_us), _us(change.candidate_us),
                          _us(change.change_us, signed=True),
                          "-" if change.ratio is None else f"{change.ratio:.2f}x",
                          end_section=i == len(changes) - 1)
    return table
