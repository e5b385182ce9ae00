"""Shared fixtures: real models, a private data directory, a real agent process."""

from __future__ import annotations

import pytest

from controller.local_agent import LocalAgent
from tests.support import EXAMPLE_MODELS


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
