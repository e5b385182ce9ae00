"""The controller's side of the wire: a DEALER socket talking to one agent.

Nothing here waits forever: a silent agent is lost after `lost_after_s`, and an agent that
answers pings but does not get on with a request is given up at that request's deadline
(a transfer's from its size, a job's from the settings of its cells).
"""

from __future__ import annotations

import os
import time
import uuid
from typing import Callable, NamedTuple, Optional

import zmq
from zmq.utils.monitor import recv_monitor_message

from agent.wire import protocol
from agent.wire.protocol import (
    Ack,
    AndroidTarget,
    Cancel,
    CellDone,
    CellSpec,
    CellStarted,
    Chunk,
    Cooling,
    Error,
    Fetch,
    Have,
    Hello,
    InfoReply,
    InfoRequest,
    JobAccepted,
    JobDone,
    Message,
    Offer,
    Ping,
    Pong,
    RunJob,
    Welcome,
    cell_time_limit,
    transfer_time_limit,
)
from agent.wire.records import Facts
from controller import __version__

_CONNECTION_EVENTS = (zmq.EVENT_HANDSHAKE_FAILED_AUTH | zmq.EVENT_HANDSHAKE_FAILED_PROTOCOL
                      | zmq.EVENT_HANDSHAKE_FAILED_NO_DETAIL | zmq.EVENT_DISCONNECTED)
# The status of an authentication the agent failed on its side, not for the key (ZAP, RFC 27).
ZAP_AGENT_FAILED = 500
# Send a ping after this much silence; declare the agent lost after `lost_after_s`.
HEARTBEAT_S = 5.0
LOST_AFTER_S = 30.0
# How long an interrupted controller waits for the agent to confirm a cancel.
CANCEL_WAIT_S = 5.0
# Slack on top of what the agent itself allows a request (its own bookkeeping, the network).
MARGIN_S = 60.0
# A phone's facts: the agent connects (waiting for authorisation) and runs a few commands.
INFO_TIMEOUT_S = 180.0


class AgentError(RuntimeError):
    """The agent refused a request; the message is the agent's own line."""


class AgentLost(ConnectionError):
    """The agent stopped answering."""


class JobStalled(AgentError):
    """The agent answers, but a job made no progress within its deadline (or the agent says
    its job thread is stuck)."""


def job_timeout(cells: list[CellSpec], on_phone: bool = False) -> float:
    """How long a job may go without progress: its slowest cell, cooldown included, plus a margin."""
    return max(cell_time_limit(spec, on_phone) + spec.max_cooldown_s for spec in cells) + MARGIN_S


class CurveKeys(NamedTuple):
    """z85 keys for an authenticated connection: the agent's public key and our pair."""

    server_public: bytes
    public: bytes
    secret: bytes


def load_curve_keys(server_public_key: os.PathLike, client_secret_key: os.PathLike) -> CurveKeys:
    """The keys for a CURVE connection, from pyzmq certificate files."""
    from agent.wire.keys import load_public, load_secret

    public, secret = load_secret(client_secret_key)
    return CurveKeys(server_public=load_public(server_public_key), public=public, secret=secret)


