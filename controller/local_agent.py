"""An agent process on this machine for `--device local`, started and stopped by us."""

from __future__ import annotations

import contextlib
import select
import subprocess
import sys
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Optional

from agent.wire.protocol import READY_PREFIX

START_TIMEOUT_S = 60.0
STOP_TIMEOUT_S = 15.0
# How long a new local agent waits for an earlier one to release the data directory: one
# whose controller died stops by itself, or is stopped by the new one (agent/datadir.py).
LOCK_WAIT_S = 30.0


def read_line(stream, timeout_s: float) -> str:
    """One line from a pipe, or what arrived before `timeout_s`."""
    deadline = time.monotonic() + timeout_s
    buffer = b""
    while not buffer.endswith(b"\n"):
        remaining = deadline - time.monotonic()
        if remaining <= 0 or not select.select([stream], [], [], remaining)[0]:
            break
        byte = stream.read1(1)
        if not byte:
            break
        buffer += byte
    return buffer.decode("utf-8", "replace")


class LocalAgentError(RuntimeError):
    """The local agent could not be started."""


class LocalAgent:
    """`agent serve` on a free loopback port; its log goes to `data_dir/agent.log`.

    The agent's standard input is a pipe only this process holds: when this process dies,
    however it dies, the agent sees the pipe close and stops, and leaves its data directory
    to the next one.
    """

    def __init__(self, data_dir: Path, extra_args: Sequence[str] = ()):
        self.data_dir = Path(data_dir)
        self.extra_args = list(extra_args)
        self.log_path = self.data_dir / "agent.log"
        self.process: Optional[subprocess.Popen] = None
        self.endpoint: Optional[str] = None

    def start(self) -> str:
        """Start the agent and return its endpoint once it accepts connections."""
        self.data_dir.mkdir(parents=True, exist_ok=True)
        with open(self.log_path, "ab") as log:
            self.process = subprocess.Popen(
                [sys.executable, "-m", "agent", "serve", "--bind", "tcp://127.0.0.1:*",
                 "--insecure", "--data-dir", str(self.data_dir), "--stop-on-stdin-close",
                 "--lock-wait", str(LOCK_WAIT_S), *self.extra_args],
                stdout=subprocess.PIPE, stderr=log, stdin=subprocess.PIPE,
            )
        line = read_line(self.process.stdout, START_TIMEOUT_S + LOCK_WAIT_S)
        if not line.startswith(READY_PREFIX):
            self.stop()
            raise LocalAgentError(f"local agent did not start ({line.strip() or self._last_log_line()}); "
                                  f"see {self.log_path}")
        self.endpoint = line[len(READY_PREFIX):].strip()
        return self.endpoint

    def _last_log_line(self) -> str:
        """What the agent said last (e.g. that another run's agent holds the data directory)."""
        try:
            lines = self.log_path.read_text(errors="replace").strip().splitlines()
        except OSError:
            lines = []
        return lines[-1].removeprefix("agent: ") if lines else "no output"

    def stop(self) -> None:
        """Ask the agent to finish (SIGTERM), then kill it if it does not."""
        if self.process is None:
            return
        if self.process.poll() is None:
            self.process.terminate()
            try:
                self.process.wait(STOP_TIMEOUT_S)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()
        for stream in (self.process.stdout, self.process.stdin):
            with contextlib.suppress(OSError):
                stream.close()

    def __enter__(self) -> LocalAgent:
        self.start()
        return self

    def __exit__(self, *exc) -> None:
        self.stop()
