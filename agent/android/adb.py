"""One ADB connection to a phone through `adb-shell`: TCP/IP or USB, and an RSA key of our own.

`adb-shell` is imported here, lazily, only when a phone is used. Its shell speaks the
old protocol, which carries no exit status: every command gets a marker appended that
prints it. Every failure comes out as `AdbError` with one line that names the phone.
"""

from __future__ import annotations

import contextlib
import os
import re
import struct
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Optional

from agent.wire.protocol import AndroidTarget

EXIT_MARKER = "__EDGEBENCH_EXIT__"
_EXIT_LINE = re.compile(r"^" + EXIT_MARKER + r"=(\d+)\s*$", re.MULTILINE)
# Seconds to wait for the owner of the phone to accept the agent's key.
AUTH_TIMEOUT_S = 60.0
TRANSPORT_TIMEOUT_S = 10.0


# What to do about the libusb errors a phone on USB runs into. usb1 raises its own
# exception types (not OSError), bare from opening the device, wrapped by adb-shell
# (`usb_error`) from transfers.
_USB_ADVICE = {
    "USBErrorBusy": "LIBUSB_ERROR_BUSY: another program holds the phone's USB interface, usually an adb "
                    "server; run `adb kill-server` on the agent's machine and try again",
    "USBErrorAccess": "LIBUSB_ERROR_ACCESS: the agent's user may not open the USB device; add a udev rule for "
                      "the phone (e.g. SUBSYSTEM==\"usb\", ATTR{idVendor}==\"18d1\", MODE=\"0660\", "
                      "GROUP=\"plugdev\" in /etc/udev/rules.d/51-android.rules) and put the user in that group",
    "USBErrorNoDevice": "LIBUSB_ERROR_NO_DEVICE: the phone was unplugged or rebooted",
    "USBErrorNotFound": "LIBUSB_ERROR_NOT_FOUND: the phone's ADB interface is gone; is USB debugging still on?",
    "USBErrorTimeout": "LIBUSB_ERROR_TIMEOUT: the phone stopped answering on USB; check the cable and the phone",
    "USBErrorPipe": "LIBUSB_ERROR_PIPE: the USB transfer stalled; check the cable, or replug the phone",
    "USBErrorIO": "LIBUSB_ERROR_IO: the USB transfer failed; check the cable, or replug the phone",
}


class AdbError(RuntimeError):
    """A phone that cannot be reached or used; the message is one line."""


class AdbUnavailable(AdbError):
    """The adb-shell package (or its USB support) is not installed on the agent."""


@dataclass
class ShellResult:
    """What a device command printed (stdout and stderr merged) and its exit status."""

    output: str
    exit_code: Optional[int]


def describe(target: AndroidTarget) -> str:
    """How messages name the phone."""
    if target.address:
        return f"phone {target.address}"
    return f"phone {target.serial}" if target.serial else "phone (first USB device)"


def with_exit_marker(command: str) -> str:
    """`command` followed by a line that reports its exit status."""
    return f"{command}; echo {EXIT_MARKER}=$?"


def split_exit_marker(text: str) -> ShellResult:
    """Output and exit status of a command run with `with_exit_marker` (None when cut short)."""
    matches = list(_EXIT_LINE.finditer(text))
    if not matches:
        return ShellResult(output=text, exit_code=None)
    last = matches[-1]
    return ShellResult(output=text[:last.start()], exit_code=int(last.group(1)))


def load_signer(key_dir: Path) -> Any:
    """The agent's ADB key, created on first use in `key_dir` (so a phone asks only once)."""
    try:
        from adb_shell.auth.keygen import keygen
        from adb_shell.auth.sign_pythonrsa import PythonRSASigner
    except ImportError as exc:
        raise AdbUnavailable(f"adb-shell is not installed on the agent ({exc}); install edgebench[agent]") from None
    key = Path(key_dir) / "adbkey"
    if not key.exists():
        key.parent.mkdir(parents=True, exist_ok=True)
        os.chmod(key.parent, 0o700)
        keygen(str(key))
        os.chmod(key, 0o600)
    return PythonRSASigner.FromRSAKeyPath(str(key))


