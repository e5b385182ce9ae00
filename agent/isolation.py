"""Run each cell in a fresh child process, so that its crash or memory is its own.

Children are forked from a multiprocessing fork server that has already imported the
runtime and the measurement engine, which keeps per-cell start-up to a fork instead of a
new interpreter and a ~100 ms runtime import, while every cell still gets a process of
its own. A child that dies by a signal, exits early or overruns its time limit becomes a
failed cell with one clear line; the snapshots it reported before are kept.
"""

from __future__ import annotations

import contextlib
import multiprocessing
import os
import signal
import threading
import time
from multiprocessing.connection import Connection
from typing import Callable, Optional, Union

import msgspec

from agent.facts import SysRoot
from agent.runtime import Runtime
from agent.wire.protocol import CellSpec, Evaluation, cell_time_limit
from agent.wire.records import Cell

# How often a capped cell's resident memory is read while it runs.
MEMORY_POLL_S = 0.25
# The most a cell's own process asks the kernel to be chosen first when memory runs out.
_OOM_SCORE_ADJ_MAX = "1000"
_PAGE_BYTES = os.sysconf("SC_PAGE_SIZE") if hasattr(os, "sysconf") else 4096

class _Snapshot(msgspec.Struct, tag="snapshot"):
    cell: Cell


class _Finished(msgspec.Struct, tag="finished"):
    cell: Cell
    evaluation: Optional[Evaluation]


_encoder = msgspec.msgpack.Encoder()
_decoder = msgspec.msgpack.Decoder(Union[_Snapshot, _Finished])


def _child(conn: Connection, model_path: str, spec_bytes: bytes, runtime: Runtime,
           cell_bytes: bytes, root: str, dataset_path: Optional[str]) -> None:
    from agent.measure import measure

    # When memory runs out, the kernel kills this cell rather than the agent or the system
    # (raising one's own score needs no privilege).
    with contextlib.suppress(OSError), open("/proc/self/oom_score_adj", "w") as f:
        f.write(_OOM_SCORE_ADJ_MAX)

    spec = msgspec.msgpack.decode(spec_bytes, type=CellSpec)
    cell = msgspec.msgpack.decode(cell_bytes, type=Cell)
    result, evaluation = measure(
        model_path, spec, runtime, cell, SysRoot(root),
        report=lambda snapshot: conn.send_bytes(_encoder.encode(_Snapshot(cell=snapshot))),
        dataset_path=dataset_path)
    conn.send_bytes(_encoder.encode(_Finished(cell=result, evaluation=evaluation)))


def resident_mb(pid: int) -> Optional[float]:
    """Resident memory of process `pid` in MB (None once it is gone or where /proc is missing)."""
    try:
        with open(f"/proc/{pid}/statm", "rb") as f:
            return int(f.read().split()[1]) * _PAGE_BYTES / 1e6
    except (OSError, IndexError, ValueError):
        return None


class CellRunner:
    """Runs cells in child processes forked from a pre-started worker.

    With `memory_limit_mb`, a cell's resident memory is read every `MEMORY_POLL_S` while it
    runs, and a cell above the limit is killed and fails with "memory limit" in its error.
    """

    def __init__(self, runtime: Runtime, root: str = "/", memory_limit_mb: Optional[float] = None):
        self.runtime = runtime
        self.root = root
        self.memory_limit_mb = memory_limit_mb
        self._ctx = multiprocessing.get_context("forkserver")
        # numpy imports numpy.ma and numpy.random lazily: preloaded, no cell pays for them.
        self._ctx.set_forkserver_preload(["agent.measure", runtime.module, "numpy.ma", "numpy.random"])
        self._process: Optional[multiprocessing.process.BaseProcess] = None

    def kill_running(self) -> None:
        """Kill the running cell's process (from any thread; set `run`'s cancel event first)."""
        process = self._process
        if process is not None and process.pid is not None:
            with contextlib.suppress(ProcessLookupError):
                os.kill(process.pid, signal.SIGKILL)

    def run(self, model_path: str, spec: CellSpec, cell: Cell,
            on_start: Callable[[int], None] = lambda pid: None,
            timeout_s: Optional[float] = None,
            dataset_path: Optional[str] = None,
            cancel: Optional[threading.Event] = None,
            cancelled_error: str = "cancelled") -> tuple[Cell, Optional[Evaluation]]:
        """Measure `cell` in a child process; never raises for what the child does.

        When `cancel` is set (before the child starts, or then with `kill_running`), the
        child is killed and the cell fails with `cancelled_error`.
        """
        if timeout_s is None:
            timeout_s = cell_time_limit(spec)
        parent, child = self._ctx.Pipe(duplex=False)
        process = self._ctx.Process(
            target=_child,
            args=(child, model_path, msgspec.msgpack.encode(spec), self.runtime,
                  msgspec.msgpack.encode(cell), self.root, dataset_path),
            daemon=True,
        )
        process.start()
        self._process = process
        child.close()
        if cancel is not None and cancel.is_set():
            self.kill_running()
        on_start(process.pid)
        latest, evaluation, finished, timed_out, over = cell, None, False, False, None
        deadline = time.monotonic() + timeout_s
        try:
            while not finished:
                remaining = deadline - time.monotonic()
                if remaining <= 0:
                    timed_out = True
                    break
                ready = parent.poll(min(remaining, MEMORY_POLL_S) if self.memory_limit_mb else remaining)
                over = self._over_limit(process.pid)
                if over is not None:
                    break
                if not ready:
                    continue
                try:
                    data = parent.recv_bytes()
                except EOFError:
                    break
                message = _decoder.decode(data)
                latest = message.cell
                if isinstance(message, _Finished):
                    evaluation, finished = message.evaluation, True
        finally:
            if not finished:
                process.kill()
            process.join()
            self._process = None
            parent.close()
        if finished:
            return latest, evaluation
        error = (cancelled_error if cancel is not None and cancel.is_set()
                 else f"memory limit: the cell's process reached {over:.0f} MB resident, over "
                      f"cell_memory_limit_mb = {self.memory_limit_mb:.0f} (agent.toml); killed" if over is not None
                 else f"cell timed out after {timeout_s:.0f} s" if timed_out
                 else _death_message(process.exitcode))
        return msgspec.structs.replace(latest, status="failed", error=error), None

    def _over_limit(self, pid: Optional[int]) -> Optional[float]:
        """The cell's resident MB when it is above the memory limit, else None."""
        if not self.memory_limit_mb or pid is None:
            return None
        resident = resident_mb(pid)
        return resident if resident is not None and resident > self.memory_limit_mb else None


def _death_message(exitcode: Optional[int]) -> str:
    if exitcode == -signal.SIGKILL:
        return "cell process killed (SIGKILL), possibly out of memory"
    if exitcode is not None and exitcode < 0:
        name = signal.Signals(-exitcode).name
        return f"cell process crashed with {name}"
    return f"cell process exited with status {exitcode} before reporting a result"
