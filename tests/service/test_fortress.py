"""The agent as a hostile controller finds it: no code from the wire, no death by flood,
no silent corruption, no disk that stays full, one owner per job.

Every test talks to a real agent process over ZeroMQ on loopback with CURVE keys.
"""

from __future__ import annotations

import hashlib
import os
import shutil
import subprocess
import sys
import threading
from pathlib import Path

import msgspec
import pytest

from agent.outbox import Outbox
from agent.wire import protocol
from agent.wire.protocol import (
    AndroidTarget,
    CellDone,
    CellSpec,
    Error,
    Hello,
    InfoRequest,
    JobAccepted,
    JobDone,
    RunJob,
    Welcome,
    cell_template,
)
from agent.wire.records import Settings
from controller.client import AgentError
from tests.support.servicekit import (
    MODELS,
    RawController,
    ServiceAgent,
    cell_spec,
    padded,
    run_job,
    tiny_filesystem,
)

QUICK = Settings(warmup_runs=1, warmup_min_secs=0, num_runs=5, min_secs=0)
MODEL = MODELS / "digits_cnn_int8.tflite"
SHA = hashlib.sha256(MODEL.read_bytes()).hexdigest()

CONSTRUCTOR = r"""
#include <stdio.h>
__attribute__((constructor)) static void planted(void) {
    FILE *f = fopen(MARKER, "w");
    if (f) { fputs("constructor ran\n", f); fclose(f); }
}
"""


def planted_library(directory: Path, marker: Path) -> Path:
    """A shared library whose constructor writes `marker` the moment it is loaded."""
    if shutil.which("gcc") is None:
        pytest.skip("gcc is needed to build the planted library")
    source, library = directory / "planted.c", directory / "libplanted.so"
    source.write_text(CONSTRUCTOR)
    subprocess.run(["gcc", "-shared", "-fPIC", f'-DMARKER="{marker}"', "-o", str(library), str(source)],
                   check=True, capture_output=True, timeout=60)
    return library


spec = cell_spec


def run_one(agent: ServiceAgent, job_id: str, cell: CellSpec):
    end, cells = run_job(agent, job_id, [cell])
    assert end.interrupted is None
    assert len(cells) == 1
    return cells[0]


# -- 1. nothing executable from the wire --------------------------------------------------------

def test_uploaded_blob_or_unlisted_library_is_never_loaded(tmp_path):
    marker = tmp_path / "constructor-ran"
    library = planted_library(tmp_path, marker)
    agent = ServiceAgent(tmp_path / "svc")
    agent.start()
    try:
        sha = hashlib.sha256(library.read_bytes()).hexdigest()
        with agent.client() as client:
            client.hello(timeout_s=30)
            client.push_model(str(library), sha, library.stat().st_size, library.name, kind="binary")
        uploaded = agent.data / "models" / f"{sha}.bin"
        assert uploaded.exists()
        for path in (uploaded, library):
            cell = run_one(agent, f"evil-{path.name}", spec(delegate="planted", delegate_library=str(path)))
            assert cell.status == "failed"
            assert "delegate_libraries" in cell.error and "\n" not in cell.error, cell.error
        assert not marker.exists(), "a library from the wire was loaded"
    finally:
        assert agent.stop() == 0


def test_a_library_the_agent_allows_is_loaded(tmp_path):
    # The same planted library, listed in agent.toml: proof that the test above would see a load.
    marker = tmp_path / "constructor-ran"
    library = planted_library(tmp_path, marker)
    agent = ServiceAgent(tmp_path / "svc", extra_config=f'delegate_libraries = ["{library}"]\n')
    agent.start()
    try:
        cell = run_one(agent, "allowed", spec(delegate="planted", delegate_library=library.name))
        assert cell.status == "failed"  # it is no delegate, but it was loaded
        assert "cannot load delegate planted" in cell.error, cell.error
        assert marker.exists()
    finally:
        assert agent.stop() == 0


def test_phones_outside_the_configuration_are_never_reached(tmp_path):
    agent = ServiceAgent(tmp_path / "svc")
    agent.start()
    raw = RawController(agent)
    try:
        target = AndroidTarget(address="192.0.2.7:5555", binary_sha256="0" * 64)
        raw.socket.send_multipart(protocol.encode(InfoRequest(android=target)))
        reply = raw.receive()
        assert isinstance(reply, Error) and "phones" in reply.message, reply
        raw.socket.send_multipart(protocol.encode(RunJob(job_id="phone", cells=[spec()], android=target)))
        reply = raw.receive()
        assert isinstance(reply, Error) and "phones" in reply.message, reply
        assert "192.0.2.7" not in "".join(line for line in agent.log().splitlines() if "connect" in line)
    finally:
        raw.close()
        assert agent.stop() == 0


