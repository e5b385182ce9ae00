"""CURVE authentication: the right key, a wrong key, no key; key reload; configurations refused."""

from __future__ import annotations

import json
import signal
import subprocess
import sys

import pytest
import zmq

from agent.wire import keys as key_files
from controller.client import AgentClient, AgentError, CurveKeys, load_curve_keys
from tests.support.servicekit import MODELS, QUICK, ServiceAgent


def agent_cli(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "agent", *args], capture_output=True, text=True,
                          timeout=60, check=False)


def test_allowed_controller_runs_a_benchmark_over_curve(service_agent, tmp_path, monkeypatch):
    profiles = tmp_path / "profiles"
    service_agent.profile(profiles)
    monkeypatch.setenv("EDGEBENCH_PROFILES", str(profiles))
    model = MODELS / "digits_cnn_int8.tflite"
    result = subprocess.run(
        [sys.executable, "-m", "controller", "run", "--device", "svc", "--models", str(model), *QUICK,
         "--json"], capture_output=True, text=True, timeout=300, check=False)
    assert result.returncode == 0, result.stderr
    doc = json.loads(result.stdout)
    assert [c["status"] for c in doc["cells"]] == ["ok"]
    assert doc["transfer"]["model_bytes_sent"] == model.stat().st_size
    assert "authenticated" in service_agent.log()


def test_unknown_key_is_refused_and_logged(service_agent):
    stranger_public, stranger_secret = zmq.curve_keypair()
    keys = CurveKeys(server_public=key_files.load_public(service_agent.public), public=stranger_public,
                     secret=stranger_secret)
    with AgentClient(service_agent.endpoint, curve=keys) as client, \
            pytest.raises(AgentError, match="refused this controller's key"):
        client.hello(timeout_s=20)
    assert f"refused controller key {stranger_public.decode()}" in service_agent.log()


def test_plain_client_cannot_talk_to_a_curve_agent(service_agent):
    with AgentClient(service_agent.endpoint) as client, pytest.raises(AgentError, match="handshake"):
        client.hello(timeout_s=20)
    # The agent is unharmed: the allowed controller still gets in.
    with service_agent.client() as client:
        assert client.hello(timeout_s=20).agent_version


def test_wrong_server_key_is_not_trusted(service_agent, tmp_path):
    impostor_public, _ = key_files.generate(tmp_path / "impostor", "agent")
    keys = load_curve_keys(impostor_public, service_agent.client_secret)
    with AgentClient(service_agent.endpoint, curve=keys) as client, pytest.raises(AgentError):
        client.hello(timeout_s=20)


def test_sighup_reloads_the_allowed_keys(tmp_path, notify_socket):
    agent = ServiceAgent(tmp_path / "svc")
    agent.start(env={"NOTIFY_SOCKET": notify_socket.path})
    try:
        notify_socket.expect("READY=1")
        newcomer_public, newcomer_secret = key_files.generate(tmp_path / "newcomer", "newcomer")
        keys = load_curve_keys(agent.public, newcomer_secret)
        with AgentClient(agent.endpoint, curve=keys) as client, pytest.raises(AgentError, match="refused"):
            client.hello(timeout_s=20)
        (agent.allowed / "newcomer.key").write_bytes(newcomer_public.read_bytes())
        agent.send_signal(signal.SIGHUP)
        assert any("RELOADING=1" in m for m in notify_socket.expect("READY=1"))
        with AgentClient(agent.endpoint, curve=keys) as client:
            assert client.hello(timeout_s=20).agent_version
        # And taking a key away locks its holder out again.
        (agent.allowed / "newcomer.key").unlink()
        agent.send_signal(signal.SIGHUP)
        notify_socket.expect("READY=1")
        with AgentClient(agent.endpoint, curve=keys) as client, pytest.raises(AgentError, match="refused"):
            client.hello(timeout_s=20)
    finally:
        assert agent.stop() == 0


@pytest.mark.parametrize("args, message", [
    (["--bind", "tcp://0.0.0.0:0"], "without CURVE keys"),
    (["--bind", "tcp://0.0.0.0:0", "--insecure"], "insecure mode is only for loopback"),
    (["--bind", "tcp://127.0.0.1:0"], "pass --insecure for a loopback-only agent"),
])
def test_unsafe_configurations_are_refused(tmp_path, args, message):
    result = agent_cli("serve", "--data-dir", str(tmp_path / "data"), *args)
    assert result.returncode == 2
    assert message in result.stderr
    assert result.stdout == ""


def test_config_file_keys_and_flag_overrides(tmp_path):
    config = tmp_path / "agent.toml"
    config.write_text('bind = "tcp://0.0.0.0:5555"\ninsecure = true\nlog_level = "info"\n')
    refused = agent_cli("serve", "--config", str(config), "--data-dir", str(tmp_path / "d"))
    assert refused.returncode == 2 and "only for loopback" in refused.stderr
    config.write_text('bind = "tcp://127.0.0.1:5555"\nlisten = "x"\n')
    unknown = agent_cli("serve", "--config", str(config))
    assert unknown.returncode == 2 and "listen" in unknown.stderr


def test_key_generation_never_replaces_a_pair(tmp_path):
    first = agent_cli("keys", "generate", str(tmp_path))
    assert first.returncode == 0
    secret = tmp_path / "agent.key_secret"
    assert secret.stat().st_mode & 0o077 == 0
    before = secret.read_bytes()
    again = agent_cli("keys", "generate", str(tmp_path))
    assert again.returncode == 2 and "refusing to replace" in again.stderr
    assert secret.read_bytes() == before
    controller = subprocess.run([sys.executable, "-m", "controller", "keys", "generate", str(tmp_path / "c")],
                                capture_output=True, text=True, timeout=60, check=False)
    assert controller.returncode == 0
    public, secret_key = key_files.load_secret(tmp_path / "c" / "controller.key_secret")
    assert key_files.load_public(tmp_path / "c" / "controller.key") == public and len(secret_key) == 40
