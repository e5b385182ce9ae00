"""A cell that crashes or hangs its child process fails alone; the agent goes on."""

from __future__ import annotations

import hashlib
import os
import signal

from agent.wire.protocol import CellSpec
from agent.wire.records import Settings
from controller.client import AgentClient

QUICK = Settings(warmup_runs=1, warmup_min_secs=0, num_runs=5, min_secs=0)
# A cell that would run for a minute unless something ends it first.
LONG = Settings(warmup_runs=1, warmup_min_secs=0, num_runs=5, min_secs=60, max_secs=60)


def push(client, path):
    data = path.read_bytes()
    sha = hashlib.sha256(data).hexdigest()
    client.push_model(str(path), sha, len(data), path.name)
    return sha


def spec(sha, name, settings):
    return CellSpec(model_sha256=sha, model_name=name, delegate="xnnpack", threads=1,
                    settings=settings)


def test_crashed_cell_fails_with_its_signal_and_next_cell_runs(agent, family):
    path = family["fp32"]
    cells = {}

    def crash_first(index, pid):
        if index == 0:
            os.kill(pid, signal.SIGSEGV)

    with AgentClient(agent.endpoint) as client:
        client.hello()
        sha = push(client, path)
        client.run_job("crash", [spec(sha, path.name, LONG), spec(sha, path.name, QUICK)],
                       on_started=crash_first, on_cell=lambda done: cells.__setitem__(done.index, done.cell))
        # The agent survived: it still answers and measures.
        assert client.hello().agent_version
    assert cells[0].status == "failed"
    assert cells[0].error == "cell process crashed with SIGSEGV"
    assert cells[0].model == path.name and cells[0].model_sha256 == sha
    assert cells[1].status == "ok" and cells[1].latency_us.count >= 5
    assert agent.process.poll() is None


def test_missing_model_and_unknown_delegate_fail_cells_with_clear_lines(agent, family):
    path = family["fp32"]
    cells = {}
    with AgentClient(agent.endpoint) as client:
        client.hello()
        sha = push(client, path)
        unknown = CellSpec(model_sha256=sha, model_name=path.name, delegate="warp-drive",
                           threads=1, settings=QUICK)
        client.run_job("bad", [spec("0" * 64, "ghost.tflite", QUICK), unknown],
                       on_cell=lambda done: cells.__setitem__(done.index, done.cell))
    assert cells[0].error == "model ghost.tflite was not transferred to the agent"
    assert "delegate 'warp-drive' is not available" in cells[1].error
