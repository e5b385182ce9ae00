"""The agent's server loop: a ROUTER socket, one handler per message type.

The loop sleeps in `poll` until a controller sends something, a job produces a message
or a signal arrives; it never spins. Anything a controller sends that cannot be
decoded or honoured gets an `Error` reply and a log line, never an exception that stops
the agent.
"""

from __future__ import annotations

import contextlib
import ipaddress
import logging
import signal
import socket
import threading
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable, Optional
from urllib.parse import urlsplit

import zmq

from agent import __version__, protocol
from agent import runtime as runtimes
from agent.cache import Incoming, ModelCache, TransferError
from agent.facts import read_facts
from agent.jobs import JobRunner, delegates_offered
from agent.protocol import (
    Chunk,
    Error,
    Fetch,
    Have,
    Hello,
    InfoReply,
    InfoRequest,
    JobAccepted,
    Message,
    Offer,
    Ping,
    Pong,
    RunJob,
    Welcome,
)

log = logging.getLogger("edgebench.agent")

_OUTBOX = "inproc://edgebench-outbox"


class ConfigError(ValueError):
    """An agent configuration that must not be served."""


@dataclass
class AgentConfig:
    bind: str = "tcp://127.0.0.1:5555"
    data_dir: Path = Path("/var/lib/edgebench")
    insecure: bool = False
    root: str = "/"


def is_loopback_endpoint(endpoint: str) -> bool:
    """True for tcp endpoints on a loopback address (and ipc/inproc, which never leave)."""
    parts = urlsplit(endpoint)
    if parts.scheme in ("ipc", "inproc"):
        return True
    host = (parts.hostname or "").strip("[]")
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


@dataclass
class _Client:
    """What the agent tracks per connected controller."""

    transfers: dict[str, Incoming] = field(default_factory=dict)


