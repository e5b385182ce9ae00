"""One module per `controller` command, each with `register(subparsers)`."""

from __future__ import annotations

import argparse
import sys

import msgspec
from rich.console import Console

from agent.wire.records import Settings
from controller import locations
from controller.store import ResultStore, open_store

DB_HELP = ("results database: a SQLite file or postgresql://user@host:port/db "
           "(default: EDGEBENCH_DB or the user data dir)")


def add_settings_flags(p: argparse.ArgumentParser) -> None:
    """The warmup and timed-phase flags of every command that measures (run and compare)."""
    defaults = Settings()
    p.add_argument("--warmup-runs", type=int, default=defaults.warmup_runs)
    p.add_argument("--warmup-min-secs", type=float, default=defaults.warmup_min_secs)
    p.add_argument("--num-runs", type=int, default=defaults.num_runs,
                   help="timed phase: at least this many invokes")
    p.add_argument("--min-secs", type=float, default=defaults.min_secs,
                   help="timed phase: at least this long")
    p.add_argument("--max-secs", type=float, default=defaults.max_secs,
                   help="timed phase and warmup: at most this long")
    p.add_argument("--run-delay", type=float, default=defaults.run_delay,
                   help="seconds to sleep between timed invokes")


def settings_from(args: argparse.Namespace) -> Settings:
    """The Settings the flags of `add_settings_flags` name (checked by `preflight.check_settings`)."""
    return Settings(warmup_runs=args.warmup_runs, warmup_min_secs=args.warmup_min_secs, num_runs=args.num_runs,
                    min_secs=args.min_secs, max_secs=args.max_secs, run_delay=args.run_delay)


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
