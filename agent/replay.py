"""Replays of unacknowledged results to a controller that re-attached to its job.

A replay is paced: at most `WINDOW` results are in flight (sent, not yet acknowledged),
and a job is replayed from its start at most once per `INTERVAL_S`, so a re-attach can
no longer make the agent read and send a whole outbox per message (it was a 2,000x
amplifier, and libzmq aborts when a peer hangs up on a large backlog). Re-attaches that
arrive sooner are folded into one replay when the interval has passed.
"""

from __future__ import annotations

import time
from collections import deque
from dataclasses import dataclass, field
from typing import Callable, Optional

from agent.outbox import Outbox, Result

WINDOW = 64
INTERVAL_S = 2.0

Send = Callable[[bytes, Result], None]


@dataclass
class _Replay:
    client: bytes
    todo: deque = field(default_factory=deque)
    in_flight: int = 0


class Replays:
    """Paced replays of every re-attached job."""

    def __init__(self, outbox: Outbox, send: Send):
        self.outbox = outbox
        self.send = send
        self._active: dict[str, _Replay] = {}
        self._started: dict[str, float] = {}
        self._due: dict[str, bytes] = {}
        # job -> (client, outbox file names its latest replay covers)
        self._covered: dict[str, tuple[bytes, set[str]]] = {}

    def request(self, job_id: str, client: bytes, now: Optional[float] = None) -> None:
        """`client` re-attached to `job_id`: replay now, or once the interval has passed."""
        now = time.monotonic() if now is None else now
        if now - self._started.get(job_id, -INTERVAL_S) >= INTERVAL_S:
            self._start(job_id, client, now)
        else:
            self._due[job_id] = client

    def _start(self, job_id: str, client: bytes, now: float) -> None:
        self._due.pop(job_id, None)
        self._started[job_id] = now
        names = self.outbox.pending_names(job_id)
        self._covered[job_id] = (client, set(names))
        self._active[job_id] = _Replay(client, deque(names))
        self._pump(job_id)

    def covers(self, job_id: str, client: bytes, name: str) -> bool:
        """True when the latest replay of `job_id` to `client` includes the result named `name`
        (a result written before the replay began must not be sent twice)."""
        covered = self._covered.get(job_id)
        return covered is not None and covered[0] == client and name in covered[1]

    def acked(self, job_id: str, count: int) -> None:
        """The controller acknowledged `count` results of `job_id`: send more."""
        replay = self._active.get(job_id)
        if replay is not None:
            replay.in_flight = max(0, replay.in_flight - count)
            self._pump(job_id)

    def forget(self, job_id: str) -> None:
        """The job is gone (acknowledged as done)."""
        self._active.pop(job_id, None)
        self._due.pop(job_id, None)
        self._started.pop(job_id, None)
        self._covered.pop(job_id, None)

    def _pump(self, job_id: str) -> None:
        replay = self._active[job_id]
        while replay.todo and replay.in_flight < WINDOW:
            result = self.outbox.read(job_id, replay.todo.popleft())
            if result is not None:
                self.send(replay.client, result)
                replay.in_flight += 1
        if not replay.todo:
            del self._active[job_id]

    def run_due(self, now: Optional[float] = None) -> None:
        """Start the replays whose interval has passed."""
        now = time.monotonic() if now is None else now
        for job_id, client in list(self._due.items()):
            if now - self._started.get(job_id, -INTERVAL_S) >= INTERVAL_S:
                self._start(job_id, client, now)
        # Start times older than the interval mean nothing any more.
        for job_id, started in list(self._started.items()):
            if now - started > INTERVAL_S and job_id not in self._active and job_id not in self._due:
                del self._started[job_id]

    def next_deadline(self) -> Optional[float]:
        """When the earliest deferred replay is due, or None."""
        return min((self._started.get(job_id, 0.0) + INTERVAL_S for job_id in self._due), default=None)
