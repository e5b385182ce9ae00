"""Helpers every test may use: paths of the shipped models, quick settings, the real CLI."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
EXAMPLE_MODELS = ROOT / "examples" / "models"
FIXTURE_MODELS = ROOT / "tests" / "fixtures" / "models"

# Measuring settings that keep cells short: tests check behaviour, not speed.
QUICK = ["--warmup-runs", "1", "--warmup-min-secs", "0", "--num-runs", "5", "--min-secs", "0"]


def controller(*args: str, db=None, env=None) -> subprocess.CompletedProcess:
    """`controller ARGS [--db DB]` as a real process."""
    db_args = ["--db", str(db)] if db is not None else []
    return subprocess.run([sys.executable, "-m", "controller", *args, *db_args],
                          check=False, capture_output=True, text=True, timeout=600, env=env)


def run_json(*args: str, db) -> dict:
    """A quick `controller run --device local ... --json`, which must succeed."""
    result = controller("run", "--device", "local", *QUICK, *args, "--json", db=db)
    assert result.returncode == 0, result.stderr
    return json.loads(result.stdout)
