"""One agent per data directory: an exclusive lock held for the agent's lifetime.

Two agents on one data directory would share one model cache and outbox and measure
cells at the same time on one CPU; the second one refuses to start instead.
"""

from __future__ import annotations

import fcntl
import os
from pathlib import Path
from typing import IO

from agent.config import ConfigError

LOCK_NAME = "agent.lock"


def lock_data_dir(directory: Path) -> IO[str]:
    """Create `directory` and lock it; the returned file holds the lock until closed.

    Raises ConfigError naming the agent that holds it already.
    """
    directory.mkdir(parents=True, exist_ok=True)
    handle = open(directory / LOCK_NAME, "a+")  # noqa: SIM115 - held open for the agent's life
    try:
        fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        handle.seek(0)
        holder = handle.read().strip() or "unknown"
        handle.close()
        raise ConfigError(f"data directory {directory} is in use by another agent (pid {holder})") from None
    handle.seek(0)
    handle.truncate()
    handle.write(f"{os.getpid()}\n")
    handle.flush()
    return handle