class AgentServer:
    """Serves controllers on one ROUTER socket until `stop()` or SIGTERM/SIGINT."""

    def __init__(self, config: AgentConfig):
        if not config.insecure:
            raise ConfigError(
                "refusing to serve without CURVE keys; for a loopback-only agent pass --insecure")
        if not is_loopback_endpoint(config.bind):
            raise ConfigError(
                f"refusing to bind {config.bind} without authentication: "
                "plain mode is only for loopback endpoints")
        self.config = config
        self.runtime = runtimes.detect()
        self.cache = ModelCache(Path(config.data_dir) / "models")
        self.facts = read_facts(config.root)
        self.endpoint: Optional[str] = None
        self._clients: dict[bytes, _Client] = {}
        self._stopping = threading.Event()
        self._ctx = zmq.Context()
        self._router = self._ctx.socket(zmq.ROUTER)
        self._router.setsockopt(zmq.MAXMSGSIZE, protocol.MAX_FRAME_BYTES)
        self._router.setsockopt(zmq.LINGER, 1000)
        self._outbox = self._ctx.socket(zmq.PULL)
        self._outbox.bind(_OUTBOX)
        self._wake_r, self._wake_w = socket.socketpair()
        self._wake_r.setblocking(False)
        self._wake_w.setblocking(False)
        self._handlers: dict[type, Callable[[bytes, Message, list], None]] = {
            Hello: self._on_hello,
            Ping: self._on_ping,
            InfoRequest: self._on_info,
            Offer: self._on_offer,
            Chunk: self._on_chunk,
            RunJob: self._on_run,
        }
        self._local = threading.local()
        self.jobs = JobRunner(self.cache, self.runtime, self._send_from_thread, config.root)

    def bind(self) -> str:
        """Bind the ROUTER socket; returns the actual endpoint (a `*` port resolved)."""
        self._router.bind(self.config.bind)
        self.endpoint = self._router.getsockopt(zmq.LAST_ENDPOINT).decode()
        return self.endpoint

    def stop(self) -> None:
        """Ask the loop to finish (safe from any thread or a signal handler)."""
        self._stopping.set()
        with contextlib.suppress(OSError):
            self._wake_w.send(b"x")

    def serve(self, install_signal_handlers: bool = True) -> None:
        """Run until stopped."""
        if self.endpoint is None:
            self.bind()
        if install_signal_handlers:
            for sig in (signal.SIGTERM, signal.SIGINT):
                signal.signal(sig, lambda *_: self.stop())
        poller = zmq.Poller()
        poller.register(self._router, zmq.POLLIN)
        poller.register(self._outbox, zmq.POLLIN)
        poller.register(self._wake_r, zmq.POLLIN)
        log.info("listening on %s (runtime %s %s)", self.endpoint,
                 self.runtime.name if self.runtime else "none",
                 self.runtime.version if self.runtime else "")
        try:
            while not self._stopping.is_set():
                events = dict(poller.poll())
                if self._wake_r.fileno() in events:
                    self._drain_wake()
                if self._outbox in events:
                    self._forward_outbox()
                if self._router in events:
                    self._receive()
        finally:
            self._close()

    def _drain_wake(self) -> None:
        try:
            while self._wake_r.recv(64):
                pass
        except BlockingIOError:
            pass

    def _forward_outbox(self) -> None:
        while True:
            try:
                frames = self._outbox.recv_multipart(zmq.NOBLOCK)
            except zmq.Again:
                return
            self._router.send_multipart(frames)

    def _receive(self) -> None:
        while True:
            try:
                frames = self._router.recv_multipart(zmq.NOBLOCK, copy=True)
            except zmq.Again:
                return
            client, frames = frames[0], frames[1:]
            try:
                message, payload = protocol.decode(frames)
            except protocol.ProtocolError as exc:
                log.warning("client %s: %s", client.hex(), exc)
                self._reply(client, Error(message=str(exc)))
                continue
            handler = self._handlers.get(type(message))
            if handler is None:
                log.warning("client %s: unexpected %s message", client.hex(), type(message).__name__)
                self._reply(client, Error(message=f"unexpected message {type(message).__name__}"))
                continue
            try:
                handler(client, message, payload)
            except Exception as exc:  # a handler bug must not stop the agent
                log.exception("client %s: %s failed", client.hex(), type(message).__name__)
                self._reply(client, Error(message=f"agent error handling {type(message).__name__}: {exc}"))

    def _reply(self, client: bytes, message: Message, *payload: bytes) -> None:
        self._router.send_multipart([client, *protocol.encode(message, *payload)])

    def _send_from_thread(self, client: bytes, message: Message) -> None:
        sock = getattr(self._local, "push", None)
        if sock is None:
            sock = self._local.push = self._ctx.socket(zmq.PUSH)
            sock.connect(_OUTBOX)
        sock.send_multipart([client, *protocol.encode(message)])

    def _client(self, client: bytes) -> _Client:
        return self._clients.setdefault(client, _Client())

    def _on_hello(self, client: bytes, message: Hello, payload: list) -> None:
        log.info("client %s: hello (controller %s)", client.hex(), message.client_version)
        self._reply(client, Welcome(
            agent_version=__version__, minor=protocol.MINOR,
            runtime=self.runtime.name if self.runtime else None,
            runtime_version=self.runtime.version if self.runtime else None,
            delegates=delegates_offered(self.runtime), facts=self.facts,
        ))

    def _on_ping(self, client: bytes, message: Ping, payload: list) -> None:
        self._reply(client, Pong(seq=message.seq))

    def _on_info(self, client: bytes, message: InfoRequest, payload: list) -> None:
        self._reply(client, InfoReply(facts=read_facts(self.config.root)))

    def _on_offer(self, client: bytes, message: Offer, payload: list) -> None:
        state = self._client(client)
        try:
            if self.cache.has(message.sha256):
                self._reply(client, Have(sha256=message.sha256, transferred=0))
                return
            old = state.transfers.pop(message.sha256, None)
            if old is not None:
                old.abort()
            incoming = self.cache.receive(message.sha256, message.size, protocol.CHUNK_SIZE)
        except (TransferError, OSError) as exc:
            self._reply(client, Error(message=str(exc), ref=message.sha256))
            return
        state.transfers[message.sha256] = incoming
        log.info("client %s: receiving %s (%d bytes, from %d)", client.hex(), message.name,
                 message.size, incoming.received)
        for _ in range(protocol.FETCH_CREDIT):
            if not self._request_next(client, incoming):
                break

    def _request_next(self, client: bytes, incoming: Incoming) -> bool:
        request = incoming.next_request()
        if request is None:
            return False
        offset, length = request
        self._reply(client, Fetch(sha256=incoming.sha256, offset=offset, length=length))
        return True

    def _on_chunk(self, client: bytes, message: Chunk, payload: list) -> None:
        state = self._client(client)
        incoming = state.transfers.get(message.sha256)
        if incoming is None or len(payload) != 1:
            self._reply(client, Error(message="unexpected chunk", ref=message.sha256))
            return
        try:
            complete = incoming.write(message.offset, payload[0])
        except (TransferError, OSError) as exc:
            incoming.abort()
            del state.transfers[message.sha256]
            log.warning("client %s: transfer %s failed: %s", client.hex(), message.sha256, exc)
            self._reply(client, Error(message=str(exc), ref=message.sha256))
            return
        if complete:
            del state.transfers[message.sha256]
            log.info("client %s: stored %s", client.hex(), message.sha256)
            self._reply(client, Have(sha256=message.sha256, transferred=incoming.size))
        else:
            self._request_next(client, incoming)

    def _on_run(self, client: bytes, message: RunJob, payload: list) -> None:
        self._reply(client, JobAccepted(job_id=message.job_id, cells=len(message.cells)))
        self.jobs.submit(client, message)

    def _close(self) -> None:
        log.info("stopping")
        self.jobs.stop()
        self._forward_outbox()
        for state in self._clients.values():
            for incoming in state.transfers.values():
                incoming.abort()
        self._router.close()
        self._outbox.close()
        self._wake_r.close()
        self._wake_w.close()
        self._ctx.destroy(linger=1000)