# -- 2. no death by flood ------------------------------------------------------------------------

def test_reattach_flood_and_hang_up_leave_the_agent_serving(tmp_path):
    cells = 2000
    agent = ServiceAgent(tmp_path / "svc")
    # An unacknowledged 2,000-cell job, as a controller that went away would leave it.
    outbox = Outbox(agent.data / "outbox")
    job = RunJob(job_id="big", cells=[spec() for _ in range(cells)])
    outbox.accept(job)
    template = cell_template(job.cells[0], MODEL.stat().st_size)
    for index in range(cells):
        outbox.put(CellDone(job_id="big", index=index, cell=template))
    outbox.put(JobDone(job_id="big"))
    agent.start()
    try:
        reattach = protocol.encode(RunJob(job_id="big", cells=[spec()]))
        for _ in range(3):
            raw = RawController(agent)
            for _ in range(cells):
                raw.socket.send_multipart(reattach)
            raw.close()  # hang up with whatever the agent queued for us
        with agent.client() as client:
            assert isinstance(client.hello(timeout_s=30), Welcome)
            got: list[CellDone] = []
            end = client.run_job("big", [spec()], on_cell=got.append)
        assert end.interrupted is None
        assert sorted({done.index for done in got}) == list(range(cells))  # a real re-attach gets everything
        assert agent.process.poll() is None
        assert "re-attach" in agent.log()
    finally:
        assert agent.stop() == 0


# -- 3. the cache verifies what it serves --------------------------------------------------------

@pytest.mark.parametrize("offset", [4, -100], ids=["header", "body"])
def test_corrupted_cached_model_is_fetched_again(service_agent, offset):
    assert run_one(service_agent, "before", spec()).status == "ok"
    cached = service_agent.data / "models" / f"{SHA}.tflite"
    with open(cached, "r+b") as f:
        f.seek(offset, os.SEEK_SET if offset >= 0 else os.SEEK_END)
        byte = f.read(1)
        f.seek(-1, os.SEEK_CUR)
        f.write(bytes([byte[0] ^ 0xFF]))
    with service_agent.client() as client:
        client.hello(timeout_s=30)
        sent = client.push_model(str(MODEL), SHA, MODEL.stat().st_size, MODEL.name)
    assert sent == MODEL.stat().st_size  # the agent noticed and asked for every byte again
    assert hashlib.sha256(cached.read_bytes()).hexdigest() == SHA
    assert run_one(service_agent, "after", spec()).status == "ok"


def test_model_corrupted_after_the_offer_fails_its_cell_and_is_evicted(service_agent):
    with service_agent.client() as client:
        client.hello(timeout_s=30)
        client.push_model(str(MODEL), SHA, MODEL.stat().st_size, MODEL.name)
        cached = service_agent.data / "models" / f"{SHA}.tflite"
        data = bytearray(cached.read_bytes())
        data[-10] ^= 0x55
        cached.write_bytes(bytes(data))
        got: list[CellDone] = []
        client.run_job("corrupt", [spec()], on_cell=got.append)
    assert got[0].cell.status == "failed"
    assert "changed on the agent's disk" in got[0].cell.error, got[0].cell.error
    assert not cached.exists()


# -- 4. disks and handles ------------------------------------------------------------------------

