"""Hostile and broken input against a live agent: fuzzed frames, bad transfers, a full cache.

The fuzz tests report how many messages they threw (`-s` shows the line); after each one
the agent must still answer a ping, and afterwards it must still serve a normal run.
"""

from __future__ import annotations

import hashlib
import os
import socket
from pathlib import Path

import msgspec
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from agent.wire import protocol
from agent.wire.protocol import CellSpec, Chunk, Hello, Offer, Ping, RunJob
from agent.wire.records import Settings
from controller.client import AgentError
from tests.support.servicekit import MODELS, RawController, ServiceAgent

FUZZ_EXAMPLES = int(os.environ.get("EDGEBENCH_FUZZ_EXAMPLES", "1500"))
QUICK = Settings(warmup_runs=1, warmup_min_secs=0, num_runs=5, min_secs=0)
FUZZ_SETTINGS = settings(max_examples=FUZZ_EXAMPLES, deadline=None, database=None,
                         suppress_health_check=list(HealthCheck))


def _tagged_types() -> dict[str, type]:
    return {cls.__struct_config__.tag: cls for cls in protocol.AnyMessage.__args__}


TAGS = _tagged_types()
SHA = st.one_of(st.text(alphabet="0123456789abcdef", min_size=64, max_size=64),
                st.text(max_size=80), st.just("../../etc/passwd"))
LEAF = st.one_of(st.none(), st.booleans(), st.integers(-(2**63), 2**64 - 1), st.floats(),
                 st.text(max_size=40), st.binary(max_size=40), SHA)
VALUE = st.recursive(LEAF, lambda inner: st.one_of(st.lists(inner, max_size=3),
                                                   st.dictionaries(st.text(max_size=10), inner, max_size=3)),
                     max_leaves=8)


@st.composite
def typed_messages(draw) -> list[bytes]:
    """A message of a real type with hostile field values (and sometimes extra fields)."""
    tag = draw(st.sampled_from(sorted(TAGS)))
    fields = {field.encode_name: draw(VALUE) for field in msgspec.structs.fields(TAGS[tag])}
    fields.update(draw(st.dictionaries(st.text(max_size=8), VALUE, max_size=2)))
    fields["type"] = tag
    payload = draw(st.lists(st.binary(max_size=64), max_size=2))
    return [protocol.PROTOCOL, msgspec.msgpack.encode(fields), *payload]


def _valid_bodies() -> list[bytes]:
    sha = hashlib.sha256(b"x").hexdigest()
    spec = CellSpec(model_sha256=sha, model_name="m.tflite", delegate="xnnpack", threads=1, settings=QUICK)
    return [protocol.encode(m)[1] for m in (
        Hello(client_version="1"), Offer(sha256=sha, size=10, name="m.tflite"),
        Chunk(sha256=sha, offset=0), RunJob(job_id="fuzz", cells=[spec]), Ping(seq=1),
        protocol.Ack(job_id="fuzz", cells=[0, 1]))]


@st.composite
def mutated_messages(draw) -> list[bytes]:
    """A valid message with bytes flipped, cut, inserted or its frames rearranged."""
    body = bytearray(draw(st.sampled_from(_valid_bodies())))
    for _ in range(draw(st.integers(1, 4))):
        kind = draw(st.sampled_from(["flip", "cut", "insert"]))
        at = draw(st.integers(0, max(0, len(body) - 1)))
        if kind == "flip" and body:
            body[at] ^= draw(st.integers(1, 255))
        elif kind == "cut":
            del body[at:at + draw(st.integers(1, 16))]
        else:
            body[at:at] = draw(st.binary(min_size=1, max_size=16))
    head = draw(st.sampled_from([protocol.PROTOCOL, b"EDGEBENCH/2", b"", protocol.PROTOCOL[:-1]]))
    frames = [head, bytes(body), *draw(st.lists(st.binary(max_size=32), max_size=2))]
    if draw(st.booleans()):
        frames = draw(st.permutations(frames))
    return frames


