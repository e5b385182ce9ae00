"""Real agent processes with real keys, profiles that reach them, and a NOTIFY_SOCKET to listen on."""

from __future__ import annotations

import contextlib
import hashlib
import os
import re
import select
import signal
import socket
import subprocess
import sys
import threading
import time
from pathlib import Path
from typing import Optional

import pytest
import zmq

from agent.wire import keys as key_files
from agent.wire import protocol
from agent.wire.keys import load_public, load_secret
from agent.wire.protocol import READY_PREFIX, CellDone, CellSpec, Error, JobDone, Ping, Pong
from agent.wire.records import Cell, Settings
from controller.client import AgentClient, load_curve_keys
from controller.local_agent import read_line

ROOT = Path(__file__).resolve().parents[2]
MODELS = ROOT / "examples" / "models"
DIGITS = MODELS / "digits_cnn_int8.tflite"
START_TIMEOUT_S = 60.0
STOP_TIMEOUT_S = 20.0
REPLY_TIMEOUT_MS = 15_000
# Measuring settings that keep cells short: these tests check behaviour, not speed.
QUICK = ["--warmup-runs", "1", "--warmup-min-secs", "0", "--num-runs", "5", "--min-secs", "0"]
QUICK_SETTINGS = Settings(warmup_runs=1, warmup_min_secs=0, num_runs=5, min_secs=0)


@contextlib.contextmanager
def tiny_filesystem(path: Path, size: str):
    """A real tmpfs of `size` mounted at `path` (skips where mounting is not allowed)."""
    path.mkdir(parents=True)
    mounted = subprocess.run(["mount", "-t", "tmpfs", "-o", f"size={size}", "tmpfs", str(path)],
                             capture_output=True, check=False, timeout=30)
    if mounted.returncode != 0:
        pytest.skip(f"cannot mount a tmpfs here: {mounted.stderr.decode().strip()}")
    try:
        yield path
    finally:
        subprocess.run(["umount", "-l", str(path)], check=False, timeout=30)


