"""The agent's server loop: a ROUTER socket, one handler per message type.

The loop sleeps in `poll` until a controller sends something, a job produces a result,
an authentication request or a signal arrives, or the systemd watchdog is due; it never
spins. Anything a controller sends that cannot be decoded, validated or honoured gets an
`Error` reply and a log line, never an exception that stops the agent.

Results are written to the outbox by the job thread before they are sent, and the loop
routes them to whichever connection last claimed the job: a controller that reconnects
re-sends its `RunJob` (same id) and gets every unacknowledged result again.

The loop answers `Hello`, `Ping` and `InfoRequest` itself; transfers (agent.transfers) and
jobs (agent.claims) have handlers of their own, and agent.clients knows the connections.
"""

from __future__ import annotations

import contextlib
import ctypes
import ctypes.util
import logging
import os
import resource
import signal
import socket
import threading
import time
from typing import Callable, Optional

import msgspec
import zmq
from zmq.utils.monitor import parse_monitor_message

from agent import __version__, trust
from agent import runtime as runtimes
from agent.cache import ModelCache
from agent.claims import Claims
from agent.clients import Clients
from agent.config import AgentConfig, cell_memory_limit_mb
from agent.datadir import lock_data_dir
from agent.facts import read_facts
from agent.jobs import JobRunner
from agent.notify import Notifier
from agent.outbox import Outbox
from agent.replay import Replays
from agent.transfers import Transfers
from agent.wire import protocol
from agent.wire.keys import check_private, load_secret
from agent.wire.protocol import (
    Ack,
    AndroidTarget,
    Cancel,
    CellDone,
    CellStarted,
    Chunk,
    Error,
    Hello,
    InfoReply,
    InfoRequest,
    JobDone,
    Message,
    Offer,
    Ping,
    Pong,
    RunJob,
    Welcome,
)
from agent.wire.text import quote
from agent.zap import ZAP_DOMAIN, ZapHandler

log = logging.getLogger("edgebench.agent")

_RESULTS = "inproc://edgebench-results"
# libzmq's own heartbeat on every connection: a dead peer is noticed even mid-transfer.
ZMQ_HEARTBEAT_MS = 10_000
# Messages queued for one slow connection before libzmq drops more (ZMQ_SNDHWM).
SEND_HWM = 1000
# Quiet this long after traffic, the agent hands freed memory back to the system.
TRIM_AFTER_S = 5.0
# Results held in memory (the disk refused them) are written again this often.
REWRITE_EVERY_S = 5.0
# Stopping because the controller that started this agent is gone: the job thread gets this
# long to end once its running cell is killed.
ABANDON_WAIT_S = 10.0
# A peer's TCP handshake must complete within this (libzmq's default is 30 s), so that
# connections that never authenticate hold a file descriptor only briefly.
HANDSHAKE_MS = 10_000


class _Route(msgspec.Struct, array_like=True):
    """How the loop routes a message the job thread hands it over inproc: to the controller
    that claimed `job_id` (else to `asker`); `done` ends the job and unpins its models."""

    asker: bytes
    job_id: str
    done: bool
    stored: Optional[str] = None  # the outbox file of a result: a replay may have sent it already


_route_encoder = msgspec.msgpack.Encoder()
_route_decoder = msgspec.msgpack.Decoder(_Route)


def _malloc_trim() -> Callable[[], None]:
    """glibc's `malloc_trim(0)`: after a burst (a flood, a big replay) libzmq's and Python's
    freed buffers go back to the system instead of staying in the process for good.

    Also caps glibc's per-thread arenas at two (before libzmq starts its threads): each
    thread's own arena would otherwise keep the pieces of every burst it served."""
    try:
        libc = ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6")
        trim, mallopt = libc.malloc_trim, libc.mallopt
    except (OSError, AttributeError):
        return lambda: None
    mallopt(_M_ARENA_MAX, 2)
    trim.argtypes, trim.restype = [ctypes.c_size_t], ctypes.c_int
    return lambda: trim(0)


_M_ARENA_MAX = -8  # glibc's malloc.h


