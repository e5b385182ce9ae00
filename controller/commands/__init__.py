"""One module per `controller` command, each with `register(subparsers)`."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path
from typing import Optional

import msgspec
from rich.console import Console
from rich.markup import escape

from agent.wire.records import Settings
from agent.wire.text import printable
from controller import locations
from controller.preflight import UsageError
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
    """`1,2,4` as positive integers (an argparse type): `1,,2` has an empty item, not two."""
    items = [item.strip() for item in text.split(",")]
    if not all(items):
        raise argparse.ArgumentTypeError(f"expected comma-separated integers, got {text!r} (an empty item)")
    try:
        values = [int(item) for item in items]
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected comma-separated integers, got {text!r}") from None
    if any(v < 1 for v in values):
        raise argparse.ArgumentTypeError(f"expected positive integers, got {text!r}")
    return values


def percent(text: str) -> float:
    """`5%`, `5` or `0.05` as the fraction 0.05 (an argparse type, so that a bad value names its flag)."""
    from controller.analysis.regress import parse_percent  # numpy: only the commands that judge load it

    try:
        return parse_percent(text)
    except ValueError:
        message = f"expected a percentage such as 5% (or a fraction such as 0.05), got {text!r}"
        raise argparse.ArgumentTypeError(message) from None


def check_output(path: Optional[str], flag: str) -> None:
    """UsageError naming `flag` unless `path` ('-' or None: nothing to write) can become a file:
    not a directory, in a directory that exists. Checked before the work the file is for."""
    if path is None or path == "-":
        return
    target = Path(path)
    if target.is_dir():
        raise UsageError(f"{flag} {path} is a directory, not a file")
    if not target.parent.is_dir():
        raise UsageError(f"{flag} {path}: directory {target.parent} does not exist")


def write_output(path: str, flag: str, text: str) -> None:
    """`text` into the file `flag` names ('-': stdout); UsageError naming the flag and the file
    when it cannot be written (a read-only directory, a full disk)."""
    if path == "-":
        sys.stdout.write(text)
        return
    try:
        with open(path, "w", encoding="utf-8", newline="") as f:
            f.write(text)
    except OSError as exc:
        raise UsageError(f"{flag} {path}: {exc.strerror or exc}") from None


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


def print_error(console: Console, message: object) -> None:
    """`error: MESSAGE` as one line: the message shown as it is, no markup and no control characters."""
    console.print(f"[red]error:[/red] {escape(printable(str(message)))}", highlight=False, soft_wrap=True)


def _console(stream) -> Console:
    # Rich assumes 80 columns when not on a terminal; logs and CI pages are wider.
    return Console(file=stream, width=None if stream.isatty() else 200)


def stdout_console() -> Console:
    """A console for results on stdout."""
    return _console(sys.stdout)


def stderr_console() -> Console:
    """A console for progress and warnings on stderr."""
    return _console(sys.stderr)
