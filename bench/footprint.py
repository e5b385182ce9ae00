"""Agent footprint: memory, CPU and wake-ups of an idle agent, and its own CPU while a cell runs.

Yardstick: `reference_server.py`, a minimal Python ZeroMQ daemon with the agent's libzmq
heartbeat that only answers pings, measured over the same windows. Three windows:

1. idle, nobody connected;
2. idle, one controller connected that only pings (every `HEARTBEAT_S`, as a waiting
   controller does), the same pings sent to the reference server;
3. a long cell (MobileNet, XNNPACK, 1 thread, `min_secs` 5) running in the agent's child
   process: the agent's own CPU, not its children's.

CPU is the process's user + system time (all threads, not children; read in 10 ms
ticks), compared with the window's wall time (one core). Context switches are the
voluntary + involuntary ones of all the process's threads (/proc/PID/task/*/status).
A wake-up is a 100 ms slot in which any thread of the process ran at all.

The agent's timers (agent/server.py): with nobody connected its loop sleeps in `poll`
without a timeout; a connection adds libzmq's heartbeat (`ZMQ_HEARTBEAT_MS`) and a check
for clients idle for `CLIENT_IDLE_S`. So a wake-up is allowed per ping received and per
heartbeat interval, and none otherwise.
"""

from __future__ import annotations

import math
import sys
import threading
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Optional

import psutil
import zmq
from common import (
    MOBILENET,
    Figure,
    cell_spec,
    process_cpu_seconds,
    push,
    run_cells,
    scratch,
    serving,
    source,
)

from agent.server import ZMQ_HEARTBEAT_MS
from agent.wire import protocol
from agent.wire.protocol import Ping
from agent.wire.records import Settings
from controller.client import HEARTBEAT_S, AgentClient
from controller.local_agent import START_TIMEOUT_S, LocalAgent

NAME = "footprint"
RSS_TARGET_MB = 60.0
CPU_TARGET = 0.005  # of one core
CELL_SECONDS = 5.0
SLOT_S = 0.1
SETTLE_S = 1.0


@dataclass
class Usage:
    """What one process used during one window."""

    seconds: float
    cpu_s: float
    switches: int
    wakeups: int
    rss_mb: float


def context_switches(pid: int) -> int:
    """Voluntary + involuntary context switches of all the process's threads so far."""
    total = 0
    for status in Path(f"/proc/{pid}/task").glob("*/status"):
        try:
            lines = status.read_text().splitlines()
        except (FileNotFoundError, ProcessLookupError):  # a thread that just ended
            continue
        total += sum(int(line.split()[1]) for line in lines
                     if line.startswith(("voluntary_ctxt_switches", "nonvoluntary_ctxt_switches")))
    return total


class Window:
    """Usage of several processes over the same stretch of time, sampled every SLOT_S."""

    def __init__(self, processes: dict[str, psutil.Process]):
        self.processes = processes
        self.start = time.monotonic()
        self.cpu = {name: process_cpu_seconds(p) for name, p in processes.items()}
        self.first = {name: context_switches(p.pid) for name, p in processes.items()}
        self.last = dict(self.first)
        self.wakeups = dict.fromkeys(processes, 0)
        self.rss = {name: p.memory_info().rss for name, p in processes.items()}

    def sample(self) -> None:
        """Count a wake-up for each process that ran since the last sample; track peak RSS."""
        for name, p in self.processes.items():
            switches = context_switches(p.pid)
            self.wakeups[name] += switches != self.last[name]
            self.last[name] = switches
            self.rss[name] = max(self.rss[name], p.memory_info().rss)

    def close(self) -> dict[str, Usage]:
        self.sample()
        seconds = time.monotonic() - self.start
        return {name: Usage(seconds=seconds, cpu_s=process_cpu_seconds(p) - self.cpu[name],
                            switches=self.last[name] - self.first[name], wakeups=self.wakeups[name],
                            rss_mb=self.rss[name] / 1e6)
                for name, p in self.processes.items()}