class AgentClient:
    """A connection to one agent. Not thread-safe: one client per thread."""

    def __init__(self, endpoint: str, lost_after_s: float = LOST_AFTER_S,
                 heartbeat_s: float = HEARTBEAT_S, curve: Optional[CurveKeys] = None):
        self.endpoint = endpoint
        self.lost_after_s = lost_after_s
        self.heartbeat_s = min(heartbeat_s, lost_after_s)
        self.bytes_sent = 0
        self._ctx = zmq.Context.instance()
        self._socket = self._ctx.socket(zmq.DEALER)
        self._socket.setsockopt(zmq.LINGER, 0)
        self._socket.setsockopt(zmq.MAXMSGSIZE, protocol.MAX_FRAME_BYTES)
        self._socket.setsockopt(zmq.ROUTING_ID, uuid.uuid4().bytes)
        if curve is not None:
            self._socket.setsockopt(zmq.CURVE_SERVERKEY, curve.server_public)
            self._socket.setsockopt(zmq.CURVE_PUBLICKEY, curve.public)
            self._socket.setsockopt(zmq.CURVE_SECRETKEY, curve.secret)
        # Handshake failures (a refused key, CURVE on one side only) and a dropped connection
        # (an agent that died) are otherwise silent: libzmq just reconnects.
        self._monitor = self._socket.get_monitor_socket(_CONNECTION_EVENTS)
        self._poller = zmq.Poller()
        self._poller.register(self._socket, zmq.POLLIN)
        self._poller.register(self._monitor, zmq.POLLIN)
        self._socket.connect(endpoint)
        self._ping_seq = 0

    def close(self) -> None:
        """Close the connection."""
        self._socket.disable_monitor()
        self._monitor.close()
        self._socket.close()

    def __enter__(self) -> AgentClient:
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    def _send(self, message: Message, *payload: bytes) -> None:
        frames = protocol.encode(message, *payload)
        if len(frames[1]) > protocol.MAX_FRAME_BYTES:  # libzmq would drop the connection silently
            raise AgentError(f"{type(message).__name__} of {len(frames[1])} bytes exceeds the "
                             f"{protocol.MAX_FRAME_BYTES}-byte frame limit")
        self._socket.send_multipart(frames, copy=False)

    def _receive(self, lost_after_s: Optional[float] = None, until: Optional[float] = None,
                 pongs: bool = False) -> Optional[tuple]:
        """The next message (a Pong only when `pongs`), pinging while the agent is silent;
        None once the monotonic time `until` has passed."""
        lost_after_s = lost_after_s or self.lost_after_s
        last_heard = time.monotonic()
        while True:
            now = time.monotonic()
            if until is not None and now >= until:
                return None
            silent = now - last_heard
            if silent >= lost_after_s:
                raise AgentLost(f"agent at {self.endpoint} did not answer for {lost_after_s:.0f} s")
            wait = min(self.heartbeat_s, lost_after_s - silent, *([until - now] if until is not None else []))
            events = dict(self._poller.poll(int(wait * 1000) + 1))
            if self._monitor in events:
                self._connection_event()
            if self._socket in events:
                message, payload = protocol.decode(self._socket.recv_multipart())
                last_heard = time.monotonic()
                if pongs or not isinstance(message, Pong):
                    return message, payload
            elif time.monotonic() - last_heard >= self.heartbeat_s:
                self._ping_seq += 1
                self._send(Ping(seq=self._ping_seq))

    def _connection_event(self) -> None:
        event = recv_monitor_message(self._monitor)
        if event["event"] == zmq.EVENT_DISCONNECTED:
            raise AgentLost(f"connection to the agent at {self.endpoint} was lost")
        if event["event"] == zmq.EVENT_HANDSHAKE_FAILED_AUTH and event["value"] == ZAP_AGENT_FAILED:
            raise AgentError(f"agent at {self.endpoint} could not take this connection now (no room for "
                             "another connection, or an error of its own: its log says which); try again later")
        if event["event"] == zmq.EVENT_HANDSHAKE_FAILED_AUTH:
            raise AgentError(f"agent at {self.endpoint} refused this controller's key "
                             "(add its public key to the agent's allowed_keys_dir)")
        raise AgentError(f"handshake with agent at {self.endpoint} failed (error {event['value']}): "
                         "do both sides agree on CURVE and the agent's public key?")

    def _expect(self, kind: type, timeout_s: Optional[float] = None, within_s: Optional[float] = None):
        """The reply `kind`: AgentLost after `timeout_s` of silence, AgentError when the agent
        answers pings but not the request within `within_s`."""
        received = self._receive(timeout_s, until=time.monotonic() + within_s if within_s else None)
        if received is None:
            raise AgentError(f"agent at {self.endpoint} sent no {kind.__name__} within {within_s:.0f} s")
        message, _ = received
        if isinstance(message, Error):
            raise AgentError(message.message)
        if not isinstance(message, kind):
            raise AgentError(f"expected {kind.__name__}, agent sent {type(message).__name__}")
        return message

    def hello(self, timeout_s: Optional[float] = None) -> Welcome:
        """Open the conversation: the agent's version, runtime, delegates and facts."""
        self._send(Hello(client_version=__version__))
        return self._expect(Welcome, timeout_s, within_s=timeout_s or self.lost_after_s)

    def info(self, android: Optional[AndroidTarget] = None) -> Facts:
        """The agent's device facts, or those of the phone it drives through ADB."""
        self._send(InfoRequest(android=android))
        return self._expect(InfoReply, within_s=INFO_TIMEOUT_S).facts

    def push_model(self, path: str, sha256: str, size: int, name: str, kind: str = "model") -> int:
        """Make sure the agent holds this model (or dataset); returns the bytes sent (0 if cached).

        Bounded by the transfer's own deadline (from its size), which the agent keeps too:
        also when the agent waits for another controller to send the same blob.
        """
        self._send(Offer(sha256=sha256, size=size, name=name, kind=kind))
        sent = 0
        limit_s = transfer_time_limit(size) + MARGIN_S
        until = time.monotonic() + limit_s
        fd = os.open(path, os.O_RDONLY)
        try:
            while True:
                received = self._receive(until=until)
                if received is None:
                    raise AgentError(f"transfer of {name} to the agent at {self.endpoint} did not finish "
                                     f"within {limit_s:.0f} s")
                message, _ = received
                if isinstance(message, Fetch) and message.sha256 == sha256:
                    data = os.pread(fd, message.length, message.offset)
                    self._send(Chunk(sha256=sha256, offset=message.offset), data)
                    sent += len(data)
                elif isinstance(message, Have) and message.sha256 == sha256:
                    self.bytes_sent += sent
                    return sent
                elif isinstance(message, Error) and message.ref in (None, sha256):
                    raise AgentError(message.message)
        finally:
            os.close(fd)

    def run_job(self, job_id: str, cells: list[CellSpec],
                on_started: Callable[[int, int], None] = lambda index, pid: None,
                on_cell: Callable[[CellDone], None] = lambda done: None,
                indices: Optional[list[int]] = None,
                android: Optional[AndroidTarget] = None,
                governor: Optional[str] = None,
                on_cooling: Callable[[Cooling], None] = lambda message: None,
                timeout_s: Optional[float] = None) -> JobDone:
        """Run the cells on the agent, calling back as each starts and finishes.

        Each result is acknowledged after `on_cell` returns (the agent then deletes it
        from its outbox). Sending a job id the agent already holds re-attaches to it: the
        agent replays every result not yet acknowledged, so `on_cell` may see an index twice.

        A job that makes no progress for `timeout_s` (default: `job_timeout` of its cells)
        while not waiting in line behind other jobs, or whose agent reports its job thread
        stuck, is cancelled and raises JobStalled.
        """
        self._send(RunJob(job_id=job_id, cells=cells, indices=indices, android=android, governor=governor))
        timeout_s = timeout_s or job_timeout(cells, on_phone=android is not None)
        try:
            # Inside the try: an interrupt that lands before the acceptance arrives still
            # cancels the job the agent has already started.
            self._expect(JobAccepted, within_s=self.lost_after_s)
            return self._follow(job_id, on_started, on_cell, on_cooling, timeout_s)
        except JobStalled:
            self.cancel(job_id)  # a stuck cell may be killed yet; nobody waits for the rest
            raise
        except (AgentLost, AgentError):
            raise  # the job goes on without us; a reconnect re-attaches to it
        except BaseException:
            # Interrupted (Ctrl-C, SIGTERM) or failing: the agent must not go on measuring for nobody.
            self.cancel(job_id)
            raise

    def cancel(self, job_id: str, wait_s: float = CANCEL_WAIT_S) -> bool:
        """Ask the agent to stop `job_id`; True when it confirmed within `wait_s`."""
        self._send(Cancel(job_id=job_id))
        deadline = time.monotonic() + wait_s
        while (remaining := deadline - time.monotonic()) > 0:
            if not self._socket.poll(int(remaining * 1000) + 1):
                break
            try:
                message, _ = protocol.decode(self._socket.recv_multipart())
            except protocol.ProtocolError:
                continue
            # Not acknowledged: a `--resume` collects the results that arrive meanwhile.
            if isinstance(message, JobDone) and message.job_id == job_id:
                return True
            if isinstance(message, Error) and message.ref == job_id:
                return False
        return False

    def _follow(self, job_id: str, on_started: Callable[[int, int], None], on_cell: Callable[[CellDone], None],
                on_cooling: Callable[[Cooling], None], timeout_s: float) -> JobDone:
        progress = time.monotonic()
        while True:
            received = self._receive(until=progress + timeout_s, pongs=True)
            if received is None:
                raise JobStalled(f"job {job_id} made no progress for {timeout_s:.0f} s although the agent at "
                                 f"{self.endpoint} answers (--job-timeout); given up")
            message, _ = received
            if isinstance(message, Pong):
                if message.stalled:
                    raise JobStalled(f"agent at {self.endpoint}: {message.stalled}")
                if message.ahead is not None:  # waiting in line: the jobs ahead are getting on
                    progress = time.monotonic()
                continue
            if getattr(message, "job_id", None) == job_id:
                progress = time.monotonic()
            if isinstance(message, CellStarted) and message.job_id == job_id:
                on_started(message.index, message.pid)
            elif isinstance(message, Cooling) and message.job_id == job_id:
                on_cooling(message)
            elif isinstance(message, CellDone) and message.job_id == job_id:
                on_cell(message)
                self._send(Ack(job_id=job_id, cells=[message.index]))
            elif isinstance(message, JobDone) and message.job_id == job_id:
                self._send(Ack(job_id=job_id, done=True))
                return message
            elif isinstance(message, Error):
                raise AgentError(message.message)
