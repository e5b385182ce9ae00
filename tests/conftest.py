"""Shared fixtures: real models, a private data directory, a real agent process."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from controller.local_agent import LocalAgent

ROOT = Path(__file__).resolve().parent.parent
EXAMPLE_MODELS = ROOT / "examples" / "models"
FIXTURE_MODELS = ROOT / "tests" / "fixtures" / "models"

# Measuring settings that keep cells short: tests check behaviour, not speed.
QUICK = ["--warmup-runs", "1", "--warmup-min-secs", "0", "--num-runs", "5", "--min-secs", "0"]


@pytest.fixture
def family():
    """The example digits CNN in its four variants, keyed by variant."""
    return {v: EXAMPLE_MODELS / f"digits_cnn_{v}.tflite" for v in ("fp32", "fp16", "dynamic", "int8")}


@pytest.fixture(autouse=True)
def private_dirs(tmp_path, monkeypatch):
    """Keep the user's data directory and results database out of every test."""
    monkeypatch.setenv("XDG_DATA_HOME", str(tmp_path / "data"))
    monkeypatch.setenv("EDGEBENCH_DB", str(tmp_path / "results.sqlite"))
    monkeypatch.delenv("EDGEBENCH_PROFILES", raising=False)
    return tmp_path


@pytest.fixture
def agent(tmp_path):
    """A real agent process on a loopback port, stopped after the test."""
    with LocalAgent(tmp_path / "agent") as running:
        yield running


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
