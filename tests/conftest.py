"""Shared fixtures: real models, a private data directory, a real agent process."""

from __future__ import annotations

import secrets
from collections.abc import Iterator

import pytest

from controller.local_agent import LocalAgent
from tests.support import EXAMPLE_MODELS
from tests.support.postgres import NoServer, PostgresServer


@pytest.fixture
def family():
    """The example digits CNN in its four variants, keyed by variant."""
    return {v: EXAMPLE_MODELS / f"digits_cnn_{v}.tflite" for v in ("fp32", "fp16", "dynamic", "int8")}


@pytest.fixture(autouse=True)
def private_dirs(tmp_path, monkeypatch):
    """Keep the user's data and config directories and results database out of every test."""
    monkeypatch.setenv("XDG_DATA_HOME", str(tmp_path / "data"))
    monkeypatch.setenv("XDG_CONFIG_HOME", str(tmp_path / "config"))
    monkeypatch.setenv("EDGEBENCH_DB", str(tmp_path / "results.sqlite"))
    monkeypatch.delenv("EDGEBENCH_PROFILES", raising=False)
    return tmp_path


@pytest.fixture
def agent(tmp_path):
    """A real agent process on a loopback port, stopped after the test."""
    with LocalAgent(tmp_path / "agent") as running:
        yield running


def _postgres() -> Iterator[PostgresServer]:
    """A real PostgreSQL server on a loopback port, stopped afterwards (skipped only where none
    can be started, with the reason)."""
    try:
        import psycopg  # noqa: F401 - the back end needs it; say so rather than fail later
    except ImportError:
        pytest.skip("psycopg 3 is not installed (pip install 'edgebench[postgres]')")
    try:
        server = PostgresServer()
    except NoServer as exc:
        pytest.skip(f"no PostgreSQL server could be started: {exc}")
    try:
        server.start()
    except NoServer as exc:
        server.stop()
        pytest.skip(f"no PostgreSQL server could be started: {exc}")
    yield server
    server.stop()


@pytest.fixture(scope="session")
def postgres_server():
    """A PostgreSQL server for the whole session."""
    yield from _postgres()


@pytest.fixture
def own_postgres():
    """A PostgreSQL server of the test's own, which it may stop and start at will."""
    yield from _postgres()


@pytest.fixture
def postgres_url(postgres_server) -> str:
    """A fresh, empty database on the session's server."""
    return postgres_server.create_database(f"test_{secrets.token_hex(6)}")


@pytest.fixture(params=["sqlite", "postgres"])
def db_location(request, tmp_path) -> str:
    """A new results database of each back end: a SQLite path, then a PostgreSQL URL."""
    if request.param == "sqlite":
        return str(tmp_path / "results.sqlite")
    return request.getfixturevalue("postgres_url")
