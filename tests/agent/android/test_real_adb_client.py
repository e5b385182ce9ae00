"""Keeps the ADB emulator honest: Debian's real `adb` client connects, runs shells, pushes and pulls.

Also with authentication on (the client's own RSA key, as a phone asks for it) and over
the old `shell:` protocol, which is what the agent's adb-shell client speaks.
"""

from __future__ import annotations

import os
import shutil
import socket
import subprocess

import pytest

from agent.android.adb import split_exit_marker, with_exit_marker
from agent.formats import benchmark_log
from agent.wire.records import Cell
from tests.support import EXAMPLE_MODELS
from tests.support.phone import emulated_phone, write_stand_in

pytestmark = pytest.mark.skipif(shutil.which("adb") is None, reason="the adb client is not installed")


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


@pytest.fixture
def adb(tmp_path):
    """`adb` with a private server port and home, so no other adb server is touched."""
    env = {**os.environ, "HOME": str(tmp_path / "home"), "ANDROID_ADB_SERVER_PORT": str(free_port())}
    env.pop("ADB_VENDOR_KEYS", None)
    (tmp_path / "home").mkdir()

    def run(*args: str, check: bool = True) -> subprocess.CompletedProcess:
        result = subprocess.run(["adb", *args], env=env, capture_output=True, text=True, timeout=60,
                                stdin=subprocess.DEVNULL, check=False)
        if check:
            assert result.returncode == 0, (args, result.stdout, result.stderr)
        return result

    yield run
    run("kill-server", check=False)


def test_real_adb_connect_shell_push_pull(adb, phone, tmp_path):
    connect = adb("connect", phone.address)
    assert f"connected to {phone.address}" in connect.stdout
    devices = adb("devices", "-l").stdout
    assert phone.address in devices and "model:Pixel_Emul" in devices

    target = ["-s", phone.address]
    assert adb(*target, "shell", "getprop", "ro.build.version.sdk").stdout.strip() == "33"
    # shell_v2 is in the banner, so the client gets separate stderr and the exit status
    failing = adb(*target, "shell", "echo out; echo err >&2; exit 7", check=False)
    assert failing.returncode == 7
    assert failing.stdout.strip() == "out" and failing.stderr.strip() == "err"

    data = os.urandom(300_000)
    source = tmp_path / "payload.bin"
    source.write_bytes(data)
    adb(*target, "shell", "mkdir", "-p", "/data/local/tmp/edgebench")
    adb(*target, "push", str(source), "/data/local/tmp/edgebench/payload.bin")
    assert phone.device_path("/data/local/tmp/edgebench/payload.bin").read_bytes() == data
    listing = adb(*target, "shell", "ls", "/data/local/tmp/edgebench").stdout.split()
    assert listing == ["payload.bin"]
    back = tmp_path / "back.bin"
    adb(*target, "pull", "/data/local/tmp/edgebench/payload.bin", str(back))
    assert back.read_bytes() == data
    missing = adb(*target, "pull", "/data/local/tmp/nothing", str(tmp_path / "x"), check=False)
    assert missing.returncode != 0 and "does not exist" in missing.stdout + missing.stderr


def client_key(adb, tmp_path) -> bytes:
    """The real client's public key, which it creates when its server first starts."""
    adb("start-server")
    return (tmp_path / "home" / ".android" / "adbkey.pub").read_bytes()


def test_real_adb_with_authentication_and_the_old_shell_protocol(adb, tmp_path):
    key = client_key(adb, tmp_path)
    # No shell_v2 in the banner: the client falls back to `shell:`, as adb-shell always uses.
    with emulated_phone(tmp_path / "a", authorized_keys=[key], features="cmd") as phone:
        assert f"connected to {phone.address}" in adb("connect", phone.address).stdout
        assert f"{phone.address}\tdevice" in adb("devices").stdout
        target = ["-s", phone.address]
        # the old protocol merges the streams and carries no exit status ...
        plain = adb(*target, "shell", "echo out; echo err >&2; exit 7", check=False)
        assert plain.returncode == 0 and plain.stdout.split() == ["out", "err"]
        # ... which is why the agent appends its exit marker; it survives the real client
        marked = split_exit_marker(adb(*target, "shell", with_exit_marker("echo out; (exit 7)")).stdout)
        assert (marked.output.strip(), marked.exit_code) == ("out", 7)

        # the stand-in benchmark_model, pushed and run through the real client, measures for real
        binary = write_stand_in(tmp_path / "bin" / "benchmark_model")
        model = EXAMPLE_MODELS / "digits_cnn_int8.tflite"
        adb(*target, "shell", "mkdir", "-p", "/data/local/tmp/edgebench")
        adb(*target, "push", str(binary), "/data/local/tmp/edgebench/benchmark_model")
        adb(*target, "push", str(model), "/data/local/tmp/edgebench/m.tflite")
        adb(*target, "shell", "chmod", "755", "/data/local/tmp/edgebench/benchmark_model")
        run = adb(*target, "shell", "/data/local/tmp/edgebench/benchmark_model --graph=/data/local/tmp/edgebench/"
                  "m.tflite --num_threads=1 --use_xnnpack=false --num_runs=3 --warmup_runs=1 --min_secs=0 "
                  "--warmup_min_secs=0 --max_secs=5")
        template = Cell(model="m.tflite", model_sha256="0" * 64, model_size_bytes=1, delegate="cpu", threads=1,
                        status="failed")
        cell = benchmark_log.to_cell(benchmark_log.parse(run.stdout), template)
        assert cell.status == "ok", cell.error
        assert cell.delegate == "cpu" and cell.latency_us.count == 3
        assert cell.latency_us.min <= cell.latency_us.p50 <= cell.latency_us.max


def test_real_adb_is_refused_by_a_phone_that_does_not_know_its_key(adb, tmp_path):
    client_key(adb, tmp_path)
    with emulated_phone(tmp_path / "b", authorized_keys=[]) as phone:
        assert "failed to authenticate" in adb("connect", phone.address, check=False).stdout
        assert f"{phone.address}\tunauthorized" in adb("devices").stdout
        refused = adb("-s", phone.address, "shell", "echo hi", check=False)
        assert refused.returncode != 0 and "device unauthorized" in refused.stderr and "hi" not in refused.stdout
