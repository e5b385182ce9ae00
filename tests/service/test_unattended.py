"""An agent nobody watches: no failure wedges it, no cell takes the device down, no peer holds
it, and nothing a peer sends reaches its log unescaped.

Every test talks to a real agent process over ZeroMQ on loopback with CURVE keys; disks are
real tmpfs mounts, descriptor limits real `prlimit`s, stuck reads real FIFOs.
"""

from __future__ import annotations

import contextlib
import hashlib
import os
import resource
import shutil
import subprocess
import sys
import time
from pathlib import Path

import msgspec
import pytest
import zmq

from agent.wire import protocol
from agent.wire.protocol import CellDone, CellStarted, Error, JobAccepted, JobDone, Offer, RunJob
from controller.client import AgentError, JobStalled
from tests.support import ROOT
from tests.support.balloon import balloon
from tests.support.servicekit import (
    DIGITS,
    MODELS,
    QUICK_SETTINGS,
    NotifySocket,
    RawController,
    ServiceAgent,
    cell_spec,
    padded,
    run_job,
    tiny_filesystem,
)

SLOW = msgspec.structs.replace(QUICK_SETTINGS, min_secs=1.0, max_secs=10.0)
PI4 = ROOT / "tests" / "fixtures" / "pi4_root"


def fill(disk: Path) -> Path:
    """Write a file until the file system is full; returns it (delete it to free the space)."""
    filler = disk / "filler"
    # Unbuffered: a failed write leaves nothing for the close to flush (and fail on) again.
    with open(filler, "wb", buffering=0) as f, contextlib.suppress(OSError):
        while True:
            f.write(b"\0" * (64 << 10))
    return filler


def until(raw: RawController, kind: type, job_id: str):
    """Messages of `job_id` until one of `kind` (each reply bounded by the kit's timeout)."""
    while True:
        message = raw.receive()
        if isinstance(message, Error):
            raise AssertionError(message)
        if isinstance(message, kind) and getattr(message, "job_id", None) == job_id:
            return message


# -- 1. a result the agent cannot write ----------------------------------------------------------

def test_a_result_the_disk_refuses_is_kept_sent_and_written_later(tmp_path):
    with tiny_filesystem(tmp_path / "disk", "8m") as disk:
        agent = ServiceAgent(tmp_path / "svc", data=disk / "data")
        agent.start()
        raw = RawController(agent)  # never acknowledges: the held result must outlive the send
        try:
            run_job(agent, "warm", [cell_spec()])
            raw.socket.send_multipart(protocol.encode(RunJob(job_id="full", cells=[cell_spec(settings=SLOW)])))
            until(raw, JobAccepted, "full")
            until(raw, CellStarted, "full")
            filler = fill(disk)  # the cell measures while the disk fills up
            done = until(raw, CellDone, "full")
            assert done.cell.status == "ok", done.cell.error
            assert any("could not write this result to its disk" in w for w in done.cell.warnings), \
                done.cell.warnings
            assert until(raw, JobDone, "full").interrupted is None
            agent.wait_for_log(r"outbox: cannot write cell-0\.msgpack of job full")
            # The job thread lives on: on the full disk a job is refused with one clear line...
            with pytest.raises(AgentError, match="cannot record the job on its disk"):
                run_job(agent, "refused", [cell_spec()])
            filler.unlink()
            # ...and once there is space, the held result reaches the disk and jobs run again.
            agent.wait_for_log(r"outbox: wrote cell-0\.msgpack of job full")
            end, cells = run_job(agent, "after", [cell_spec()], timeout_s=120)
            assert end.interrupted is None and cells[0].status == "ok"
            # os.walk passes over directories of jobs acknowledged meanwhile.
            assert not [name for _, _, files in os.walk(agent.data / "outbox") for name in files
                        if name.endswith(".tmp")], "half-written files were left"
        finally:
            raw.close()
            assert agent.stop() == 0


def test_exhausted_descriptors_fail_no_job_and_wedge_nothing(tmp_path):
    limit = 64
    agent = ServiceAgent(tmp_path / "svc")
    agent.start(prefix=("prlimit", f"--nofile={limit}:{limit}", "--"))
    held: list[RawController] = []
    try:
        run_job(agent, "warm", [cell_spec()])
        raw = RawController(agent)
        # A cell long enough to outlast the crowding below: its result is written meanwhile.
        long = msgspec.structs.replace(SLOW, min_secs=15.0, max_secs=30.0)
        raw.socket.send_multipart(protocol.encode(RunJob(job_id="crowded", cells=[cell_spec(settings=long)])))
        until(raw, CellStarted, "crowded")
        # Connections until the agent takes no more: it keeps descriptors for its own work.
        while True:
            extra = RawController(agent)
            extra.socket.send_multipart(protocol.encode(protocol.Ping(seq=1)))
            if not extra.socket.poll(5_000):
                extra.close()
                break
            extra.receive()
            held.append(extra)
            assert len(held) < limit, "the agent admitted more connections than it has descriptors"
        with pytest.raises(AgentError, match="could not take this connection now"):
            run_job(agent, "crowded-out", [cell_spec()])
        agent.wait_for_log(r"too many connections")
        assert until(raw, CellDone, "crowded").cell.status == "ok"
        assert until(raw, JobDone, "crowded").interrupted is None
        raw.close()
        for extra in held:
            extra.close()
        held.clear()
        # The agent notices the hang-ups on its own time: a refusal meanwhile says so, and passes.
        for attempt in range(50):
            try:
                end, cells = run_job(agent, f"after-{attempt}", [cell_spec()], timeout_s=120)
                break
            except AgentError as exc:
                assert "could not take this connection now" in str(exc), exc
        assert end.interrupted is None and cells[0].status == "ok"
    finally:
        for extra in held:
            extra.close()
        assert agent.stop() == 0