def test_full_disk_fails_one_transfer_cleanly_and_the_next_succeeds(tmp_path):
    with tiny_filesystem(tmp_path / "disk", "6m") as disk:
        agent = ServiceAgent(tmp_path / "svc", data=disk / "data")
        agent.start()
        models = agent.data / "models"
        try:
            path, sha = padded(tmp_path, "m.tflite", 3 * protocol.CHUNK_SIZE + 1000)
            filler = disk / "filler"
            # Refused up front: not enough free space for the whole model.
            filler.write_bytes(b"\0" * (4 << 20))
            with agent.client() as client:
                client.hello(timeout_s=30)
                with pytest.raises(AgentError, match="free space"):
                    client.push_model(str(path), sha, path.stat().st_size, path.name)
            assert not list(models.glob("*.part"))
            filler.unlink()
            # Accepted, then the disk fills while the chunks arrive: ENOSPC mid-transfer.
            raw = RawController(agent)
            data = path.read_bytes()
            raw.socket.send_multipart(protocol.encode(protocol.Offer(sha256=sha, size=len(data), name=path.name)))
            assert isinstance(raw.receive(), protocol.Fetch)
            filler.write_bytes(b"\0" * (5 << 20))
            for offset in range(0, len(data), protocol.CHUNK_SIZE):
                raw.socket.send_multipart(protocol.encode(protocol.Chunk(sha256=sha, offset=offset),
                                                          data[offset:offset + protocol.CHUNK_SIZE]))
            while not isinstance(reply := raw.receive(), Error):
                pass
            assert "No space left" in reply.message, reply
            raw.close()
            assert not list(models.glob("*.part")), "a partial file was left on a full disk"
            filler.unlink()
            with agent.client() as client:
                client.hello(timeout_s=30)
                assert client.push_model(str(path), sha, len(data), path.name) == len(data)
            assert hashlib.sha256((models / f"{sha}.tflite").read_bytes()).hexdigest() == sha
        finally:
            assert agent.stop() == 0


def test_transfers_are_bounded_across_client_ids(service_agent, tmp_path):
    # Forty connections of one controller key, each offering a blob: the key holds four
    # transfers at most (a newer offer takes the place of its least active one).
    raws = []
    try:
        for n in range(40):
            raw = RawController(service_agent)  # a fresh routing id each time
            raws.append(raw)
            other = hashlib.sha256(f"{n}".encode()).hexdigest()
            raw.throw(protocol.encode(protocol.Offer(sha256=other, size=1 << 20, name="x")))
        agent_pid = service_agent.process.pid
        parts = [p for p in os.listdir(f"/proc/{agent_pid}/fd")
                 if os.readlink(f"/proc/{agent_pid}/fd/{p}").endswith(".part")]
        assert len(parts) == 4, "one controller's key holds more than its share of transfers"
        assert len(list((service_agent.data / "models").glob("*.part"))) == 4, "replaced transfers left files"
        # The same controller's real push is never locked out by its own abandoned transfers.
        assert run_one(service_agent, "still-pushes", spec()).status == "ok"
    finally:
        for raw in raws:
            raw.close()


def test_same_model_from_two_controllers_at_once(service_agent, tmp_path):
    path, sha = padded(tmp_path, "shared.tflite", 3 * protocol.CHUNK_SIZE + 7)
    data = path.read_bytes()
    raws = [RawController(service_agent) for _ in range(2)]
    try:
        for raw in raws:
            raw.socket.send_multipart(protocol.encode(protocol.Offer(sha256=sha, size=len(data), name=path.name)))
        done = [False, False]
        while not all(done):
            for i, raw in enumerate(raws):
                if done[i] or not raw.socket.poll(100):
                    continue
                reply = raw.receive()
                if isinstance(reply, protocol.Fetch):
                    chunk = data[reply.offset:reply.offset + reply.length]
                    raw.socket.send_multipart(protocol.encode(protocol.Chunk(sha256=sha, offset=reply.offset), chunk))
                elif isinstance(reply, protocol.Have):
                    done[i] = True
                else:
                    raise AssertionError(reply)
    finally:
        for raw in raws:
            raw.close()
    assert hashlib.sha256((service_agent.data / "models" / f"{sha}.tflite").read_bytes()).hexdigest() == sha


# -- 5. one owner per job, and a cancel -----------------------------------------------------------

def test_a_second_claim_on_a_running_job_is_refused(service_agent):
    slow = msgspec.structs.replace(QUICK, min_secs=1.0, num_runs=1, max_secs=10.0)
    cells = [spec(settings=slow) for _ in range(3)]
    results: list[CellDone] = []
    first_error: list[BaseException] = []

    def owner() -> None:
        try:
            with service_agent.client() as client:
                client.hello(timeout_s=30)
                client.push_model(str(MODEL), SHA, MODEL.stat().st_size, MODEL.name)
                client.run_job("owned", cells, on_cell=results.append)
        except BaseException as exc:  # noqa: BLE001 - reported by the assertion below
            first_error.append(exc)

    thread = threading.Thread(target=owner)
    thread.start()
    service_agent.wait_for_log(r"^INFO job owned cell 0 ")
    with service_agent.client() as thief, pytest.raises(AgentError, match="owned by another controller"):
        thief.hello(timeout_s=30)
        thief.run_job("owned", cells)
    thread.join(120)
    assert not thread.is_alive() and not first_error, first_error
    assert sorted(done.index for done in results) == [0, 1, 2]