class Phone:
    """A connected phone; `close()` when done."""

    def __init__(self, target: AndroidTarget, key_dir: Path, auth_timeout_s: float = AUTH_TIMEOUT_S,
                 transport_timeout_s: float = TRANSPORT_TIMEOUT_S):
        self.target = target
        self.key_dir = Path(key_dir)
        self.name = describe(target)
        self.auth_timeout_s = auth_timeout_s
        self.transport_timeout_s = transport_timeout_s
        self._device: Any = None

    def connect(self) -> None:
        """Open the ADB connection, authenticating with the agent's key."""
        signer = load_signer(self.key_dir)
        from adb_shell import exceptions
        try:
            self._device = self._make_device()
            self._device.connect(rsa_keys=[signer], auth_timeout_s=self.auth_timeout_s,
                                 transport_timeout_s=self.transport_timeout_s)
        except exceptions.TcpTimeoutException:
            self.close()
            raise AdbError(
                f"{self.name} did not let the agent in: unauthorized? Accept the 'Allow USB debugging' "
                f"prompt on the phone (agent key {self.key_dir / 'adbkey.pub'})") from None
        except exceptions.UsbDeviceNotFoundError as exc:
            self.close()
            raise AdbError(f"{self.name} not found on USB ({exc})") from None
        except (OSError, exceptions.AdbConnectionError) as exc:
            self.close()
            raise AdbError(usb_problem(self.name, exc) or f"{self.name} not reachable: {_reason(exc)}") from None
        except _adb_failures() as exc:
            self.close()
            raise AdbError(usb_problem(self.name, exc) or f"{self.name}: connection failed: {_reason(exc)}") from None

    def _make_device(self) -> Any:
        target = self.target
        if target.address:
            from adb_shell.adb_device import AdbDevice
            host, _, port = target.address.rpartition(":")
            if not host:
                host, port = target.address, "5555"
            return AdbDevice(_tcp_transport(host, int(port)), default_transport_timeout_s=self.transport_timeout_s)
        try:
            from adb_shell.adb_device import AdbDeviceUsb
            return AdbDeviceUsb(serial=target.serial, default_transport_timeout_s=self.transport_timeout_s)
        except (ImportError, AttributeError) as exc:
            raise AdbUnavailable(f"USB adb needs adb-shell[usb] (libusb1) on the agent: {exc}") from None

    def close(self) -> None:
        """Close the connection to the phone."""
        if self._device is not None:
            with contextlib.suppress(*_adb_failures()):  # a dead connection is gone either way
                self._device.close()
            self._device = None

    @property
    def connected(self) -> bool:
        """True while the ADB connection is open."""
        return self._device is not None and bool(self._device.available)

    def shell(self, command: str, timeout_s: float = 30.0) -> ShellResult:
        """Run `command` on the phone; its output and exit status (None if it was cut short)."""
        try:
            raw = self._device.shell(with_exit_marker(command), transport_timeout_s=timeout_s,
                                     read_timeout_s=timeout_s, decode=False)
        except _adb_failures() as exc:
            self.close()
            raise AdbError(usb_problem(self.name, exc)
                           or f"{self.name}: connection lost running a command: {_reason(exc)}") from None
        return split_exit_marker(raw.decode("utf-8", "replace"))

    def push(self, local: Path, remote: str, mode: int = 0o644, timeout_s: float = 120.0) -> None:
        """Copy a local file to the phone (unverified: callers check size and hash)."""
        try:
            self._device.push(str(local), remote, st_mode=0o100000 | mode, transport_timeout_s=timeout_s,
                              read_timeout_s=timeout_s)
        except _adb_failures() as exc:
            self.close()
            raise AdbError(usb_problem(self.name, exc) or
                           f"{self.name}: connection lost while pushing {Path(local).name}: {_reason(exc)}") from None


def _adb_failures() -> tuple[type[Exception], ...]:
    """Everything adb-shell raises when a phone misbehaves or goes away: its own types, which
    share no base class, and the socket and decoding errors underneath."""
    from adb_shell import exceptions
    own = tuple(v for v in vars(exceptions).values() if isinstance(v, type) and issubclass(v, Exception))
    return (*own, *_usb_errors(), OSError, ValueError, struct.error)


def _usb_errors() -> tuple[type[Exception], ...]:
    """libusb's exception base class, when USB support is installed."""
    try:
        import usb1
    except ImportError:
        return ()
    return (usb1.USBError,)


def usb_problem(name: str, exc: BaseException) -> Optional[str]:
    """One line saying what to do about a libusb error behind `exc`, or None if it is not one."""
    errors = _usb_errors()
    usb = exc if errors and isinstance(exc, errors) else getattr(exc, "usb_error", None)
    if usb is None or not errors or not isinstance(usb, errors):
        return None
    advice = _USB_ADVICE.get(type(usb).__name__)
    return f"{name} on USB: {advice}" if advice else f"{name} on USB: {_reason(usb)}"


def _tcp_transport(host: str, port: int) -> Any:
    """adb-shell's TCP transport, except that a closed connection is an error.

    The stock transport returns empty reads from a closed socket and retries them until
    its read timeout, so a phone that went away would hold a cell for minutes.
    """
    from adb_shell.transport.tcp_transport import TcpTransport

    class _Transport(TcpTransport):
        def bulk_read(self, numbytes: int, transport_timeout_s: Optional[float]) -> bytes:
            data = super().bulk_read(numbytes, transport_timeout_s)
            if not data:
                raise ConnectionResetError("the phone closed the connection")
            return data

    return _Transport(host, port)


def _reason(exc: BaseException) -> str:
    text = str(exc).strip().splitlines()
    return f"{type(exc).__name__}: {text[0]}" if text else type(exc).__name__
