"""Resident memory of the current process, from /proc/self/status where there is one."""

from __future__ import annotations

import resource
import sys

_STATUS = "/proc/self/status"
_MB = 1e6


def _status_kb(field: str):
    try:
        with open(_STATUS) as f:
            for line in f:
                if line.startswith(field):
                    return int(line.split()[1])
    except OSError:
        pass
    return None


def rss_mb() -> float:
    """Current resident set size in MB."""
    kb = _status_kb("VmRSS:")
    if kb is None:
        import psutil  # only where /proc is missing (macOS development hosts)

        return psutil.Process().memory_info().rss / _MB
    return kb * 1024 / _MB


def peak_rss_mb() -> float:
    """Highest resident set size since the process started or since `reset_peak`."""
    kb = _status_kb("VmHWM:")
    if kb is None:
        maxrss = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
        # ru_maxrss is in bytes on macOS and in kilobytes on Linux.
        return maxrss / _MB if sys.platform == "darwin" else maxrss * 1024 / _MB
    return kb * 1024 / _MB


def reset_peak() -> bool:
    """Restart the peak from the current RSS (Linux 4.0+); False where unsupported."""
    try:
        with open("/proc/self/clear_refs", "w") as f:
            f.write("5")
        return True
    except OSError:
        return False
