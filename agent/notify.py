"""systemd's notify protocol (sd_notify) without a library: a datagram to $NOTIFY_SOCKET.

Outside systemd (no NOTIFY_SOCKET) every call is a no-op. The watchdog interval comes
from $WATCHDOG_USEC; the agent pings at half of it from its own loop, so a stuck loop
stops the pings and systemd restarts the service.
"""

from __future__ import annotations

import contextlib
import os
import socket
from typing import Optional


class Notifier:
    """Sends state lines to the service manager, if there is one."""

    def __init__(self, environ: Optional[dict] = None):
        environ = os.environ if environ is None else environ
        address = environ.get("NOTIFY_SOCKET", "")
        # "@name" is a socket in the abstract namespace: a leading NUL byte on the wire.
        self.address: Optional[str] = ("\0" + address[1:]) if address.startswith("@") else (address or None)
        self.watchdog_s = _watchdog_seconds(environ)
        self._socket: Optional[socket.socket] = None
        if self.address:
            # Non-blocking: a manager slow to read drops a notification, it never stalls the agent
            # (a full queue of ten unread datagrams would block a plain send).
            self._socket = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM | socket.SOCK_CLOEXEC
                                         | socket.SOCK_NONBLOCK)

    @property
    def enabled(self) -> bool:
        """True when systemd gave this process a notification socket."""
        return self._socket is not None

    def send(self, *lines: str) -> bool:
        """Send `KEY=VALUE` lines as one datagram; False when there is no manager or it fails."""
        if self._socket is None:
            return False
        try:
            self._socket.sendto("\n".join(lines).encode(), self.address)
        except OSError:
            return False  # the manager went away or lags behind; the service must keep working
        return True

    def ready(self, status: str = "") -> bool:
        """Tell systemd the service is ready (Type=notify)."""
        return self.send("READY=1", *([f"STATUS={status}"] if status else []))

    def watchdog(self) -> bool:
        """Pet systemd's watchdog."""
        return self.send("WATCHDOG=1")

    def status(self, text: str) -> bool:
        """Tell systemd what the service is doing (`systemctl status` shows it)."""
        return self.send(f"STATUS={text}")

    def stopping(self) -> bool:
        """Tell systemd the service is stopping."""
        return self.send("STOPPING=1")

    def reloading(self) -> bool:
        """Tell systemd the service is reloading its configuration."""
        return self.send("RELOADING=1")

    def close(self) -> None:
        """Close the notification socket."""
        if self._socket is not None:
            with contextlib.suppress(OSError):
                self._socket.close()
            self._socket = None


def _watchdog_seconds(environ) -> Optional[float]:
    """The watchdog period, if systemd set one for this very process."""
    usec = environ.get("WATCHDOG_USEC")
    pid = environ.get("WATCHDOG_PID")
    if not usec or (pid and pid != str(os.getpid())):
        return None
    try:
        value = int(usec)
    except ValueError:
        return None
    return value / 1e6 if value > 0 else None
