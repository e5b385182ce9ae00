"""The `benchmark_model` command line for a cell, and what its exit status means (pure)."""

from __future__ import annotations

import shlex
from typing import Optional

from agent.wire.delegates import BENCHMARK_MODEL_DELEGATES, DELEGATES
from agent.wire.protocol import CellSpec

# Seconds `timeout` waits after SIGTERM before SIGKILL.
KILL_AFTER_S = 5


class UnsupportedCell(ValueError):
    """A cell benchmark_model cannot run as asked."""


def _number(value: float) -> str:
    return f"{value:g}"


def benchmark_flags(spec: CellSpec, model_path: str) -> list[str]:
    """benchmark_model flags for the cell: graph, threads, delegate, run control, op profiling."""
    flags = DELEGATES[spec.delegate].benchmark_flags if spec.delegate in DELEGATES else None
    if not flags:
        raise UnsupportedCell(f"delegate {spec.delegate!r} cannot be run with benchmark_model "
                              f"({', '.join(BENCHMARK_MODEL_DELEGATES)})")
    s = spec.settings
    return [
        f"--graph={model_path}", f"--num_threads={spec.threads}", *flags,
        f"--warmup_runs={s.warmup_runs}", f"--warmup_min_secs={_number(s.warmup_min_secs)}",
        f"--num_runs={s.num_runs}", f"--min_secs={_number(s.min_secs)}",
        f"--max_secs={_number(s.max_secs)}", f"--run_delay={_number(s.run_delay)}",
        # The tool profiles every timed run when asked; its tables become the cell's op_profile.
        *(["--enable_op_profiling=true"] if spec.op_profile else []),
    ]


def device_command(binary: str, flags: list[str], timeout_s: int, taskset: Optional[str]) -> str:
    """The shell command: under `taskset` when asked, killed on the phone after `timeout_s`."""
    words = ["timeout", "-k", str(KILL_AFTER_S), str(timeout_s), binary, *flags]
    if taskset:
        words = ["taskset", taskset, *words]
    return " ".join(shlex.quote(w) for w in words) + " 2>&1"


def exit_status_error(code: Optional[int], output: str, timeout_s: int) -> Optional[str]:
    """One line for an exit status that says more than the log, or None."""
    last = next((line.strip() for line in reversed(output.splitlines()) if line.strip()), "")
    if code is None:
        return "the phone did not report an exit status (connection cut?)"
    if code == 124:
        return f"benchmark_model timed out after {timeout_s} s on the phone"
    if code == 126:
        if "format" in last.lower() or "ELF" in last or "elf" in last:
            return f"benchmark binary is for another ABI: {last}"
        return f"benchmark binary is not executable on the phone: {last}"
    if code == 127:
        return f"benchmark binary not found on the phone: {last}"
    if code > 128:
        names = {4: "SIGILL", 6: "SIGABRT", 7: "SIGBUS", 9: "SIGKILL, possibly out of memory", 11: "SIGSEGV"}
        return f"benchmark_model died with {names.get(code - 128, f'signal {code - 128}')}"
    return None