def test_cancel_ends_the_job_and_the_running_cell(service_agent):
    slow = msgspec.structs.replace(QUICK, min_secs=30.0, num_runs=1, max_secs=60.0)
    raw = RawController(service_agent)
    try:
        with service_agent.client() as client:
            client.hello(timeout_s=30)
            client.push_model(str(MODEL), SHA, MODEL.stat().st_size, MODEL.name)
        raw.socket.send_multipart(protocol.encode(RunJob(job_id="long", cells=[spec(settings=slow)] * 3)))
        assert isinstance(raw.receive(), JobAccepted)
        assert isinstance(raw.receive(timeout_ms=60_000), protocol.CellStarted)
        raw.socket.send_multipart(protocol.encode(protocol.Cancel(job_id="long")))
        while not isinstance(reply := raw.receive(timeout_ms=20_000), JobDone):
            pass
        assert "cancelled" in reply.interrupted
    finally:
        raw.close()
    # The agent is free at once: a new job's cell starts without waiting out the old one.
    assert run_one(service_agent, "next", spec()).status == "ok"


def test_hello_answered_after_deeply_nested_garbage(service_agent):
    raw = RawController(service_agent)
    try:
        body = b"\x91" * 200_000 + b"\xc0"
        raw.throw([protocol.PROTOCOL, body])
        raw.socket.send_multipart(protocol.encode(Hello(client_version="x" * 10_000)))
        reply = raw.receive()
        assert isinstance(reply, Error) and len(reply.message) < 400
    finally:
        raw.close()


def test_second_agent_on_one_data_dir_is_refused(service_agent):
    second = subprocess.run(
        [sys.executable, "-m", "agent", "serve", "--insecure", "--bind", "tcp://127.0.0.1:*",
         "--data-dir", str(service_agent.data)],
        capture_output=True, text=True, timeout=60, check=False)
    assert second.returncode == 2
    assert "in use by another agent" in second.stderr and len(second.stderr.strip().splitlines()) == 1, second.stderr


def test_agent_refuses_a_secret_key_others_can_read(tmp_path):
    agent = ServiceAgent(tmp_path / "svc")
    agent.secret.chmod(0o640)
    agent.write_config()
    result = subprocess.run([sys.executable, "-m", "agent", "serve", "--config", str(agent.config)],
                            capture_output=True, text=True, timeout=60, check=False)
    assert result.returncode == 2
    assert "readable by others" in result.stderr and len(result.stderr.strip().splitlines()) == 1, result.stderr


def test_the_unit_bounds_open_files():
    from agent import service
    unit = service.unit_text(service.ServiceOptions(
        user="edgebench", config_path=Path("/etc/edgebench/agent.toml"), data_dir=Path("/var/lib/edgebench"),
        exec_start="/usr/bin/agent", watchdog_s=30))
    assert "\nLimitNOFILE=" in unit


def test_outbox_keeps_finished_unacknowledged_jobs_bounded(tmp_path):
    outbox = Outbox(tmp_path / "outbox")
    template = cell_template(spec(), 1000)
    for n in range(30):
        job = RunJob(job_id=f"job-{n}", cells=[spec()])
        outbox.accept(job)
        outbox.put(CellDone(job_id=job.job_id, index=0, cell=template))
        if n != 7:
            outbox.put(JobDone(job_id=job.job_id))
    assert outbox.prune(max_jobs=10) == 20
    assert outbox.known("job-7")  # an unfinished job is never dropped
    assert len(list((tmp_path / "outbox").iterdir())) == 10
    assert outbox.prune(max_age_s=0, now=os.path.getmtime(tmp_path / "outbox") + 10 ** 6) == 9
    assert len(list((tmp_path / "outbox").iterdir())) == 1 and outbox.known("job-7")


def test_a_second_local_agent_on_one_data_dir_says_so(tmp_path):
    from controller.local_agent import LocalAgent, LocalAgentError

    with LocalAgent(tmp_path / "local"), pytest.raises(LocalAgentError, match="in use by another agent"):
        LocalAgent(tmp_path / "local").start()
