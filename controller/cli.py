"""`controller` command line: parses arguments and hands off to one module per command.

Only the chosen command's module is imported, so `controller --help` and light commands
such as `report` never load ZeroMQ, matplotlib or the run engine.
"""

from __future__ import annotations

import argparse
import importlib
import logging
import sys
from typing import Optional

from agent.wire.version import VersionAction

# Command name -> (module under controller.commands, one-line help).
COMMANDS = {
    "run": ("run", "benchmark models on one or more devices"),
    "regress": ("regress", "compare a candidate run with a baseline, cell by cell"),
    "compare": ("compare", "two model files A/B interleaved in one session, judged like regress"),
    "history": ("history", "per-cell latency over runs, with the steps found"),
    "report": ("report", "show a stored run and its history (HTML, Markdown, CSV)"),
    "info": ("info", "device facts as the agent reads them"),
    "devices": ("devices", "profiles found and whether each device answers"),
    "preprocess": ("preprocess", "write the input tensor a preprocessing spec makes of an image"),
    "quantize": ("quantize", "convert a SavedModel or Keras model into fp32/fp16/dynamic/int8"),
    "keys": ("keys", "CURVE key pairs"),
    "import-log": ("import_log", "store a benchmark_model console log as a result"),
    "wheelhouse": ("wheelhouse", "wheels for a device's OS and CPU, to copy and install offline"),
    "export": ("export", "stored runs as JSON Lines on stdout (one run document a line)"),
    "import": ("import_runs", "store the runs of a `controller export` file (idempotent)"),
    "profile-diff": ("profile_diff", "per-op time of two runs or two models, largest change first"),
}
# What the controller needs beyond the agent's own dependencies: an agent-only install
# (`edgebench[agent]`) has the `controller` command but not these.
CONTROLLER_ONLY = {"rich", "platformdirs", "matplotlib"}


def _add_verbosity(parser: argparse.ArgumentParser, default) -> None:
    parser.add_argument("-v", "--verbose", action="count", default=default,
                        help="log more (repeat for debug detail)")
    parser.add_argument("-q", "--quiet", action="store_true", default=default, help="log errors only")


class OneLineParser(argparse.ArgumentParser):
    """An argument parser whose usage errors are one line naming the flag, then exit 2."""

    def error(self, message: str):
        """Print `PROG: error: MESSAGE` and exit 2 (argparse would add the whole usage)."""
        self.exit(2, f"{self.prog}: error: {message}\n")


def build_parser(command: Optional[str] = None) -> argparse.ArgumentParser:
    """The `controller` parser; `command`'s own flags are added when it is named (all when None)."""
    parser = OneLineParser(
        prog="controller", description="edgebench: benchmark LiteRT models on edge devices")
    parser.add_argument("--version", action=VersionAction)
    _add_verbosity(parser, None)
    sub = parser.add_subparsers(dest="command", required=True)
    for name, (module, help_text) in COMMANDS.items():
        if command is None or name == command:
            importlib.import_module(f"controller.commands.{module}").register(sub, name, help_text)
        else:
            sub.add_parser(name, help=help_text)
    # `controller -v run ...` and `controller run -v ...` both work: the command's copy
    # sets the value only when given.
    for subparser in sub.choices.values():
        _add_verbosity(subparser, argparse.SUPPRESS)
    return parser


def log_level(verbose: Optional[int], quiet: Optional[bool]) -> int:
    """The logging level the flags ask for: warnings by default."""
    if quiet:
        return logging.ERROR
    return {0: logging.WARNING, 1: logging.INFO}.get(verbose or 0, logging.DEBUG)


def main(argv: Optional[list[str]] = None) -> int:
    """Run the `controller` command line; returns the exit status."""
    argv = sys.argv[1:] if argv is None else argv
    command = next((word for word in argv if not word.startswith("-")), "")
    try:
        parser = build_parser(command if command in COMMANDS else "")
    except ModuleNotFoundError as exc:
        missing = (exc.name or "").split(".")[0]
        if missing not in CONTROLLER_ONLY:
            raise
        print(f"controller: this is an agent-only install ({missing} is missing); "
              "the controller needs pip install 'edgebench[controller]'", file=sys.stderr)
        return 2
    args = parser.parse_args(argv)
    logging.basicConfig(level=log_level(args.verbose, args.quiet), stream=sys.stderr,
                        format="controller: %(levelname)s: %(message)s")
    # The store is imported by the commands that use it, not here: --help stays light.
    from controller.store import StoreError

    try:
        return args.func(args)
    except StoreError as exc:
        print(f"controller: error: {exc}", file=sys.stderr)
        return 2