def test_a_thousand_idle_connections_leave_room_for_a_controller(tmp_path):
    # The agent takes the hard limit of open files: a common soft limit of 1,024 no longer decides.
    connections = 1010
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if hard != resource.RLIM_INFINITY and hard < 2 * connections + 256:
        pytest.skip(f"this test process may open {hard} files; {connections} connections need more")
    resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))
    agent = ServiceAgent(tmp_path / "svc")
    agent.start(prefix=("prlimit", "--nofile=1024:8192", "--"))
    context = zmq.Context()
    context.set(zmq.MAX_SOCKETS, 2 * connections)
    held: list[RawController] = []
    try:
        for _ in range(connections):
            held.append(RawController(agent, context))
        for extra in held[::50]:  # they are real, answered connections
            extra.socket.send_multipart(protocol.encode(protocol.Ping(seq=1)))
            assert isinstance(extra.receive(), protocol.Pong)
        end, cells = run_job(agent, "beside-a-crowd", [cell_spec()], timeout_s=120)
        assert end.interrupted is None and cells[0].status == "ok"
    finally:
        for extra in held:
            extra.close()
        context.term()
        resource.setrlimit(resource.RLIMIT_NOFILE, (soft, hard))
        assert agent.stop() == 0


# -- 2. a stuck job thread -----------------------------------------------------------------------

def test_a_stuck_job_thread_starves_the_watchdog_and_tells_the_controller(tmp_path):
    tree = tmp_path / "root"
    shutil.copytree(PI4, tree)
    notify = NotifySocket(str(tmp_path / "notify.sock"))
    notifications = notify.collect()
    agent = ServiceAgent(tmp_path / "svc")
    agent.start(env={"NOTIFY_SOCKET": notify.path, "WATCHDOG_USEC": "2000000"}, args=("--root", str(tree)))
    temp = tree / "sys/class/thermal/thermal_zone0/temp"
    try:
        # A temperature that never comes: the cooldown's read blocks, as on a hung sysfs driver.
        temp.unlink()
        os.mkfifo(temp)
        cell = cell_spec(cooldown_below_c=1.0, max_cooldown_s=1.0)
        with pytest.raises(JobStalled, match="job thread is stuck: the cooldown before cell 0"):
            run_job(agent, "stuck", [cell], timeout_s=600)
        stall = agent.wait_for_log(r"^ERROR (the agent's job thread is stuck[^;]*);").group(1)
        with pytest.raises(AgentError, match="job thread is stuck"):
            run_job(agent, "refused-while-stuck", [cell_spec()])
        # Three more watchdog periods of watching (a window, not a wait for something): the
        # manager heard the stall, and no ping came after it.
        time.sleep(3.0)
        lines = [(at, line) for at, text in notifications for line in text.splitlines()]
        told = [at for at, line in lines if line == f"STATUS={stall}"]
        assert told, f"the stall was not told to the service manager: {lines}"
        pings = [at for at, line in lines if line == "WATCHDOG=1"]
        assert pings and max(pings) < told[0], "the watchdog was fed while the job thread was stuck"
    finally:
        # Unblock the read with a real temperature, so that the agent can stop.
        with contextlib.suppress(OSError):
            fifo = os.open(temp, os.O_WRONLY | os.O_NONBLOCK)
            temp.unlink()
            temp.write_text("30000\n")
            os.write(fifo, b"30000\n")
            os.close(fifo)
        agent.stop()
        notify.close()


# -- 3. cells that cannot take the device down ---------------------------------------------------

