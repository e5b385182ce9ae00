"""The ADB emulator against the real adb-shell client: shell, sync and authentication."""

from __future__ import annotations

import hashlib

import pytest
from adb_shell.adb_device import AdbDeviceTcp
from adb_shell.auth.keygen import keygen
from adb_shell.auth.sign_pythonrsa import PythonRSASigner
from adb_shell.exceptions import DeviceAuthError, TcpTimeoutException

from tests.support.phone import emulated_phone


def connected(device, signer=None, auth_timeout_s: float = 5) -> AdbDeviceTcp:
    host, port = device.address.split(":")
    client = AdbDeviceTcp(host, int(port), default_transport_timeout_s=10)
    client.connect(rsa_keys=[signer] if signer else None, auth_timeout_s=auth_timeout_s)
    return client


def test_shell_runs_in_the_device_sandbox(phone):
    client = connected(phone)
    try:
        assert client.shell("getprop ro.product.model").strip() == "Pixel Emul"
        assert "[ro.build.version.sdk]: [33]" in client.shell("getprop")
        assert client.shell("cat /sys/devices/system/cpu/possible").strip() == "0-7"
        assert client.shell("echo out; echo err >&2; exit 3").split() == ["out", "err"]
    finally:
        client.close()
    assert phone.commands[0] == "getprop ro.product.model"


def test_push_pull_stat_list_round_trip(phone, tmp_path):
    data = bytes(range(256)) * 4000 + b"tail"  # many sync DATA blocks and ADB packets
    source = tmp_path / "blob.bin"
    source.write_bytes(data)
    client = connected(phone)
    try:
        client.shell("mkdir -p /data/local/tmp/x")
        client.push(str(source), "/data/local/tmp/x/blob.bin", st_mode=0o100640)
        on_device = phone.device_path("/data/local/tmp/x/blob.bin")
        assert on_device.read_bytes() == data
        assert on_device.stat().st_mode & 0o777 == 0o640
        mode, size, _ = client.stat("/data/local/tmp/x/blob.bin")
        assert size == len(data) and mode & 0o777 == 0o640
        assert client.stat("/data/local/tmp/none") == (0, 0, 0)
        names = {entry.filename.decode() for entry in client.list("/data/local/tmp/x")}
        assert names == {".", "..", "blob.bin"}
        back = tmp_path / "back.bin"
        client.pull("/data/local/tmp/x/blob.bin", str(back))
        assert hashlib.sha256(back.read_bytes()).digest() == hashlib.sha256(data).digest()
        assert client.shell("sha256sum /data/local/tmp/x/blob.bin").split()[0] == hashlib.sha256(data).hexdigest()
    finally:
        client.close()


def test_known_key_is_let_in_and_unknown_key_refused(tmp_path):
    keygen(str(tmp_path / "adbkey"))
    signer = PythonRSASigner.FromRSAKeyPath(str(tmp_path / "adbkey"))
    pub = (tmp_path / "adbkey.pub").read_bytes()
    with emulated_phone(tmp_path, authorized_keys=[pub]) as device:
        client = connected(device, signer)
        assert client.shell("echo in").strip() == "in"
        client.close()
    keygen(str(tmp_path / "other"))
    stranger = PythonRSASigner.FromRSAKeyPath(str(tmp_path / "other"))
    with emulated_phone(tmp_path, authorized_keys=[pub]) as device:
        with pytest.raises(TcpTimeoutException):  # the prompt on the phone is never answered
            connected(device, stranger, auth_timeout_s=0.5)
        with pytest.raises(DeviceAuthError):
            connected(device)
        assert device.connections == 2


def test_new_key_accepted_once_is_remembered(tmp_path):
    keygen(str(tmp_path / "adbkey"))
    signer = PythonRSASigner.FromRSAKeyPath(str(tmp_path / "adbkey"))
    with emulated_phone(tmp_path, authorized_keys=[], accept_new_keys=True) as device:
        connected(device, signer).close()
        assert len(device.settings.authorized_keys) == 1
        device.settings.accept_new_keys = False
        client = connected(device, signer)  # signed token now, no prompt
        assert client.shell("echo again").strip() == "again"
        client.close()
