"""`controller --help` and `controller report` stay light: no ZeroMQ, matplotlib or run engine."""

from __future__ import annotations

import subprocess
import sys

import pytest

HEAVY = ("zmq", "matplotlib", "controller.runner", "controller.client", "agent.server")


def imported_modules(*args: str) -> set[str]:
    """Every module a real `controller ARGS` process imported (from -X importtime)."""
    result = subprocess.run([sys.executable, "-X", "importtime", "-m", "controller", *args],
                            capture_output=True, text=True, timeout=120, check=False)
    return {line.rsplit("|", 1)[-1].strip() for line in result.stderr.splitlines() if line.startswith("import time:")}


@pytest.mark.parametrize("args", [["--help"], ["report", "--help"], ["report", "--db", "missing.sqlite"]])
def test_light_commands_import_no_heavy_module(args, tmp_path):
    modules = imported_modules(*args)
    assert "controller.cli" in modules  # the measurement itself worked
    assert not [m for m in modules if m.split(".")[0] in HEAVY or m in HEAVY]


def test_version_comes_from_the_package_metadata():
    from importlib.metadata import version

    for prog in ("controller", "agent"):
        result = subprocess.run([sys.executable, "-m", prog, "--version"], capture_output=True, text=True,
                                timeout=60, check=True)
        assert result.stdout.split() == ["edgebench", prog, version("edgebench")]