class Pinger:
    """A controller that only pings: one DEALER per endpoint, a Ping every HEARTBEAT_S, Pongs read."""

    def __init__(self, endpoints: list[str]):
        self.endpoints = endpoints
        self.sent = 0
        self._connected, self._stop = threading.Event(), threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def __enter__(self) -> Pinger:
        self._thread.start()
        if not self._connected.wait(START_TIMEOUT_S):
            self.__exit__()
            raise RuntimeError(f"no answer to a ping from {', '.join(self.endpoints)}")
        return self

    def __exit__(self, *exc) -> None:
        self._stop.set()
        self._thread.join()

    def _run(self) -> None:
        sockets = []
        for endpoint in self.endpoints:
            dealer = zmq.Context.instance().socket(zmq.DEALER)
            dealer.setsockopt(zmq.LINGER, 0)
            dealer.connect(endpoint)
            sockets.append(dealer)
        try:
            while True:
                self.sent += 1
                for dealer in sockets:
                    dealer.send_multipart(protocol.encode(Ping(seq=self.sent)))
                answered = [dealer.poll(int(START_TIMEOUT_S * 1000)) for dealer in sockets]
                for dealer, ready in zip(sockets, answered):
                    if ready:
                        dealer.recv_multipart()
                if all(answered):
                    self._connected.set()
                if self._stop.wait(HEARTBEAT_S):
                    return
        finally:
            for dealer in sockets:
                dealer.close()


def idle_window(processes: dict[str, psutil.Process], seconds: float,
                pinger: Optional[Pinger] = None) -> tuple[dict[str, Usage], int]:
    """Usage over `seconds` after a short settling time, and the pings sent meanwhile."""
    time.sleep(SETTLE_S)  # connecting (or disconnecting) is not idling
    window, pings_before = Window(processes), pinger.sent if pinger else 0
    deadline = time.monotonic() + seconds
    while (remaining := deadline - time.monotonic()) > 0:
        time.sleep(min(SLOT_S, remaining))
        window.sample()
    return window.close(), (pinger.sent - pings_before) if pinger else 0


def run(quick: bool) -> list[Figure]:
    """Idle (alone, then pinged) against the reference server, then the agent's CPU during a cell."""
    seconds = 10.0 if quick else 60.0
    model = source(MOBILENET)
    windows: dict[str, tuple[dict[str, Usage], int]] = {}
    with scratch(NAME) as tmp, LocalAgent(tmp / "agent") as agent:
        with AgentClient(agent.endpoint) as client:  # idle means nobody connected: hello and push first
            client.hello()
            push(client, model)
        agent_process = psutil.Process(agent.process.pid)
        reference = [sys.executable, str(Path(__file__).with_name("reference_server.py")), str(ZMQ_HEARTBEAT_MS),
                     str(2 * (seconds + SETTLE_S) + START_TIMEOUT_S)]
        with serving(reference, tmp / "reference.log") as (server, endpoint):
            processes = {"agent": agent_process, "reference": psutil.Process(server.pid)}
            windows["nobody connected"] = idle_window(processes, seconds)
            with Pinger([agent.endpoint, endpoint]) as controller:
                windows["one controller pinging"] = idle_window(processes, seconds, controller)
        with AgentClient(agent.endpoint) as client:
            client.hello()
            settings = Settings(warmup_runs=1, warmup_min_secs=0.5, num_runs=1, min_secs=CELL_SECONDS,
                                max_secs=CELL_SECONDS * 2)
            window = Window({"agent": agent_process})
            (_, cell), = run_cells(client, [cell_spec(model, "xnnpack", 1, settings)])
            during = window.close()["agent"]
        print(f"  agent: {agent_process.num_threads()} threads; the cell timed {cell.latency_us.count} invokes",
              flush=True)
    figures = []
    for label, (usage, pings) in windows.items():
        ours, ref = usage["agent"], usage["reference"]
        # Heartbeats run only on a connection; a window may catch one more than it spans whole.
        events = pings + (math.ceil(ours.seconds * 1000 / ZMQ_HEARTBEAT_MS) if pings else 0)
        figures += [
            Figure(NAME, f"idle, {label}: RSS", ours.rss_mb, "MB", "reference server RSS", ref.rss_mb,
                   f"<= {RSS_TARGET_MB:g} MB", ours.rss_mb <= RSS_TARGET_MB),
            Figure(NAME, f"idle, {label}: CPU over {seconds:g} s", ours.cpu_s * 1e3, "ms", "one core",
                   ours.seconds * 1e3, f"ratio <= {CPU_TARGET:g}", ours.cpu_s / ours.seconds <= CPU_TARGET),
            Figure(NAME, f"idle, {label}: wake-ups in {seconds:g} s", ours.wakeups, "",
                   "pings + heartbeat intervals", events, f"<= {events} (one per timer event)",
                   ours.wakeups <= events),
            Figure(NAME, f"idle, {label}: context switches per second", ours.switches / ours.seconds, "/s",
                   "reference server", ref.switches / ref.seconds),
        ]
    figures.append(
        Figure(NAME, f"during a {CELL_SECONDS:g} s cell: agent's own CPU", during.cpu_s * 1e3, "ms", "one core",
               during.seconds * 1e3, f"ratio <= {CPU_TARGET:g}", during.cpu_s / during.seconds <= CPU_TARGET))
    return figures
