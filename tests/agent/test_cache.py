import hashlib

import pytest

from agent.cache import ModelCache, TransferError

CHUNK = 16


def fake_model(size=100):
    body = bytes(range(256)) * (size // 256 + 1)
    return (b"\x1c\x00\x00\x00TFL3" + body)[:size]


def receive_all(cache, data, chunk=CHUNK):
    incoming = cache.receive(hashlib.sha256(data).hexdigest(), len(data), chunk)
    done = False
    while (request := incoming.next_request()) is not None:
        offset, length = request
        done = incoming.write(offset, data[offset:offset + length])
    return incoming, done


def test_chunks_become_a_verified_model(tmp_path):
    cache, data = ModelCache(tmp_path), fake_model()
    _, done = receive_all(cache, data)
    sha = hashlib.sha256(data).hexdigest()
    assert done and cache.has(sha)
    assert cache.path(sha).read_bytes() == data
    assert not list(tmp_path.glob("*.part"))


def test_partial_transfer_resumes_from_last_whole_chunk(tmp_path):
    cache, data = ModelCache(tmp_path), fake_model()
    sha = hashlib.sha256(data).hexdigest()
    first = cache.receive(sha, len(data), CHUNK)
    for _ in range(3):
        offset, length = first.next_request()
        first.write(offset, data[offset:offset + length])
    first.file.write(data[48:55])  # half a chunk, as a dropped connection leaves it
    first.abort()

    second = cache.receive(sha, len(data), CHUNK)
    assert second.received == 3 * CHUNK
    assert second.next_request() == (48, CHUNK)
    done = second.write(48, data[48:48 + CHUNK])
    while (request := second.next_request()) is not None:
        done = second.write(request[0], data[request[0]:request[0] + request[1]])
    assert done and cache.path(sha).read_bytes() == data


def test_hash_mismatch_keeps_nothing(tmp_path):
    cache, data = ModelCache(tmp_path), fake_model()
    incoming = cache.receive("0" * 64, len(data), CHUNK)
    with pytest.raises(TransferError, match="hash mismatch"):
        while (request := incoming.next_request()) is not None:
            incoming.write(request[0], data[request[0]:request[0] + request[1]])
    assert not cache.has("0" * 64)
    assert not list(tmp_path.iterdir())


def test_payload_that_is_not_tflite_is_refused_at_first_chunk(tmp_path):
    data = b"PK\x03\x04 this is a zip file" * 4
    with pytest.raises(TransferError, match="not a TFLite flatbuffer"):
        receive_all(ModelCache(tmp_path), data)


@pytest.mark.parametrize("name", ["../../etc/passwd", "A" * 64, "abc", "0" * 63 + "/"])
def test_names_never_become_paths(tmp_path, name):
    with pytest.raises(TransferError, match="invalid model id"):
        ModelCache(tmp_path).receive(name, 10, CHUNK)


def test_out_of_order_and_oversized_chunks_are_refused(tmp_path):
    data = fake_model()
    incoming = ModelCache(tmp_path).receive(hashlib.sha256(data).hexdigest(), len(data), CHUNK)
    with pytest.raises(TransferError, match="out of order"):
        incoming.write(CHUNK, data[CHUNK:2 * CHUNK])
    with pytest.raises(TransferError, match="exceeds size"):
        incoming.write(0, data + b"extra")
