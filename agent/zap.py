"""The allow-list of controllers, checked by a ZAP handler.

The agent answers ZeroMQ's authentication requests (ZAP, RFC 27) itself on an inproc
socket that its own loop polls, so checking a key needs no extra thread and a reload
(SIGHUP) simply swaps the set of allowed keys.
"""

from __future__ import annotations

import logging
import os
import resource
import time
from pathlib import Path

import zmq
from zmq.utils import z85

from agent.wire.keys import KeyFileError, load_public

log = logging.getLogger("edgebench.agent")

ZAP_ENDPOINT = "inproc://zeromq.zap.01"
ZAP_DOMAIN = "edgebench"
# File descriptors kept free for what the agent does (results, transfers, cells): no new
# connection is admitted into them. A quarter of the limit where that is less.
FD_RESERVE = 64
# A refusal for want of room is logged at most once per this interval, with a count.
REFUSAL_LOG_S = 10.0


def room_for_a_connection() -> bool:
    """True while a new connection leaves the agent its reserve of file descriptors."""
    soft, _ = resource.getrlimit(resource.RLIMIT_NOFILE)
    if soft == resource.RLIM_INFINITY:
        return True
    try:
        used = len(os.listdir("/proc/self/fd"))
    except OSError:
        return True  # no /proc to count with: libzmq's own limits apply
    return soft - used > min(FD_RESERVE, soft // 4)


def load_allowed(directory: os.PathLike) -> dict[bytes, str]:
    """Allowed controller keys: z85 public key -> file name, from every `*.key` file."""
    allowed: dict[bytes, str] = {}
    for path in sorted(Path(directory).glob("*.key")):
        try:
            allowed[load_public(path)] = path.name
        except KeyFileError as exc:
            log.warning("ignoring allowed key: %s", exc)
    return allowed


class ZapHandler:
    """Answers ZAP requests for CURVE connections from the allow-list in one directory."""

    def __init__(self, ctx: zmq.Context, allowed_dir: os.PathLike):
        self.allowed_dir = Path(allowed_dir)
        self.allowed: dict[bytes, str] = {}
        self._refused, self._refusal_logged = 0, -REFUSAL_LOG_S
        self.socket = ctx.socket(zmq.REP)
        self.socket.setsockopt(zmq.LINGER, 0)
        self.socket.bind(ZAP_ENDPOINT)
        self.reload()

    def reload(self) -> None:
        """Read the allow-list again (SIGHUP)."""
        self.allowed = load_allowed(self.allowed_dir)
        log.info("allowed controller keys: %d from %s", len(self.allowed), self.allowed_dir)

    def handle(self) -> None:
        """Answer every pending authentication request."""
        while True:
            try:
                request = self.socket.recv_multipart(zmq.NOBLOCK)
            except zmq.Again:
                return
            try:
                reply = self._answer(request)
            except Exception:  # a bad request must be refused, never stop the agent
                log.exception("malformed authentication request")
                reply = [b"1.0", request[1] if len(request) > 1 else b"", b"500", b"internal error", b"", b""]
            self.socket.send_multipart(reply)

    def _answer(self, request: list[bytes]) -> list[bytes]:
        if len(request) < 6:
            return [b"1.0", b"", b"500", b"malformed ZAP request", b"", b""]
        version, request_id, _domain, address, _identity, mechanism = request[:6]
        credentials = request[6:]
        peer = address.decode("ascii", "replace")
        if mechanism != b"CURVE" or len(credentials) != 1 or len(credentials[0]) != 32:
            log.warning("refused connection from %s: mechanism %s, CURVE required",
                        peer, mechanism.decode("ascii", "replace"))
            return [version, request_id, b"400", b"CURVE required", b"", b""]
        key = z85.encode(credentials[0])
        name = self.allowed.get(key)
        if name is None:
            log.warning("refused controller key %s from %s: not in %s",
                        key.decode(), peer, self.allowed_dir)
            return [version, request_id, b"400", b"unknown key", b"", b""]
        if not room_for_a_connection():
            # 500: the controller learns the agent failed it, not that its key is bad (a 300,
            # "temporary", would drop the connection without a word: the CURVE RFC says so).
            self._refused += 1
            now = time.monotonic()
            if now - self._refusal_logged >= REFUSAL_LOG_S:
                log.warning("refused %d connection(s), latest from controller %s at %s: too many connections "
                            "(file descriptors kept for results, transfers and cells)", self._refused, name, peer)
                self._refused, self._refusal_logged = 0, now
            return [version, request_id, b"500", b"too many connections", b"", b""]
        log.info("controller %s (%s) authenticated from %s", name, key.decode(), peer)
        return [version, request_id, b"200", b"OK", name.encode(), b""]

    def close(self) -> None:
        """Close the authentication socket."""
        self.socket.close()
