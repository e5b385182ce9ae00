"""systemd integration without systemd: sd_notify on a socket the test binds, the unit checked
by `systemd-analyze`, and `agent install-service` into a scratch tree."""

from __future__ import annotations

import grp
import os
import re
import shutil
import signal
import subprocess
import sys
import uuid
from pathlib import Path

import pytest

from agent.notify import Notifier
from agent.wire import keys as key_files
from tests.support.servicekit import NotifySocket, ServiceAgent

SECURITY_THRESHOLD = 1.5
needs_analyze = pytest.mark.skipif(shutil.which("systemd-analyze") is None, reason="systemd-analyze not installed")


def test_ready_watchdog_and_stopping_reach_the_notify_socket(tmp_path, notify_socket):
    agent = ServiceAgent(tmp_path / "svc")
    agent.start(env={"NOTIFY_SOCKET": notify_socket.path, "WATCHDOG_USEC": "300000"})
    try:
        ready = notify_socket.expect("READY=1")
        assert any(f"STATUS=listening on {agent.endpoint}" in m for m in ready)
        with agent.client() as client:  # READY=1 means it answers
            assert client.hello(timeout_s=10).agent_version
        # The loop pings at half the watchdog period, whether or not anything happens.
        notify_socket.expect("WATCHDOG=1", timeout_s=5)
        notify_socket.expect("WATCHDOG=1", timeout_s=5)
        agent.send_signal(signal.SIGTERM)
        notify_socket.expect("STOPPING=1")
    finally:
        assert agent.stop() == 0


def test_abstract_notify_socket(tmp_path):
    listener = NotifySocket(f"@edgebench-test-{uuid.uuid4().hex}")
    agent = ServiceAgent(tmp_path / "svc")
    try:
        agent.start(env={"NOTIFY_SOCKET": listener.path})
        listener.expect("READY=1")
    finally:
        assert agent.stop() == 0
        listener.close()


def test_notifier_is_silent_outside_systemd(tmp_path):
    assert not Notifier({}).ready()
    gone = Notifier({"NOTIFY_SOCKET": str(tmp_path / "nobody-listens")})
    assert gone.enabled and not gone.watchdog()  # a vanished manager never raises
    assert Notifier({"WATCHDOG_USEC": "30000000", "NOTIFY_SOCKET": "@x"}).watchdog_s == 30.0
    assert Notifier({"WATCHDOG_USEC": "30000000", "WATCHDOG_PID": "1"}).watchdog_s is None


def write_unit(tmp_path) -> str:
    unit = tmp_path / "edgebench-agent.service"
    result = subprocess.run([sys.executable, "-m", "agent", "install-service", "--dry-run", "--unit-out", str(unit)],
                            capture_output=True, text=True, timeout=60, check=False)
    assert result.returncode == 0, result.stderr
    return str(unit)


def security_score(unit: str, threshold: float) -> tuple[int, float]:
    result = subprocess.run(
        ["systemd-analyze", "security", "--offline=true", f"--threshold={int(threshold * 10)}", unit],
        capture_output=True, text=True, timeout=120, check=False)
    found = re.search(r"Overall exposure level for \S+: (\d+\.\d+)", result.stdout + result.stderr)
    assert found, result.stdout + result.stderr
    return result.returncode, float(found.group(1))


@needs_analyze
def test_unit_verifies_and_passes_the_security_gate(tmp_path):
    unit = write_unit(tmp_path)
    text = Path(unit).read_text()
    for setting in ("Type=notify", "WatchdogSec=", "Restart=on-failure", "NoNewPrivileges=yes",
                    "ProtectSystem=strict", "PrivateTmp=yes", "AF_NETLINK", "@resources"):
        assert setting in text
    assert "ProcSubset=pid" not in text  # hides /proc/cpuinfo from LiteRT
    verify = subprocess.run(["systemd-analyze", "verify", unit], capture_output=True, text=True,
                            timeout=120, check=False)
    assert verify.returncode == 0, verify.stderr
    assert "edgebench-agent.service" not in verify.stderr  # no warnings about our unit
    code, score = security_score(unit, SECURITY_THRESHOLD)
    assert code == 0 and score <= SECURITY_THRESHOLD, score


@needs_analyze
def test_security_gate_rejects_a_bare_unit(tmp_path):
    bare = tmp_path / "bare.service"
    bare.write_text(f"[Service]\nType=notify\nExecStart={sys.executable} -m agent serve\n")
    code, score = security_score(str(bare), SECURITY_THRESHOLD)
    assert code != 0 and score > SECURITY_THRESHOLD


@pytest.mark.skipif(os.geteuid() != 0, reason="install-service needs root")
def test_install_service_creates_config_keys_and_directories(tmp_path):
    etc, data, unit = tmp_path / "etc" / "edgebench", tmp_path / "lib" / "edgebench", tmp_path / "unit.service"
    config = etc / "agent.toml"
    sysusers, rule, doc = tmp_path / "edgebench.conf", tmp_path / "51-edgebench.rules", tmp_path / "README.md"
    install = [sys.executable, "-m", "agent", "install-service", "--user", "root", "--config", str(config),
               "--data-dir", str(data), "--unit-out", str(unit), "--sysusers-out", str(sysusers),
               "--udev-rule-out", str(rule), "--doc-out", str(doc)]
    first = subprocess.run(install, capture_output=True, text=True, timeout=60, check=False)
    assert first.returncode == 0, first.stderr
    assert (etc / "controllers.d").is_dir() and data.is_dir()
    assert oct(data.stat().st_mode & 0o777) == "0o700"
    assert (etc / "agent.key_secret").stat().st_mode & 0o007 == 0
    assert f"--config {config}" in unit.read_text() and f"ReadWritePaths={data}" in unit.read_text()
    assert 'bind = "tcp://0.0.0.0:5555"' in config.read_text()
    # The device groups exist (systemd-sysusers made any that were missing) and the unit joins them.
    assert "g plugdev -" in sysusers.read_text()
    assert {"video", "plugdev"} <= {g.gr_name for g in grp.getgrall()}
    assert "SupplementaryGroups=video plugdev" in unit.read_text()
    assert 'ENV{ID_USB_INTERFACES}=="*:ff4201:*"' in rule.read_text() and 'GROUP="plugdev"' in rule.read_text()
    assert f"Documentation=file:{doc}" in unit.read_text() and doc.read_text().startswith("# edgebench")

    # A second install keeps the existing configuration and keys.
    config.write_text(config.read_text().replace('log_level = "info"', 'log_level = "debug"'))
    key = (etc / "agent.key_secret").read_bytes()
    again = subprocess.run(install, capture_output=True, text=True, timeout=60, check=False)
    assert again.returncode == 0, again.stderr
    assert 'log_level = "debug"' in config.read_text() and (etc / "agent.key_secret").read_bytes() == key

    # The installed configuration serves over CURVE (here on loopback) with the generated keys.
    controller_public, _ = key_files.generate(tmp_path / "ctl", "controller")
    shutil.copy(controller_public, etc / "controllers.d")
    agent = subprocess.Popen([sys.executable, "-m", "agent", "serve", "--config", str(config),
                              "--bind", "tcp://127.0.0.1:*"], stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                             text=True)
    try:
        line = agent.stdout.readline()
        assert line.startswith("edgebench agent listening on tcp://127.0.0.1:"), agent.stderr.read()
    finally:
        agent.terminate()
        assert agent.wait(60) == 0
    assert "(CURVE" in agent.stderr.read()
