"""Raspberry Pi firmware state: throttle flags and SoC temperature.

The firmware's throttle word has bits 0-3 for what holds now and bits 16-19 for what has
happened since boot. The kernel exposes it in sysfs (`soc:firmware/get_throttled`,
printed as `%x`), readable by anyone and inside a sandbox that hides `/dev/vcio`; where
it is absent, `vcgencmd get_throttled` (which needs `/dev/vcio`, group `video`) prints
`throttled=0x50005`. Every reading names its source; when neither answers, the reading
is None with the reason, never "not throttled".
"""

from __future__ import annotations

import re
import shutil
import subprocess
from typing import NamedTuple, Optional

from agent.sysroot import SysRoot
from agent.wire.records import Throttled

# Bit -> flag name; the same four conditions are reported now (bits 0-3) and since boot (16-19).
FLAGS = {0: "under-voltage", 1: "frequency-capped", 2: "throttled", 3: "soft-temp-limit"}
SINCE_BOOT_SHIFT = 16
VCGENCMD_TIMEOUT_S = 5.0
# Where kernels put the firmware node: `soc` on Pi 1-4, `soc@ADDRESS` on newer device trees.
SYSFS_NODES = (
    "/sys/devices/platform/soc/soc:firmware/get_throttled",
    "/sys/devices/platform/soc*/soc*:firmware/get_throttled",
    "/sys/devices/platform/*firmware*/get_throttled",
    "/sys/devices/platform/*/*/*firmware*/get_throttled",
)


class Reading(NamedTuple):
    """A throttle word (None when unreadable) and, when None, why."""

    value: Optional[Throttled]
    problem: Optional[str] = None


def decode_throttled(value: int, source: Optional[str] = None) -> Throttled:
    """The named flags of a `get_throttled` value."""
    return Throttled(
        raw=hex(value),
        now=[name for bit, name in FLAGS.items() if value >> bit & 1],
        since_boot=[name for bit, name in FLAGS.items() if value >> (bit + SINCE_BOOT_SHIFT) & 1],
        source=source,
    )


def parse_get_throttled(output: str) -> Optional[int]:
    """`throttled=0x50005` -> 0x50005; None for anything else."""
    match = re.search(r"throttled=(0x[0-9a-fA-F]+|\d+)", output)
    return int(match.group(1), 0) if match else None


def parse_sysfs_word(text: str) -> Optional[int]:
    """The sysfs node's `%x` text (`50000`, or `0x50000` on some kernels) -> its value."""
    try:
        return int(text.strip(), 16)
    except ValueError:
        return None


def parse_measure_temp(output: str) -> Optional[float]:
    """`temp=48.7'C` -> 48.7; None for anything else."""
    match = re.search(r"temp=(-?\d+(?:\.\d+)?)", output)
    return float(match.group(1)) if match else None


def run_vcgencmd(*args: str) -> tuple[Optional[str], Optional[str]]:
    """(output, None) of `vcgencmd ARGS`, or (None, why it gave none)."""
    path = shutil.which("vcgencmd")
    if path is None:
        return None, "no vcgencmd on PATH"
    try:
        result = subprocess.run([path, *args], capture_output=True, text=True,
                                timeout=VCGENCMD_TIMEOUT_S, check=False)
    except (OSError, subprocess.TimeoutExpired) as exc:
        return None, f"vcgencmd failed: {exc}"
    if result.returncode != 0:
        detail = (result.stderr or result.stdout).strip().splitlines()
        return None, f"vcgencmd failed: {detail[0] if detail else f'exit status {result.returncode}'}"
    return result.stdout, None


def sysfs_node(sys_root: SysRoot) -> Optional[str]:
    """The firmware's get_throttled node below `sys_root`, if the kernel has one."""
    for pattern in SYSFS_NODES:
        found = sys_root.glob(pattern)
        if found:
            return found[0]
    return None


def read_throttled(sys_root: SysRoot) -> Reading:
    """The firmware's throttle state now: sysfs first, then vcgencmd."""
    problems = []
    node = sysfs_node(sys_root)
    if node is not None:
        text = sys_root.read(node)
        value = parse_sysfs_word(text) if text is not None else None
        if value is not None:
            return Reading(decode_throttled(value, f"sysfs:{node}"))
        problems.append(f"{node} unreadable" if text is None else f"{node} reads {text!r}")
    else:
        problems.append("no get_throttled node in sysfs")
    output, problem = run_vcgencmd("get_throttled")
    value = parse_get_throttled(output) if output else None
    if value is not None:
        return Reading(decode_throttled(value, "vcgencmd"))
    problems.append(problem or f"vcgencmd printed {output.strip()!r}")
    return Reading(None, "; ".join(problems))


def read_soc_temp_c() -> Optional[float]:
    """The SoC temperature as the firmware reports it, or None off a Pi."""
    output, _ = run_vcgencmd("measure_temp")
    return parse_measure_temp(output) if output else None


def throttled_during(start: Optional[Throttled], end: Optional[Throttled]) -> tuple[Optional[bool], list[str]]:
    """Whether throttling touched a cell: a condition active at either end, or a
    since-boot flag that appeared between start and end. Returns the flags seen;
    None when neither end could be read (unknown, not "not throttled")."""
    if start is None and end is None:
        return None, []
    flags = set()
    for state in (start, end):
        if state is not None:
            flags.update(state.now)
    if start is not None and end is not None:
        flags.update(set(end.since_boot) - set(start.since_boot))
    return bool(flags), sorted(flags)
