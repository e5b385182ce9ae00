import msgspec
import pytest

from agent.wire import protocol
from agent.wire.protocol import CellSpec, Chunk, Offer, Ping, RunJob
from agent.wire.records import Settings


def test_round_trip_keeps_message_and_payload():
    frames = protocol.encode(Chunk(sha256="ab" * 32, offset=4096), b"\x00model-bytes")
    message, payload = protocol.decode(frames)
    assert message == Chunk(sha256="ab" * 32, offset=4096)
    assert payload == [b"\x00model-bytes"]


def test_nested_specs_survive_the_wire():
    job = RunJob(job_id="j1", cells=[CellSpec(model_sha256="cd" * 32, model_name="m.tflite",
                                              delegate="cpu", threads=2,
                                              settings=Settings(num_runs=7))])
    message, _ = protocol.decode(protocol.encode(job))
    assert message.cells[0].settings.num_runs == 7
    assert message.cells[0].threads == 2


@pytest.mark.parametrize("frames, expected", [
    ([b"OTHER/1", msgspec.msgpack.encode({"type": "ping", "seq": 1})], "unsupported protocol"),
    ([protocol.PROTOCOL], "at least 2 frames"),
    ([protocol.PROTOCOL, b"\xc1\xff"], "malformed"),
    ([protocol.PROTOCOL, msgspec.msgpack.encode({"type": "launch", "x": 1})], "malformed"),
    ([protocol.PROTOCOL, msgspec.msgpack.encode({"type": "ping", "seq": "one"})], "malformed"),
])
def test_bad_frames_raise_protocol_error(frames, expected):
    with pytest.raises(protocol.ProtocolError, match=expected):
        protocol.decode(frames)


def test_newer_peers_extra_fields_are_ignored():
    raw = msgspec.msgpack.encode({"type": "offer", "sha256": "ef" * 32, "size": 10, "name": "m",
                                  "added_in_a_later_minor": True})
    message, _ = protocol.decode([protocol.PROTOCOL, raw])
    assert message == Offer(sha256="ef" * 32, size=10, name="m")


def test_ping_is_small():
    assert len(protocol.encode(Ping(seq=1))[1]) < 32


def test_a_job_with_a_null_setting_is_refused():
    # null marks a setting a phone's tool did not honour in a stored cell; a request gives them all
    spec = CellSpec(model_sha256="a" * 64, model_name="m.tflite", delegate="cpu", threads=1,
                    settings=Settings(num_runs=None))
    assert protocol.problem(RunJob(job_id="j", cells=[spec]), []) == "settings must not be null: num_runs"
    fine = CellSpec(model_sha256="a" * 64, model_name="m.tflite", delegate="cpu", threads=1, settings=Settings())
    assert protocol.problem(RunJob(job_id="j", cells=[fine]), []) is None
