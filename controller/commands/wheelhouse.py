"""`controller wheelhouse`: edgebench and its binary dependencies for a device, to install offline."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from controller import wheelhouse


def register(sub: argparse._SubParsersAction, name: str, help_text: str) -> None:
    """Add `controller wheelhouse` and its flags to the parser."""
    p = sub.add_parser(name, help=help_text)
    p.add_argument("--target", required=True, choices=sorted(wheelhouse.TARGETS),
                   help="; ".join(f"{t.name}: {t.description}" for t in wheelhouse.TARGETS.values()))
    p.add_argument("--out", required=True, help="directory to fill (created if missing)")
    p.add_argument("--extra", help="package extra to resolve (default: the target's agent extra)")
    p.add_argument("--no-deps", action="store_true",
                   help="edgebench's wheel only (for a device that gets its dependencies elsewhere)")
    p.set_defaults(func=main)


def main(args: argparse.Namespace) -> int:
    """Carry out `controller wheelhouse`; returns the exit status."""
    target = wheelhouse.TARGETS[args.target]
    try:
        built = wheelhouse.build(target, Path(args.out), extra=args.extra, deps=not args.no_deps)
    except (wheelhouse.WheelhouseError, OSError) as exc:
        print(f"controller: wheelhouse for {target.name}: {exc}", file=sys.stderr)
        return 2
    for name in built.files:
        print(name)
    print(f"\n{len(built.files)} files in {built.directory}. On the device, in a copy of it:\n"
          f"  {built.install_command()}", file=sys.stderr)
    return 0