def test_fuzzed_frames_never_stop_the_agent(service_agent, capsys):
    raw = RawController(service_agent)

    @FUZZ_SETTINGS
    @given(st.lists(st.binary(max_size=512), min_size=1, max_size=5))
    def random_frames(frames):
        raw.throw(frames)

    @FUZZ_SETTINGS
    @given(mutated_messages())
    def mutated(frames):
        raw.throw(frames)

    @FUZZ_SETTINGS
    @given(typed_messages())
    def typed(frames):
        raw.throw(frames)

    try:
        random_frames()
        mutated()
        typed()
    finally:
        raw.close()
    garbage = _raw_tcp_garbage(service_agent)
    with capsys.disabled():
        print(f"\nfuzz: {raw.thrown} messages thrown over ZeroMQ ({raw.errors} error replies), "
              f"{garbage} raw TCP connections of garbage; agent crashes: 0")
    assert raw.thrown >= 3 * min(FUZZ_EXAMPLES, 100)
    assert raw.errors > raw.thrown // 2  # most of it was refused with an error reply
    assert service_agent.process.poll() is None
    log = service_agent.log()
    assert "Traceback" not in log  # everything was refused by validation, not by a failing handler
    _normal_run_still_works(service_agent)


def _raw_tcp_garbage(agent: ServiceAgent) -> int:
    """Unauthenticated bytes straight to the agent's TCP port; returns connections made."""
    host, port = agent.endpoint.removeprefix("tcp://").rsplit(":", 1)
    count = 0

    @settings(max_examples=max(50, FUZZ_EXAMPLES // 10), deadline=None, database=None,
              suppress_health_check=list(HealthCheck))
    @given(st.one_of(st.binary(min_size=1, max_size=300),
                     st.binary(max_size=64).map(lambda b: b"\xff" + b"\0" * 8 + b"\x7f\x03\x00CURVE" + b)))
    def connect_and_send(data):
        nonlocal count
        with socket.create_connection((host, int(port)), timeout=10) as conn:
            conn.sendall(data)
        count += 1

    connect_and_send()
    return count


def _normal_run_still_works(agent: ServiceAgent) -> None:
    model = MODELS / "digits_cnn_int8.tflite"
    sha = hashlib.sha256(model.read_bytes()).hexdigest()
    with agent.client() as client:
        client.hello(timeout_s=30)
        client.push_model(str(model), sha, model.stat().st_size, model.name)
        cells = []
        end = client.run_job("after-fuzz", [CellSpec(model_sha256=sha, model_name=model.name,
                                                     delegate="xnnpack", threads=1, settings=QUICK)],
                             on_cell=cells.append)
    assert end.interrupted is None
    assert [c.cell.status for c in cells] == ["ok"], cells[0].cell.error


def test_oversized_frame_drops_only_that_connection(service_agent):
    raw = RawController(service_agent)
    try:
        raw.socket.send_multipart([protocol.PROTOCOL, b"\0" * (protocol.MAX_FRAME_BYTES + 1)])
    finally:
        raw.close()
    with service_agent.client() as client:
        assert client.hello(timeout_s=30).agent_version


def padded_model(tmp_path: Path, name: str, size: int) -> tuple[Path, str]:
    """A real TFLite model padded to `size` bytes (distinct padding, distinct sha256)."""
    data = (MODELS / "digits_cnn_int8.tflite").read_bytes()
    data += name.encode() * ((size - len(data)) // len(name)) + b"\0" * ((size - len(data)) % len(name))
    path = tmp_path / name
    path.write_bytes(data)
    return path, hashlib.sha256(data).hexdigest()


def test_truncated_transfer_resumes_from_the_partial_file(service_agent, tmp_path):
    path, sha = padded_model(tmp_path, "big.tflite", 3 * protocol.CHUNK_SIZE + 12345)
    data = path.read_bytes()
    raw = RawController(service_agent)
    try:
        raw.socket.send_multipart(protocol.encode(Offer(sha256=sha, size=len(data), name=path.name)))
        fetch = raw.receive()
        assert isinstance(fetch, protocol.Fetch) and fetch.offset == 0
        raw.socket.send_multipart(protocol.encode(Chunk(sha256=sha, offset=0),
                                                  data[:protocol.CHUNK_SIZE]))
        raw.throw([protocol.PROTOCOL, b"\xc1"])  # a round trip: the chunk has been written
    finally:
        raw.close()  # the controller vanishes mid-transfer
    with service_agent.client() as client:
        client.hello(timeout_s=30)
        sent = client.push_model(str(path), sha, len(data), path.name)
    assert sent == len(data) - protocol.CHUNK_SIZE
    assert (service_agent.data / "models" / f"{sha}.tflite").read_bytes() == data


def test_hash_mismatch_and_non_tflite_payloads_are_refused(service_agent, tmp_path):
    path, real_sha = padded_model(tmp_path, "m.tflite", 200_000)
    claimed = hashlib.sha256(b"something else").hexdigest()
    junk = tmp_path / "junk.tflite"
    junk.write_bytes(os.urandom(50_000))
    models = service_agent.data / "models"
    with service_agent.client() as client:
        client.hello(timeout_s=30)
        with pytest.raises(AgentError, match="hash mismatch"):
            client.push_model(str(path), claimed, path.stat().st_size, path.name)
        assert not (models / f"{claimed}.tflite").exists()
        assert not (models / f"{claimed}.part").exists()
        junk_sha = hashlib.sha256(junk.read_bytes()).hexdigest()
        with pytest.raises(AgentError, match=r"(?i)tflite|identifier|flatbuffer"):
            client.push_model(str(junk), junk_sha, junk.stat().st_size, junk.name)
        assert not (models / f"{junk_sha}.tflite").exists()
        assert client.push_model(str(path), real_sha, path.stat().st_size, path.name) > 0


def test_cache_quota_evicts_least_recently_used_but_never_a_model_in_use(tmp_path):
    size = 1_000_000
    agent = ServiceAgent(tmp_path / "svc", quota=int(2.5 * size))
    agent.start()
    models = agent.data / "models"
    a, b, c, d = (padded_model(tmp_path, f"{n}.tflite", size) for n in "abcd")
    try:
        with agent.client() as client:
            client.hello(timeout_s=30)
            too_big, _ = padded_model(tmp_path, "huge.tflite", 3 * size)
            with pytest.raises(AgentError, match="quota"):
                client.push_model(str(too_big), hashlib.sha256(too_big.read_bytes()).hexdigest(),
                                  3 * size, too_big.name)
            for path, sha in (a, b):
                client.push_model(str(path), sha, size, path.name)
            assert client.push_model(str(a[0]), a[1], size, a[0].name) == 0  # a is now the most recent
            client.push_model(str(c[0]), c[1], size, c[0].name)
            assert sorted(p.stem for p in models.glob("*.tflite")) == sorted([a[1], c[1]])  # b went

        # A job that uses c pins it: making room for d must evict a instead, though c is older.
        raw = RawController(agent)
        slow = msgspec.structs.replace(QUICK, min_secs=3.0, num_runs=1, max_secs=30.0)
        spec = CellSpec(model_sha256=c[1], model_name="c.tflite", delegate="xnnpack", threads=1, settings=slow)
        with agent.client() as client:
            client.hello(timeout_s=30)
            assert client.push_model(str(a[0]), a[1], size, a[0].name) == 0  # a more recent than c
            raw.socket.send_multipart(protocol.encode(RunJob(job_id="pinned", cells=[spec])))
            assert isinstance(raw.receive(), protocol.JobAccepted)
            assert isinstance(raw.receive(timeout_ms=60_000), protocol.CellStarted)
            client.push_model(str(d[0]), d[1], size, d[0].name)
        assert sorted(p.stem for p in models.glob("*.tflite")) == sorted([c[1], d[1]])
        done = raw.receive(timeout_ms=120_000)
        assert isinstance(done, protocol.CellDone) and done.cell.status == "ok", done
        raw.close()
    finally:
        assert agent.stop() == 0
