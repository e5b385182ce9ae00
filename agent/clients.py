"""The controllers the agent hears from: who each connection is, and whether it is still there.

Connection ids are free to invent, so the registry is bounded and forgets connections that
stay silent (a waiting controller pings every 5 s). A hang-up is matched to a connection by
its file descriptor, which libzmq's monitor reports.
"""

from __future__ import annotations

import contextlib
import time
from dataclasses import dataclass, field
from typing import Optional

import zmq

# How long the agent remembers a silent connection, and how many it remembers at most.
IDLE_S = 30.0
MAX_CLIENTS = 4096


@dataclass
class Client:
    """What the agent tracks per connected controller."""

    last_seen: float = field(default_factory=time.monotonic)
    fd: Optional[int] = None  # its TCP connection, to notice the hang-up
    gone: bool = False
    refused_at: float = -1e9
    peer: str = ""  # who is behind the connection: its CURVE key, or its address


def _peer(frame: zmq.Frame) -> str:
    """Who sent a message: the CURVE key its handshake proved, else its address."""
    for prop in ("User-Id", "Peer-Address"):
        with contextlib.suppress(zmq.ZMQError, KeyError):
            value = frame.get(prop)
            if value:
                return str(value)
    return ""


class Clients:
    """Every connection heard from lately, by its routing id."""

    def __init__(self):
        self._known: dict[bytes, Client] = {}
        self._closed_fds: set[int] = set()

    def get(self, client: bytes) -> Client:
        """The connection's record, made on first use (the oldest is forgotten beyond the bound)."""
        state = self._known.get(client)
        if state is None:
            if len(self._known) >= MAX_CLIENTS:
                del self._known[min(self._known, key=lambda c: self._known[c].last_seen)]
            state = self._known[client] = Client()
        return state

    def heard(self, client: bytes, frame: zmq.Frame) -> Client:
        """A message arrived on this connection (its first frame is `frame`)."""
        state = self.get(client)
        state.last_seen = time.monotonic()
        with contextlib.suppress(zmq.ZMQError):
            state.fd = frame.get(zmq.SRCFD)
        if not state.peer:
            state.peer = _peer(frame)
        # Messages queued before a hang-up arrive after it: they do not make the peer alive.
        state.gone = state.fd in self._closed_fds
        return state

    def alive(self, client: bytes) -> Optional[Client]:
        """The record of a connection still there and heard from lately, else None."""
        state = self._known.get(client)
        if state is None or state.gone or time.monotonic() - state.last_seen > IDLE_S:
            return None
        return state

    def accepted(self, fd: int) -> None:
        """A new connection on descriptor `fd` (perhaps one a closed connection had)."""
        self._closed_fds.discard(fd)

    def hung_up(self, fd: int) -> None:
        """The connection on descriptor `fd` closed: its controller is gone."""
        self._closed_fds.add(fd)
        for state in self._known.values():
            if state.fd == fd:
                state.gone = True

    def forget_idle(self, now: float) -> set[bytes]:
        """Forget connections silent for `IDLE_S`; returns their ids."""
        forgotten = {client for client, state in self._known.items() if now - state.last_seen > IDLE_S}
        for client in forgotten:
            del self._known[client]
        return forgotten

    def next_deadline(self) -> Optional[float]:
        """When the first known connection would be forgotten, or None."""
        return min((state.last_seen + IDLE_S for state in self._known.values()), default=None)