def _raise_open_files_limit() -> None:
    """Take the hard limit of open files as the soft one: idle connections then cannot use
    up the descriptors that result files, transfers and cells need (a soft limit of 1,024
    is common, the hard one far higher)."""
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if hard == resource.RLIM_INFINITY or hard > soft:
        with contextlib.suppress(ValueError, OSError):
            resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))


class AgentServer:
    """Serves controllers on one ROUTER socket until `stop()` or SIGTERM/SIGINT."""

    def __init__(self, config: AgentConfig, notifier: Optional[Notifier] = None,
                 lifeline: Optional[int] = None, lock_wait_s: float = 0.0):
        config.check()
        self._trim = _malloc_trim()  # before any thread starts
        _raise_open_files_limit()
        self.config = config
        self.notifier = notifier or Notifier({})
        # A pipe whose other end the controller that started this agent holds: its end of
        # file means that controller is gone, and so should this agent be.
        self.lifeline = lifeline
        self._abandon = False
        data = config.data_path
        self._data_lock = lock_data_dir(data, wait_s=lock_wait_s, lifeline=lifeline is not None)
        self.runtime = runtimes.detect()
        self.cache = ModelCache(data / "models", config.cache_quota_bytes)
        self.clients = Clients()
        self.transfers = Transfers(self.cache, self.clients, self._reply)
        self.outbox = Outbox(data / "outbox")
        self.outbox.recover()
        self.outbox.prune()
        self.replays = Replays(self.outbox, self._reply)
        self.facts = read_facts(config.root)
        self.cell_memory_limit_mb = cell_memory_limit_mb(config.cell_memory_limit_mb, self.facts.memory_mb)
        self._stall_reported: Optional[str] = None
        self._next_rewrite: Optional[float] = None
        self.endpoint: Optional[str] = None
        self.messages_received = 0
        self._stopping = threading.Event()
        self._jobs_stopped = threading.Event()
        self._reload = threading.Event()
        self._ctx = zmq.Context()
        self._zap: Optional[ZapHandler] = None
        self._router = self._ctx.socket(zmq.ROUTER)
        if not config.insecure:
            check_private(config.secret_key)
            public, secret = load_secret(config.secret_key)
            self._zap = ZapHandler(self._ctx, config.allowed_keys_dir)
            self._router.setsockopt(zmq.CURVE_SERVER, 1)
            self._router.setsockopt(zmq.CURVE_PUBLICKEY, public)
            self._router.setsockopt(zmq.CURVE_SECRETKEY, secret)
            self._router.setsockopt(zmq.ZAP_DOMAIN, ZAP_DOMAIN.encode())
        self._router.setsockopt(zmq.MAXMSGSIZE, protocol.MAX_FRAME_BYTES)
        self._router.setsockopt(zmq.LINGER, 1000)
        self._router.setsockopt(zmq.HEARTBEAT_IVL, ZMQ_HEARTBEAT_MS)
        self._router.setsockopt(zmq.HEARTBEAT_TIMEOUT, 3 * ZMQ_HEARTBEAT_MS)
        self._router.setsockopt(zmq.SNDHWM, SEND_HWM)
        self._router.setsockopt(zmq.HANDSHAKE_IVL, HANDSHAKE_MS)
        # No receive limit: libzmq 4.3.5 aborts (`!_io_error`, stream_engine_base.cpp:310) when
        # a peer hangs up while its input is stalled at the high-water mark, which a flood of
        # small messages reaches. What a message can make the agent hold is bounded instead.
        self._router.setsockopt(zmq.RCVHWM, 0)
        # Hang-ups, matched to controllers by their connection's file descriptor.
        self._monitor = self._router.get_monitor_socket(zmq.EVENT_ACCEPTED | zmq.EVENT_DISCONNECTED)
        self._busy_since_trim, self._last_busy = False, time.monotonic()
        self._results = self._ctx.socket(zmq.PULL)
        self._results.bind(_RESULTS)
        self._wake_r, self._wake_w = socket.socketpair()
        self._wake_r.setblocking(False)
        self._wake_w.setblocking(False)
        self._local = threading.local()
        self.jobs = JobRunner(self.cache, self.runtime, self._send_from_thread, config.root,
                              libraries=config.delegate_libraries, data_dir=data,
                              memory_limit_mb=self.cell_memory_limit_mb)
        self.claims = Claims(self.outbox, self.replays, self.jobs, self.cache, self.clients, self._reply,
                             self._phone_allowed, self._stopping)
        self._handlers: dict[type, Callable[[bytes, Message, list], None]] = {
            Hello: self._on_hello,
            Ping: self._on_ping,
            InfoRequest: self._on_info,
            Offer: self.transfers.on_offer,
            Chunk: self.transfers.on_chunk,
            RunJob: self.claims.on_run,
            Ack: self.claims.on_ack,
            Cancel: self.claims.on_cancel,
        }

    def bind(self) -> str:
        """Bind the ROUTER socket; returns the actual endpoint (a `*` port resolved)."""
        self._router.bind(self.config.bind)
        self.endpoint = self._router.getsockopt(zmq.LAST_ENDPOINT).decode()
        return self.endpoint

    def stop(self) -> None:
        """Ask the loop to finish (safe from any thread or a signal handler)."""
        self._stopping.set()
        self._wake()

    def reload(self) -> None:
        """Ask the loop to read the allowed keys again (safe from a signal handler)."""
        self._reload.set()
        self._wake()

    def _wake(self) -> None:
        with contextlib.suppress(OSError):
            self._wake_w.send(b"x")

    def handle_signals(self) -> None:
        """SIGTERM/SIGINT stop the agent, SIGHUP reloads the allowed keys (main thread only)."""
        for sig in (signal.SIGTERM, signal.SIGINT):
            signal.signal(sig, lambda *_: self.stop())
        signal.signal(signal.SIGHUP, lambda *_: self.reload())
        # A signal may land on a libzmq or job thread; the wakeup fd still ends the main poll.
        signal.set_wakeup_fd(self._wake_w.fileno())

    def serve(self, install_signal_handlers: bool = True) -> None:
        """Run until stopped; a running cell is finished (and its result kept) first."""
        if self.endpoint is None:
            self.bind()
        if install_signal_handlers:
            self.handle_signals()
        poller = zmq.Poller()
        for sock in (self._router, self._results, self._wake_r, self._monitor,
                     *([self._zap.socket] if self._zap else []),
                     *([self.lifeline] if self.lifeline is not None else [])):
            poller.register(sock, zmq.POLLIN)
        log.info("listening on %s (%s, runtime %s %s, cells limited to %s)", self.endpoint,
                 "insecure" if self.config.insecure else "CURVE",
                 self.runtime.name if self.runtime else "none",
                 self.runtime.version if self.runtime else "",
                 f"{self.cell_memory_limit_mb} MB" if self.cell_memory_limit_mb else "no memory limit")
        self.notifier.ready(f"listening on {self.endpoint}")
        watchdog_s = self.notifier.watchdog_s / 2 if self.notifier.watchdog_s else None
        next_ping = time.monotonic()
        stopping_jobs = False
        try:
            while not self._jobs_stopped.is_set():
                if self._stopping.is_set() and not stopping_jobs:
                    stopping_jobs = True
                    self._begin_stop()
                if watchdog_s is not None and time.monotonic() >= next_ping:
                    self._feed_watchdog()
                    next_ping = time.monotonic() + watchdog_s
                events = dict(poller.poll(self._poll_timeout_ms(next_ping if watchdog_s else None)))
                if self._wake_r.fileno() in events:
                    self._drain_wake()
                if self.lifeline is not None and self.lifeline in events:
                    self._check_lifeline(poller)
                if self._reload.is_set():
                    self._reload.clear()
                    self._reload_keys()
                if self._zap is not None and self._zap.socket in events:
                    self._zap.handle()
                if self._results in events:
                    self._forward_results()
                if self._monitor in events:
                    self._hang_ups()
                if self._router in events:
                    self._receive()
                self._forget_idle_clients()
                self.replays.run_due()
                self._rewrite_held_results()
                if self._busy_since_trim and time.monotonic() - self._last_busy >= TRIM_AFTER_S:
                    self._busy_since_trim = False
                    self._trim()
        finally:
            self._close()

    def _poll_timeout_ms(self, next_ping: Optional[float]) -> Optional[int]:
        deadlines = [next_ping] if next_ping is not None else []
        deadlines += [d for d in (self.clients.next_deadline(), self.transfers.next_deadline(),
                                  self.replays.next_deadline(), self._next_rewrite) if d is not None]
        if self._busy_since_trim:
            deadlines.append(self._last_busy + TRIM_AFTER_S)
        if not deadlines:
            return None  # nothing is due: sleep until something arrives
        return max(0, int((min(deadlines) - time.monotonic()) * 1000) + 1)

    def _feed_watchdog(self) -> None:
        """Pet systemd's watchdog while the job thread gets somewhere; a stuck one starves it,
        so the service manager restarts the agent."""
        stalled = self.jobs.progress.stalled()
        if stalled is None:
            self.notifier.watchdog()
            self._stall_reported = None
        elif stalled != self._stall_reported:
            log.error("%s; the systemd watchdog is no longer fed", stalled)
            self.notifier.status(stalled)
            self._stall_reported = stalled

    def _check_lifeline(self, poller: zmq.Poller) -> None:
        """End of file on the lifeline: the controller that started this agent died."""
        try:
            data = os.read(self.lifeline, 4096)
        except BlockingIOError:
            return
        except OSError:
            data = b""
        if data:
            return
        poller.unregister(self.lifeline)
        self.lifeline = None
        log.warning("the controller that started this agent is gone: stopping (the running cell is cancelled)")
        self._abandon = True
        self.stop()

    def _rewrite_held_results(self) -> None:
        """Write the results the disk refused, once it takes them again."""
        now = time.monotonic()
        if self._next_rewrite is not None and now < self._next_rewrite:
            return
        held = self.outbox.flush() if self._next_rewrite is not None else self.outbox.unwritten()
        self._next_rewrite = now + REWRITE_EVERY_S if held else None

    def _begin_stop(self) -> None:
        """Let the job thread finish its cell in the background while the loop keeps serving."""
        log.info("stopping: %s", "cancelling the running cell" if self._abandon else "finishing the running cell")
        self.notifier.stopping()

        def finish() -> None:
            self.jobs.stop(abandon=self._abandon, wait_s=ABANDON_WAIT_S if self._abandon else None)
            self._jobs_stopped.set()
            self._wake()

        threading.Thread(target=finish, name="stop", daemon=True).start()

    def _reload_keys(self) -> None:
        self.notifier.reloading()
        if self._zap is not None:
            self._zap.reload()
        self.notifier.ready()

    def _drain_wake(self) -> None:
        try:
            while self._wake_r.recv(64):
                pass
        except BlockingIOError:
            pass

    def _forward_results(self) -> None:
        while True:
            try:
                frames = self._results.recv_multipart(zmq.NOBLOCK)
            except zmq.Again:
                return
            route = _route_decoder.decode(frames[0])
            client = self.claims.recipient(route.job_id, route.asker, route.done)
            if client is None:  # kept in the outbox until a controller claims the job
                continue
            if route.stored and self.replays.covers(route.job_id, client, route.stored):
                continue  # written before the replay began: the replay sends it
            self._router.send_multipart([client, *frames[1:]])

    def _receive(self) -> None:
        while True:
            try:
                raw = self._router.recv_multipart(zmq.NOBLOCK, copy=False)
            except zmq.Again:
                return
            self.messages_received += 1
            self._busy_since_trim, self._last_busy = True, time.monotonic()
            # Identity, protocol and header as bytes; payloads (model chunks) as views of
            # libzmq's buffers, written and hashed without another copy.
            client = raw[0].bytes
            frames = [frame.bytes for frame in raw[1:3]] + [frame.buffer for frame in raw[3:]]
            self.clients.heard(client, raw[0])
            try:
                message, payload = protocol.decode(frames)
                bad = protocol.problem(message, payload)
            except protocol.ProtocolError as exc:
                log.warning("client %s: %s", client.hex(), exc)
                self._reply(client, Error(message=str(exc)))
                continue
            except Exception as exc:  # noqa: BLE001 - a decoder surprise must not stop the agent either
                log.warning("client %s: undecodable message: %s", client.hex(), quote(repr(exc)))
                self._reply(client, Error(message=f"malformed message: {quote(str(exc))}"))
                continue
            if bad:
                log.warning("client %s: rejected %s: %s", client.hex(), type(message).__name__, bad)
                self._reply(client, Error(message=f"invalid {type(message).__name__}: {bad}"))
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
                self._reply(client, Error(message=f"agent error handling {type(message).__name__}: {quote(str(exc))}"))

    def _reply(self, client: bytes, message: Message, *payload: bytes) -> None:
        # ROUTER drops what a slow or vanished peer cannot take (SNDHWM); never blocks.
        self._router.send_multipart([client, *protocol.encode(message, *payload)], zmq.NOBLOCK)

    def _hang_ups(self) -> None:
        """Mark the controllers whose connection closed: their jobs may be claimed at once."""
        while True:
            try:
                event = parse_monitor_message(self._monitor.recv_multipart(zmq.NOBLOCK))
            except zmq.Again:
                return
            fd = int(event["value"])
            if event["event"] == zmq.EVENT_ACCEPTED:
                self.clients.accepted(fd)
            elif event["event"] == zmq.EVENT_DISCONNECTED:
                self.clients.hung_up(fd)

    def _send_from_thread(self, client: bytes, message: Message) -> None:
        """Called by the job thread: persist a result (in memory when the disk refuses it),
        then hand it to the loop to route."""
        stored = None
        if isinstance(message, (CellDone, JobDone)):
            stored, message = self.outbox.put(message)
        elif isinstance(message, CellStarted):
            self.outbox.started(message.job_id, message.index)
        sock = getattr(self._local, "push", None)
        if sock is None:
            sock = self._local.push = self._ctx.socket(zmq.PUSH)
            sock.connect(_RESULTS)
        route = _Route(asker=client, job_id=getattr(message, "job_id", ""), done=isinstance(message, JobDone),
                       stored=stored)
        sock.send_multipart([_route_encoder.encode(route), *protocol.encode(message)])

    def _forget_idle_clients(self) -> None:
        now = time.monotonic()
        forgotten = self.clients.forget_idle(now)
        if forgotten:
            # Jobs of forgotten controllers have no owner: their results wait in the outbox.
            self.claims.forget(forgotten)
            self._busy_since_trim, self._last_busy = True, now  # freed: hand it back soon
        if self.transfers.expire(now):
            self._busy_since_trim, self._last_busy = True, now

    def _on_hello(self, client: bytes, message: Hello, payload: list) -> None:
        log.info("client %s: hello (controller %s, protocol minor %d)", client.hex(),
                 message.client_version, message.minor)
        self._reply(client, Welcome(
            agent_version=__version__, minor=protocol.MINOR,
            runtime=self.runtime.name if self.runtime else None,
            runtime_version=self.runtime.version if self.runtime else None,
            delegates=runtimes.builtin_delegates(self.runtime), facts=self.facts,
        ))

    def _on_ping(self, client: bytes, message: Ping, payload: list) -> None:
        # A controller waiting for its job learns whether it waits in line or for a stuck agent.
        self._reply(client, Pong(seq=message.seq, ahead=self.claims.ahead(client),
                                 stalled=self.jobs.progress.stalled()))

    def _on_info(self, client: bytes, message: InfoRequest, payload: list) -> None:
        if message.android is not None:  # a phone's facts take ADB round trips: not on this loop
            if not self._phone_allowed(client, message.android, "info"):
                return
            self.jobs.submit_info(client, message)
            return
        self._reply(client, InfoReply(facts=read_facts(self.config.root)))

    def _phone_allowed(self, client: bytes, target: AndroidTarget, ref: str) -> bool:
        try:
            trust.check_phone(target, self.config.phones)
        except trust.NotAllowed as exc:
            log.warning("client %s: refused: %s", client.hex(), exc)
            self._reply(client, Error(message=str(exc), ref=ref))
            return False
        return True

    def _close(self) -> None:
        log.info("stopped")
        self._forward_results()
        self.transfers.close()
        self._router.disable_monitor()
        sockets = [self._monitor, self._router, self._results, *([self._zap] if self._zap else [])]
        for sock in sockets:
            sock.close()
        with contextlib.suppress(ValueError):  # not the main thread: no wakeup fd was set
            signal.set_wakeup_fd(-1)
        self._wake_r.close()
        self._wake_w.close()
        self._ctx.destroy(linger=1000)
        self.notifier.close()
        self._data_lock.close()
