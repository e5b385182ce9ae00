"""One module per `controller` command, each with `register(subparsers)`."""

from __future__ import annotations

import argparse
import sys

import msgspec
from rich.console import Console

from controller import locations
from controller.store import ResultStore, open_store

DB_HELP = ("results database: a SQLite file or postgresql://user@host:port/db "
           "(default: EDGEBENCH_DB or the user data dir)")


def comma_list(text: str) -> list[str]:
    """`a,b,c` as a list, ignoring empty items."""
    return [item.strip() for item in text.split(",") if item.strip()]


def comma_names(text: str) -> list[str]:
    """`a,b,c` as a non-empty list (an argparse type): `--delegates ,` names nothing."""
    names = comma_list(text)
    if not names or len(names) != len(text.split(",")):
        raise argparse.ArgumentTypeError(f"expected comma-separated names, got {text!r}")
    return names


def comma_ints(text: str) -> list[int]:
    """`1,2,4` as positive integers (an argparse type)."""
    try:
        values = [int(item) for item in comma_list(text)]
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected comma-separated integers, got {text!r}") from None
    if not values or any(v < 1 for v in values):
        raise argparse.ArgumentTypeError(f"expected positive integers, got {text!r}")
    return values


def open_results(args: argparse.Namespace, must_exist: bool = False) -> ResultStore:
    """The store `--db` names, else `EDGEBENCH_DB`, else the default file.

    `must_exist` for commands that only read: a missing SQLite file is then an error,
    not a new empty database.
    """
    return open_store(args.db or locations.default_db(), must_exist=must_exist)


def print_json(record) -> None:
    """Exactly one JSON document on stdout."""
    sys.stdout.write(msgspec.json.encode(record).decode() + "\n")
    sys.stdout.flush()


def _console(stream) -> Console:
    # Rich assumes 80 columns when not on a terminal; logs and CI pages are wider.
    return Console(file=stream, width=None if stream.isatty() else 200)


def stdout_console() -> Console:
    """A console for results on stdout."""
    return _console(sys.stdout)


def stderr_console() -> Console:
    """A console for progress and warnings on stderr."""
    return _console(sys.stderr)
