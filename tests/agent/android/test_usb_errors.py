"""A phone on USB: libusb's errors fail that phone's cells with one line that says what to do.

There is no USB phone on a test machine. The real adb-shell USB path is exercised up to
where libusb finds no device; the errors a plugged-in phone gives (another adb server
holding it, no udev rule) are real `usb1` exceptions raised where libusb raises them.
"""

from __future__ import annotations

import hashlib

import pytest

usb1 = pytest.importorskip("usb1")

from adb_shell import exceptions  # noqa: E402
from usb1 import _libusb1 as libusb1  # noqa: E402

from agent.android import adb  # noqa: E402
from agent.android.runner import AndroidRunner  # noqa: E402
from agent.cache import ModelCache  # noqa: E402
from agent.wire.protocol import (  # noqa: E402
    AndroidTarget,
    CellSpec,
    cell_template,
)
from agent.wire.records import Settings  # noqa: E402
from tests.support import EXAMPLE_MODELS  # noqa: E402

BUSY = usb1.USBErrorBusy(libusb1.LIBUSB_ERROR_BUSY)
ACCESS = usb1.USBErrorAccess(libusb1.LIBUSB_ERROR_ACCESS)


def test_usb_errors_are_not_os_errors():
    assert not isinstance(BUSY, OSError)  # why they need their own handling


@pytest.mark.parametrize("error, advice", [
    (BUSY, "run `adb kill-server`"),
    (ACCESS, "add a udev rule"),
    (exceptions.UsbReadFailedError("Could not receive data", BUSY), "run `adb kill-server`"),
    (usb1.USBErrorNoDevice(libusb1.LIBUSB_ERROR_NO_DEVICE), "unplugged"),
])
def test_each_libusb_error_says_what_to_do(error, advice):
    line = adb.usb_problem("phone R58M", error)
    assert line.startswith("phone R58M on USB: LIBUSB_ERROR_") and advice in line and "\n" not in line


def test_other_errors_are_not_usb_problems():
    assert adb.usb_problem("phone x", ConnectionRefusedError("refused")) is None
    assert adb.usb_problem("phone x", exceptions.UsbReadFailedError("closed", None)) is None


def test_a_usb_phone_that_is_not_plugged_in(tmp_path):
    phone = adb.Phone(AndroidTarget(serial="NOT-PLUGGED-IN"), tmp_path / "keys")
    with pytest.raises(adb.AdbError, match=r"^phone NOT-PLUGGED-IN not found on USB"):
        phone.connect()


class _HeldPhone:
    """What adb-shell's USB device does when libusb refuses to claim the interface."""

    available = False

    def __init__(self, error: Exception):
        self.error = error

    def connect(self, **_):
        raise self.error

    def close(self):
        pass


@pytest.mark.parametrize("error, advice", [(BUSY, "adb kill-server"), (ACCESS, "udev rule")])
def test_a_usb_error_fails_the_cell_and_the_runner_goes_on(tmp_path, monkeypatch, error, advice):
    cache = ModelCache(tmp_path / "models")
    data = (EXAMPLE_MODELS / "digits_cnn_int8.tflite").read_bytes()
    sha = hashlib.sha256(data).hexdigest()
    cache.path(sha).write_bytes(data)
    binary = b"\x7fELF" + bytes(60)  # any binary: the phone is never reached
    binary_sha = hashlib.sha256(binary).hexdigest()
    cache.path(binary_sha, "binary").write_bytes(binary)
    monkeypatch.setattr(adb.Phone, "_make_device", lambda self: _HeldPhone(error))
    runner = AndroidRunner(cache, tmp_path / "keys")
    spec = CellSpec(model_sha256=sha, model_name="m.tflite", delegate="cpu", threads=1, settings=Settings())
    target = AndroidTarget(serial="R58M123ABCD", binary_sha256=binary_sha)
    for _ in range(2):  # the next cell gets the same clear line, not an agent error
        cell = runner.run(target, spec, cell_template(spec, len(data)))
        assert cell.status == "failed" and cell.error is not None
    assert cell.error.startswith("phone R58M123ABCD on USB: LIBUSB_ERROR_") and advice in cell.error
    runner.close()
