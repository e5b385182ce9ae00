"""Fixtures for the service tests: a running CURVE agent and a notify socket."""

from __future__ import annotations

import pytest

from tests.support.servicekit import NotifySocket, ServiceAgent


@pytest.fixture
def service_agent(tmp_path):
    """A running CURVE agent, stopped after the test."""
    running = ServiceAgent(tmp_path / "svc")
    running.start()
    yield running
    running.stop()


@pytest.fixture
def notify_socket(tmp_path):
    listener = NotifySocket(str(tmp_path / "notify.sock"))
    yield listener
    listener.close()
