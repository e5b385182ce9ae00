"""Measuring only in a known device state: cooldown before cells, the CPU governor.

Both act through `SysRoot`, so a captured device tree (which a test may rewrite) stands
in for the real /sys.
"""

from __future__ import annotations

import logging
import threading
import time
from typing import Callable, Optional

from agent.facts import SysRoot, cpufreq_dirs, read_temp_c

log = logging.getLogger("edgebench.agent")

POLL_S = 1.0

Tick = Callable[[Optional[float], float], None]


def cool_down(sys_root: SysRoot, below_c: float, max_s: float, stop: threading.Event,
              tick: Tick = lambda temp, remaining: None) -> tuple[float, Optional[bool]]:
    """Wait until the temperature is below `below_c`, at most `max_s` seconds.

    Reads the temperature once a second (no busy wait) and calls `tick(temp, remaining)`
    before each pause. Returns the seconds waited and whether the device cooled (None
    when it has no temperature to read).
    """
    start = time.monotonic()
    while True:
        waited = time.monotonic() - start
        temp = read_temp_c(sys_root)
        if temp is None:
            return waited, None
        if temp < below_c:
            return waited, True
        remaining = max_s - waited
        if remaining <= 0:
            return waited, False
        tick(temp, remaining)
        if stop.wait(min(POLL_S, remaining)):
            return time.monotonic() - start, False


class Governor:
    """Sets every cpufreq policy's governor for a while, then restores what was there."""

    def __init__(self, sys_root: SysRoot, governor: str):
        self.sys_root, self.governor = sys_root, governor
        self._saved: dict[str, str] = {}
        self.problems: list[str] = []

    def __enter__(self) -> Governor:
        for policy in cpufreq_dirs(self.sys_root):
            path = policy + "/scaling_governor"
            current = self.sys_root.read(path)
            if current is None or current == self.governor:
                continue
            if self._write(path, self.governor):
                self._saved[path] = current
        return self

    def __exit__(self, *exc) -> None:
        for path, governor in self._saved.items():
            self._write(path, governor)
        self._saved.clear()

    def _write(self, path: str, governor: str) -> bool:
        try:
            with open(self.sys_root.path(path), "w") as handle:
                handle.write(governor)
            return True
        except OSError as exc:
            self.problems.append(f"cannot set {path} to {governor}: {exc.strerror}")
            log.warning("governor: cannot set %s to %s: %s", path, governor, exc.strerror)
            return False
