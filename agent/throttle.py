"""Raspberry Pi firmware state through `vcgencmd`: throttle flags and SoC temperature.

`vcgencmd get_throttled` prints `throttled=0x50005`: bits 0-3 say what holds now,
bits 16-19 what has happened since boot. Parsing is pure; running `vcgencmd` (found on
PATH, absent on anything but a Pi) is the one side effect.
"""

from __future__ import annotations

import re
import shutil
import subprocess
from typing import Optional

from agent.wire.records import Throttled

# Bit -> flag name; the same four conditions are reported now (bits 0-3) and since boot (16-19).
FLAGS = {0: "under-voltage", 1: "frequency-capped", 2: "throttled", 3: "soft-temp-limit"}
SINCE_BOOT_SHIFT = 16
VCGENCMD_TIMEOUT_S = 5.0


def decode_throttled(value: int) -> Throttled:
    """The named flags of a `get_throttled` value."""
    return Throttled(
        raw=hex(value),
        now=[name for bit, name in FLAGS.items() if value >> bit & 1],
        since_boot=[name for bit, name in FLAGS.items() if value >> (bit + SINCE_BOOT_SHIFT) & 1],
    )


def parse_get_throttled(output: str) -> Optional[int]:
    """`throttled=0x50005` -> 0x50005; None for anything else."""
    match = re.search(r"throttled=(0x[0-9a-fA-F]+|\d+)", output)
    return int(match.group(1), 0) if match else None


def parse_measure_temp(output: str) -> Optional[float]:
    """`temp=48.7'C` -> 48.7; None for anything else."""
    match = re.search(r"temp=(-?\d+(?:\.\d+)?)", output)
    return float(match.group(1)) if match else None


def vcgencmd(*args: str) -> Optional[str]:
    """Output of `vcgencmd ARGS`, or None where there is no working vcgencmd."""
    path = shutil.which("vcgencmd")
    if path is None:
        return None
    try:
        result = subprocess.run([path, *args], capture_output=True, text=True,
                                timeout=VCGENCMD_TIMEOUT_S, check=False)
    except (OSError, subprocess.TimeoutExpired):
        return None
    return result.stdout if result.returncode == 0 else None


def read_throttled() -> Optional[Throttled]:
    """The firmware's throttle state now, or None off a Pi."""
    output = vcgencmd("get_throttled")
    value = parse_get_throttled(output) if output else None
    return decode_throttled(value) if value is not None else None


def read_soc_temp_c() -> Optional[float]:
    """The SoC temperature as the firmware reports it, or None off a Pi."""
    output = vcgencmd("measure_temp")
    return parse_measure_temp(output) if output else None


def throttled_during(start: Optional[Throttled], end: Optional[Throttled]) -> tuple[bool, list[str]]:
    """Whether throttling touched a cell: a condition active at either end, or a
    since-boot flag that appeared between start and end. Returns the flags seen."""
    if start is None and end is None:
        return False, []
    flags = set()
    for state in (start, end):
        if state is not None:
            flags.update(state.now)
    if start is not None and end is not None:
        flags.update(set(end.since_boot) - set(start.since_boot))
    return bool(flags), sorted(flags)
