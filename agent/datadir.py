"""One agent per data directory: an exclusive lock held for the agent's lifetime.

Two agents on one data directory would share one model cache and outbox and measure
cells at the same time on one CPU; the second one refuses to start instead.

An agent a controller started for itself (`--device local`) writes that controller into
the lock. Such an agent stops when its controller dies; should it live on regardless
(stuck, or from an older release), the next agent that wants the directory takes it over:
it stops the orphan, whose controller is provably gone, and waits for the lock.
"""

from __future__ import annotations

import contextlib
import fcntl
import logging
import os
import signal
import time
from pathlib import Path
from typing import IO, Optional

from agent.config import ConfigError

log = logging.getLogger("edgebench.agent")

LOCK_NAME = "agent.lock"
# How often a waiting agent tries the lock again (flock has no timeout of its own).
RETRY_S = 0.2


def lock_data_dir(directory: Path, wait_s: float = 0.0, lifeline: bool = False) -> IO[str]:
    """Create `directory` and lock it; the returned file holds the lock until closed.

    `wait_s` is how long to wait for another agent to let go, and to take the directory
    over from an orphan. `lifeline`: this agent belongs to the controller that started it
    (its parent process), which the lock then names. Raises ConfigError naming the agent
    that holds the lock when it cannot be had.
    """
    directory.mkdir(parents=True, exist_ok=True)
    handle = open(directory / LOCK_NAME, "a+")  # noqa: SIM115 - held open for the agent's life
    deadline = time.monotonic() + wait_s
    signalled: Optional[int] = None
    while True:
        try:
            fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
            break
        except BlockingIOError:
            handle.seek(0)
            holder = handle.read().split()
        remaining = deadline - time.monotonic()
        if remaining <= 0:
            handle.close()
            raise ConfigError(f"data directory {directory} is in use by another agent "
                              f"(pid {holder[0] if holder else 'unknown'})") from None
        signalled = _stop_orphan(holder, signalled, remaining <= wait_s / 2)
        time.sleep(min(RETRY_S, remaining))
    handle.seek(0)
    handle.truncate()
    parent = os.getppid()
    handle.write(f"{os.getpid()}" + (f" controller {parent} {_start_time(parent)}" if lifeline else "") + "\n")
    handle.flush()
    return handle


def _stop_orphan(holder: list[str], signalled: Optional[int], late: bool) -> Optional[int]:
    """Ask a holder whose controller died to stop (SIGTERM, then SIGKILL when `late`);
    returns the signal sent so far."""
    if len(holder) != 4 or holder[1] != "controller" or not all(word.isdigit() for word in holder[::2]):
        return signalled  # a service's agent, or an unreadable lock: never stopped by another
    pid, parent, started = int(holder[0]), int(holder[2]), holder[3]
    if _start_time(parent) == started:
        return signalled  # its controller is alive: a run is going on
    sig = signal.SIGKILL if late else signal.SIGTERM
    if signalled == sig or signalled == signal.SIGKILL:
        return signalled
    log.warning("data directory held by agent %d, whose controller (pid %d) is gone: stopping it (%s)",
                pid, parent, sig.name)
    with contextlib.suppress(ProcessLookupError, PermissionError):
        os.kill(pid, sig)
    return sig


def _start_time(pid: int) -> str:
    """When process `pid` started (clock ticks since boot), "gone" when there is none: a pid
    reused by another process does not pass for the one that held it."""
    try:
        with open(f"/proc/{pid}/stat", "rb") as f:
            return f.read().rsplit(b")", 1)[1].split()[19].decode()
    except (OSError, IndexError):
        return "gone"
