"""What the job thread is doing, and whether it is still getting anywhere.

Every phase of the job thread (a cooldown wait, a cell, a phone's facts) has a time limit
it cannot legitimately exceed: a cell is killed at its own limit, a cooldown gives up at
its maximum. A phase still running `MARGIN_S` past its limit means the thread is stuck
(a hung file system, a driver that never answers): the server then stops feeding the
systemd watchdog, so the service manager restarts the agent, and says why to anyone who
pings it.
"""

from __future__ import annotations

import contextlib
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Optional

# Slack beyond a phase's own limit: killing a cell, starting the cell's fork server (slow
# under emulation), re-hashing a changed model.
MARGIN_S = 60.0


@dataclass(frozen=True)
class _Phase:
    what: str
    since: float
    limit_s: float


class Progress:
    """The job thread's current phase; read from any thread."""

    def __init__(self, thread: threading.Thread):
        self._thread = thread
        self._phase: Optional[_Phase] = None
        self.stopping = False

    @contextlib.contextmanager
    def phase(self, what: str, limit_s: float) -> Iterator[None]:
        """Mark the job thread as doing `what`, which should take at most `limit_s` seconds."""
        self._phase = _Phase(what, time.monotonic(), limit_s)
        try:
            yield
        finally:
            self._phase = None

    def stalled(self, now: Optional[float] = None) -> Optional[str]:
        """One line when the job thread is dead or stuck past its phase's limit, else None."""
        if not self._thread.is_alive():
            return None if self.stopping else "the agent's job thread has stopped"
        phase = self._phase
        if phase is None:
            return None
        if (time.monotonic() if now is None else now) - phase.since <= phase.limit_s + MARGIN_S:
            return None
        # The same words for as long as the phase lasts: it is reported once.
        return (f"the agent's job thread is stuck: {phase.what} has run past its limit of "
                f"{phase.limit_s + MARGIN_S:.0f} s")
