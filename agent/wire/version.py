"""The one version of edgebench, read from the installed distribution's metadata.

Reading it imports `importlib.metadata` (tens of milliseconds), so it is read when first
asked for: `controller --help` and the agent's start do not pay for it.
"""

from __future__ import annotations

import argparse
import functools


@functools.cache
def version() -> str:
    """edgebench's version, or `0+unknown` in a source tree that was never installed."""
    from importlib.metadata import PackageNotFoundError
    from importlib.metadata import version as distribution_version

    try:
        return distribution_version("edgebench")
    except PackageNotFoundError:
        return "0+unknown"


class VersionAction(argparse.Action):
    """`--version` for a command line: prints `edgebench PROG VERSION` and exits."""

    def __init__(self, option_strings, dest=argparse.SUPPRESS, **kwargs):
        super().__init__(option_strings, dest, nargs=0, default=argparse.SUPPRESS,
                         help="show the version and exit")

    def __call__(self, parser, namespace, values, option_string=None):
        """Print the version line on stdout (as argparse's own action does) and exit 0."""
        print(f"edgebench {parser.prog} {version()}")
        parser.exit(0)
