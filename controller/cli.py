"""`controller` command line: parses arguments and hands off to one module per command."""

from __future__ import annotations

import argparse
from typing import Optional

from controller.commands import devices, import_log, info, keys, preprocess, quantize, regress, report, run

COMMANDS = (run, regress, report, info, devices, preprocess, quantize, keys, import_log)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="controller", description="edgebench: benchmark LiteRT models on edge devices")
    sub = parser.add_subparsers(dest="command", required=True)
    for command in COMMANDS:
        command.register(sub)
    return parser


def main(argv: Optional[list[str]] = None) -> int:
    args = build_parser().parse_args(argv)
    return args.func(args)
