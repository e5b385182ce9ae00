"""Fixtures for the Android tests: an emulated phone on loopback and a stand-in benchmark_model."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.support.adb_emulator import AdbEmulator
from tests.support.phone import emulated_phone, write_stand_in


@pytest.fixture
def stand_in(tmp_path) -> Path:
    """The stand-in benchmark_model, runnable with this test's Python."""
    return write_stand_in(tmp_path / "bin" / "benchmark_model")


@pytest.fixture
def phone(tmp_path) -> Iterator[AdbEmulator]:
    """An emulated phone listening on 127.0.0.1, no authentication."""
    with emulated_phone(tmp_path) as device:
        yield device