def test_a_cell_over_the_memory_limit_fails_and_the_next_one_runs(tmp_path):
    big = balloon(MODELS / "digits_cnn_fp32.tflite", 40_000, tmp_path / "digits_batch40000.tflite")
    agent = ServiceAgent(tmp_path / "svc", extra_config="cell_memory_limit_mb = 300\n")
    agent.start()
    scores: list[str] = []

    def started(index: int, pid: int) -> None:
        # The cell asks the kernel to pick it first when memory runs out (read while it runs).
        if index != 1:
            return
        deadline = time.monotonic() + 5.0
        with contextlib.suppress(OSError):
            while (score := Path(f"/proc/{pid}/oom_score_adj").read_text().strip()) != "1000" \
                    and time.monotonic() < deadline:
                time.sleep(0.01)
            scores.append(score)

    try:
        end, cells = run_job(agent, "balloon", [cell_spec(big), cell_spec(settings=SLOW)], models=(big, DIGITS),
                             on_started=started)
        assert end.interrupted is None
        assert cells[0].status == "failed" and cells[0].error.startswith("memory limit:"), cells[0].error
        assert "cell_memory_limit_mb = 300" in cells[0].error
        assert cells[1].status == "ok", cells[1].error
        assert "1000" in scores, scores
        assert agent.process.poll() is None
    finally:
        assert agent.stop() == 0


def test_the_memory_limit_must_leave_the_runtime_room(tmp_path):
    agent = ServiceAgent(tmp_path / "svc", extra_config="cell_memory_limit_mb = 16\n")
    agent.write_config()
    result = subprocess.run([sys.executable, "-m", "agent", "serve", "--config", str(agent.config)],
                            capture_output=True, text=True, timeout=60, check=False)
    assert result.returncode == 2
    assert "cell_memory_limit_mb must be at least" in result.stderr and result.stderr.count("\n") == 1


# -- 4. transfers nobody can hold ----------------------------------------------------------------

def test_offering_again_does_not_keep_a_transfer_alive(service_agent, tmp_path):
    path, sha = padded(tmp_path, "held.tflite", 3 * protocol.CHUNK_SIZE)
    raw = RawController(service_agent)
    offer = protocol.encode(Offer(sha256=sha, size=path.stat().st_size, name=path.name))
    try:
        raw.socket.send_multipart(offer)
        assert isinstance(raw.receive(), protocol.Fetch)
        # Offer again and again, never a chunk: the idle timer is not reset by it.
        for _ in range(20):
            raw.socket.send_multipart(offer)
            if raw.socket.poll(5_000) and isinstance(reply := raw.receive(), Error):
                break
        else:
            raise AssertionError("the transfer was kept open by offers alone for 100 s")
        assert "received nothing for 30 s" in reply.message, reply
        assert not list((service_agent.data / "models").glob("*.part")), "the abandoned partial file stayed"
    finally:
        raw.close()


def test_two_transfers_cannot_promise_the_same_free_space(tmp_path):
    with tiny_filesystem(tmp_path / "disk", "8m") as disk:
        agent = ServiceAgent(tmp_path / "svc", data=disk / "data")
        agent.start()
        raw = RawController(agent)
        try:
            first = hashlib.sha256(b"first").hexdigest()
            second = hashlib.sha256(b"second").hexdigest()
            raw.socket.send_multipart(protocol.encode(Offer(sha256=first, size=5 << 20, name="a")))
            assert isinstance(raw.receive(), protocol.Fetch)
            raw.socket.send_multipart(protocol.encode(Offer(sha256=second, size=5 << 20, name="b")))
            while isinstance(reply := raw.receive(), protocol.Fetch) and reply.sha256 == first:
                pass  # the first transfer's requests
            assert isinstance(reply, Error) and "not enough free space" in reply.message, reply
            # A peer learns that it does not fit, not how much would.
            assert "bytes" not in reply.message and "free in" not in reply.message, reply.message
        finally:
            raw.close()
            assert agent.stop() == 0


# -- 6 and 9. what a peer sends --------------------------------------------------------------------

def test_a_peers_control_characters_never_reach_the_log(service_agent):
    raw = RawController(service_agent)
    forged = "x\nINFO job forged cell 0 digits.tflite xnnpack x1: ok\x1b[2J"
    try:
        raw.throw([protocol.PROTOCOL, msgspec.msgpack.encode({"type": forged, "seq": 1})])
        raw.throw([protocol.PROTOCOL, msgspec.msgpack.encode({"type": "run", "job_id": forged, "cells": []})])
    finally:
        raw.close()
    service_agent.wait_for_log(r"INFO job forged")  # the text arrived, escaped, inside one line
    log = service_agent.log()
    assert "\x1b" not in log
    assert not [line for line in log.splitlines() if line.startswith("INFO job forged")], log


def test_a_nul_in_a_delegate_library_fails_that_cell_only(service_agent):
    end, cells = run_job(service_agent, "nul", [
        cell_spec(delegate="planted", delegate_library="/usr/lib/libplanted\0.so"), cell_spec()])
    assert end.interrupted is None
    assert cells[0].status == "failed" and "control character" in cells[0].error, cells[0].error
    assert "\0" not in cells[0].error
    assert cells[1].status == "ok", cells[1].error


def test_the_unit_caps_memory_and_keeps_the_agent_alive_under_pressure():
    from agent.service import ServiceOptions, unit_text

    unit = unit_text(ServiceOptions(exec_start="/usr/bin/python3 -m agent"))
    assert "MemoryMax=" in unit and "OOMPolicy=continue" in unit
    assert "OOMScoreAdjust=-" in unit
