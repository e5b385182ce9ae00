"""Keeps the ADB emulator honest: Debian's real `adb` client connects, runs shells, pushes and pulls."""

from __future__ import annotations

import os
import shutil
import socket
import subprocess

import pytest

pytestmark = pytest.mark.skipif(shutil.which("adb") is None, reason="the adb client is not installed")


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


@pytest.fixture
def adb(tmp_path):
    """`adb` with a private server port and home, so no other adb server is touched."""
    env = {**os.environ, "HOME": str(tmp_path / "home"), "ANDROID_ADB_SERVER_PORT": str(free_port())}
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