def padded(directory: Path, name: str, size: int) -> tuple[Path, str]:
    """A real model file padded to `size` bytes (a valid blob to transfer); its path and sha256."""
    data = DIGITS.read_bytes()
    data += name.encode() * ((size - len(data)) // len(name)) + b"\0" * ((size - len(data)) % len(name))
    path = directory / name
    path.write_bytes(data)
    return path, hashlib.sha256(data).hexdigest()


def sha256_of(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def cell_spec(model: Path = DIGITS, **fields) -> CellSpec:
    """A quick xnnpack cell of `model` on one thread, with `fields` changed."""
    return CellSpec(**{"model_sha256": sha256_of(model), "model_name": model.name, "delegate": "xnnpack",
                       "threads": 1, "settings": QUICK_SETTINGS, **fields})


def run_job(agent: ServiceAgent, job_id: str, cells: list[CellSpec], models: tuple[Path, ...] = (DIGITS,),
            **kwargs) -> tuple[JobDone, list[Cell]]:
    """Push `models` and run `cells` as one job over a fresh connection: its end and its cells."""
    done: list[CellDone] = []
    with agent.client() as client:
        client.hello(timeout_s=30)
        for model in models:
            client.push_model(str(model), sha256_of(model), model.stat().st_size, model.name)
        end = client.run_job(job_id, cells, on_cell=done.append, **kwargs)
    return end, [result.cell for result in sorted(done, key=lambda result: result.index)]


class NotifySocket:
    """A datagram socket standing in for systemd's notify socket."""

    def __init__(self, path: str):
        self.path = path
        self.socket = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
        self.socket.bind(("\0" + path[1:]) if path.startswith("@") else path)

    def expect(self, wanted: str, timeout_s: float = 30.0) -> list[str]:
        """Datagrams received until one holds the line `wanted` (bounded by `timeout_s`)."""
        seen: list[str] = []
        deadline = time.monotonic() + timeout_s
        while True:
            remaining = deadline - time.monotonic()
            if remaining <= 0 or not select.select([self.socket], [], [], remaining)[0]:
                raise AssertionError(f"no {wanted!r} within {timeout_s} s; got {seen}")
            message = self.socket.recv(4096).decode()
            seen.append(message)
            if wanted in message.splitlines():
                return seen

    def collect(self) -> list[tuple[float, str]]:
        """Read every datagram from now on in the background: (monotonic time, text), in order."""
        received: list[tuple[float, str]] = []

        def read() -> None:
            with contextlib.suppress(OSError):
                while data := self.socket.recv(4096):
                    received.append((time.monotonic(), data.decode()))

        threading.Thread(target=read, daemon=True).start()
        return received

    def close(self) -> None:
        with contextlib.suppress(OSError):
            self.socket.shutdown(socket.SHUT_RDWR)  # ends a collecting thread's recv
        self.socket.close()


class ServiceAgent:
    """`agent serve --config agent.toml` with CURVE keys, as systemd would run it."""

    def __init__(self, base: Path, quota: Optional[int] = None, extra_config: str = "",
                 data: Optional[Path] = None):
        self.base = base
        self.keys = base / "keys"
        self.allowed = base / "controllers.d"
        self.allowed.mkdir(parents=True, exist_ok=True)
        self.public, self.secret = key_files.generate(self.keys, "agent")
        self.client_public, self.client_secret = key_files.generate(base / "controller", "controller")
        (self.allowed / "controller.key").write_bytes(self.client_public.read_bytes())
        self.data = data or base / "data"
        self.extra_config = extra_config
        self.config = base / "agent.toml"
        self.log_path = base / "agent.log"
        self.quota = quota
        self.bind = "tcp://127.0.0.1:*"
        self.process: Optional[subprocess.Popen] = None
        self._log_changed = threading.Condition()
        self.endpoint: Optional[str] = None

    def write_config(self) -> None:
        quota = f"cache_quota_bytes = {self.quota}\n" if self.quota else ""
        self.config.write_text(
            f'bind = "{self.bind}"\ndata_dir = "{self.data}"\n{quota}'
            f'secret_key = "{self.secret}"\nallowed_keys_dir = "{self.allowed}"\nlog_level = "debug"\n'
            + self.extra_config)

    def start(self, env: Optional[dict] = None, args: tuple[str, ...] = (), prefix: tuple[str, ...] = ()) -> str:
        """Start the agent (`prefix` runs it, e.g. under `prlimit`); returns its endpoint once it
        accepts connections. Restarts reuse the port."""
        self.write_config()
        self.process = subprocess.Popen(
            [*prefix, sys.executable, "-m", "agent", "serve", "--config", str(self.config), *args],
            stdout=subprocess.PIPE, stderr=subprocess.PIPE, stdin=subprocess.DEVNULL,
            env={**os.environ, "PYTHONFAULTHANDLER": "1", **(env or {})})
        threading.Thread(target=self._copy_log, args=(self.process.stderr,), daemon=True).start()
        line = read_line(self.process.stdout, START_TIMEOUT_S)
        assert line.startswith(READY_PREFIX), f"agent did not start: {line!r}\n{self.log()}"
        self.endpoint = line[len(READY_PREFIX):].strip()
        self.bind = self.endpoint
        return self.endpoint

    def _copy_log(self, stream) -> None:
        """Append the agent's log lines to the log file and wake whoever waits for one."""
        with open(self.log_path, "ab") as log:
            for line in stream:
                log.write(line)
                log.flush()
                with self._log_changed:
                    self._log_changed.notify_all()
        stream.close()

    def wait_for_log(self, pattern: str, timeout_s: float = 120.0) -> re.Match:
        """Block until a log line matches `pattern` (a regular expression)."""
        deadline = time.monotonic() + timeout_s
        with self._log_changed:
            while True:
                found = re.search(pattern, self.log(), re.MULTILINE)
                if found:
                    return found
                remaining = deadline - time.monotonic()
                assert remaining > 0, f"no log line matching {pattern!r} within {timeout_s} s:\n{self.log()}"
                self._log_changed.wait(remaining)

    def client(self, **kwargs) -> AgentClient:
        return AgentClient(self.endpoint, curve=load_curve_keys(self.public, self.client_secret), **kwargs)

    def log(self) -> str:
        return self.log_path.read_text(errors="replace") if self.log_path.exists() else ""

    def send_signal(self, sig: int) -> None:
        self.process.send_signal(sig)

    def stop(self, sig: int = signal.SIGTERM) -> int:
        """Signal the agent and wait for it to exit; returns its exit status."""
        if self.process is None:
            return 0
        if self.process.poll() is None:
            self.process.send_signal(sig)
        try:
            code = self.process.wait(STOP_TIMEOUT_S)
        finally:
            if self.process.poll() is None:
                self.process.send_signal(signal.SIGABRT)  # faulthandler writes every stack to the log
                self.process.wait()
            self.process.stdout.close()
        self.process = None
        return code

    def profile(self, directory: Path, name: str = "svc") -> Path:
        """A zmq device profile that reaches this agent with the controller's keys."""
        directory.mkdir(parents=True, exist_ok=True)
        path = directory / f"{name}.toml"
        path.write_text(
            f'name = "{name}"\ntransport = "zmq"\naddress = "{self.endpoint}"\n'
            f'server_public_key = "{self.public}"\nclient_secret_key = "{self.client_secret}"\n'
            'threads = [1]\ndelegates = ["xnnpack"]\n')
        return path


class RawController:
    """An authenticated DEALER that sends whatever frames it is given."""

    def __init__(self, agent: ServiceAgent, context: Optional[zmq.Context] = None):
        public, secret = load_secret(agent.client_secret)
        self.socket = (context or zmq.Context.instance()).socket(zmq.DEALER)
        self.socket.setsockopt(zmq.LINGER, 0)
        self.socket.setsockopt(zmq.CURVE_SERVERKEY, load_public(agent.public))
        self.socket.setsockopt(zmq.CURVE_PUBLICKEY, public)
        self.socket.setsockopt(zmq.CURVE_SECRETKEY, secret)
        self.socket.connect(agent.endpoint)
        self.seq = 0
        self.thrown = 0
        self.errors = 0

    def throw(self, frames: list[bytes]) -> None:
        """Send `frames`, then prove the agent is alive: a ping must come back."""
        self.socket.send_multipart(frames)
        self.thrown += 1
        self.seq += 1
        self.socket.send_multipart(protocol.encode(Ping(seq=self.seq)))
        while True:
            assert self.socket.poll(REPLY_TIMEOUT_MS), f"agent silent after message {self.thrown}: {frames!r:.200}"
            message, _ = protocol.decode(self.socket.recv_multipart())
            if isinstance(message, Error):
                self.errors += 1
            if isinstance(message, Pong) and message.seq == self.seq:
                return

    def receive(self, timeout_ms: int = REPLY_TIMEOUT_MS):
        assert self.socket.poll(timeout_ms), "no reply from the agent"
        return protocol.decode(self.socket.recv_multipart())[0]

    def close(self) -> None:
        self.socket.close()
