"""The one version of edgebench, read from the installed distribution's metadata."""

from __future__ import annotations

from importlib.metadata import PackageNotFoundError, version

try:
    VERSION = version("edgebench")
except PackageNotFoundError:  # a source tree that was never installed
    VERSION = "0+unknown"
