"""Model transfer: push throughput on loopback against a raw ZeroMQ send of the same bytes.

Model files of 1, 50 and 200 MiB are a real model's bytes padded with random bytes
(they pass the agent's TFLite identifier check; they are never loaded). Per size, in
rotating order, `repeats` times, each time with fresh content (a new sha256):

- edgebench: `AgentClient.push_model` to a local agent, which pulls 1 MiB chunks with
  `FETCH_CREDIT` requests in flight, writes and hashes them, fsyncs and renames;
- raw: the same file read in the same 1 MiB chunks and sent DEALER -> ROUTER to another
  process, which only counts the bytes and answers once (no protocol, no disk, no hash);
- store only: the agent's own receive path (`ModelCache.receive` / `Incoming.write`, the
  same chunks, hash, fsync and rename) called in this process, without any network: the
  part of a push that is disk and hashing;
- write only: the same chunks written to a new file and fsynced, without hashing.

Every way deletes its file afterwards. On a virtual machine, writing into page cache
that has to grow costs several times more than writing into pages freed a moment ago,
so no way may keep its bytes while the others delete theirs.

Then the push is repeated for a model the agent holds: it must send 0 bytes, and take
one round trip (compared with `AgentClient.hello`, one request and one reply on the same
connection).
"""

from __future__ import annotations

import os
import time
from dataclasses import dataclass
from functools import partial
from multiprocessing import get_context
from multiprocessing.connection import Connection
from pathlib import Path
from statistics import median

import psutil
import zmq
from common import (
    DIGITS_INT8,
    Figure,
    connected_agent,
    process_cpu_seconds,
    push,
    scratch,
    self_cpu_seconds,
    source,
)

from agent.cache import ModelCache
from agent.wire.protocol import CHUNK_SIZE
from controller.client import AgentClient
from controller.models import ModelSource

NAME = "transfer"
MIB = 1 << 20
THROUGHPUT_TARGET = 0.70
# A cached push must cost less than this many request/reply round trips.
ROUND_TRIP_TARGET = 1.5
RECEIVER_TIMEOUT_MS = 60_000
ROUND_TRIPS = 30


@dataclass
class Moved:
    """One transfer: wall seconds, and CPU seconds spent by both ends together."""

    seconds: float
    cpu_s: float


def raw_receiver(conn: Connection, total: int) -> None:
    """Count `total` bytes arriving on a ROUTER socket, then answer once; nothing is stored.

    Sends its port, then the CPU seconds it spent receiving, through `conn`.
    """
    ctx = zmq.Context()
    router = ctx.socket(zmq.ROUTER)
    router.setsockopt(zmq.RCVTIMEO, RECEIVER_TIMEOUT_MS)
    router.setsockopt(zmq.LINGER, 1000)
    conn.send(router.bind_to_random_port("tcp://127.0.0.1"))
    try:
        peer, _ = router.recv_multipart()
        cpu_before = self_cpu_seconds()
        router.send_multipart([peer, b"go"])
        received = 0
        while received < total:
            _, frame = router.recv_multipart(copy=False)
            received += len(frame)
        router.send_multipart([peer, b"done"])
        conn.send(self_cpu_seconds() - cpu_before)
    finally:
        router.close()
        ctx.term()


def raw_send(path: Path, size: int) -> Moved:
    """Send the file's bytes in CHUNK_SIZE frames to a fresh receiver process."""
    ctx = get_context("spawn")
    receiver, sender = ctx.Pipe(duplex=False)
    process = ctx.Process(target=raw_receiver, args=(sender, size), daemon=True)
    process.start()
    sender.close()
    dealer = zmq.Context.instance().socket(zmq.DEALER)
    dealer.setsockopt(zmq.RCVTIMEO, RECEIVER_TIMEOUT_MS)
    dealer.setsockopt(zmq.LINGER, 0)
    fd = os.open(path, os.O_RDONLY)
    try:
        if not receiver.poll(RECEIVER_TIMEOUT_MS / 1000):
            raise TimeoutError("raw receiver did not start")
        dealer.connect(f"tcp://127.0.0.1:{receiver.recv()}")
        dealer.send(b"start")
        dealer.recv()  # connected both ways: time only the bytes
        start, cpu_before = time.perf_counter(), self_cpu_seconds()
        for offset in range(0, size, CHUNK_SIZE):
            dealer.send(os.pread(fd, CHUNK_SIZE, offset), copy=False)
        dealer.recv()
        seconds, sender_cpu = time.perf_counter() - start, self_cpu_seconds() - cpu_before
        if not receiver.poll(RECEIVER_TIMEOUT_MS / 1000):
            raise TimeoutError("raw receiver did not report")
        return Moved(seconds, sender_cpu + receiver.recv())
    finally:
        os.close(fd)
        dealer.close()
        process.join(10.0)
        if process.is_alive():
            process.kill()
            process.join()
        receiver.close()


def store_only(model: ModelSource, cache: ModelCache) -> Moved:
    """The agent's receive path storing, hashing, fsyncing and renaming the file; no network."""
    fd = os.open(model.path, os.O_RDONLY)
    try:
        start, cpu_before = time.perf_counter(), self_cpu_seconds()
        incoming = cache.receive(model.sha256, model.size, CHUNK_SIZE)
        for offset in range(0, model.size, CHUNK_SIZE):
            incoming.write(offset, os.pread(fd, CHUNK_SIZE, offset))
        moved = Moved(time.perf_counter() - start, self_cpu_seconds() - cpu_before)
    finally:
        os.close(fd)
    cache.path(model.sha256).unlink()
    return moved


def write_only(path: Path, size: int, target: Path) -> Moved:
    """The same chunks written to a new file and fsynced, without hashing: the disk's share."""
    fd = os.open(path, os.O_RDONLY)
    try:
        start, cpu_before = time.perf_counter(), self_cpu_seconds()
        with open(target, "wb") as out:
            for offset in range(0, size, CHUNK_SIZE):
                out.write(os.pread(fd, CHUNK_SIZE, offset))
            out.flush()
            os.fsync(out.fileno())
        moved = Moved(time.perf_counter() - start, self_cpu_seconds() - cpu_before)
    finally:
        os.close(fd)
    target.unlink()
    return moved


def pushed(client: AgentClient, agent: psutil.Process, agent_cache: ModelCache, model: ModelSource) -> Moved:
    """`push_model` of a model the agent lacks; CPU of this process (the controller) and the agent.

    The agent's copy is deleted afterwards, like the other ways' files.
    """
    start, cpu_before, agent_before = time.perf_counter(), self_cpu_seconds(), process_cpu_seconds(agent)
    sent = push(client, model)
    seconds = time.perf_counter() - start
    cpu = self_cpu_seconds() - cpu_before + process_cpu_seconds(agent) - agent_before
    if sent != model.size:
        raise RuntimeError(f"pushed {sent} of {model.size} bytes: the agent already held a fresh model")
    agent_cache.path(model.sha256).unlink()
    return Moved(seconds, cpu)


def padded_model(path: Path, size: int) -> None:
    """A real model's bytes followed by random bytes up to `size`."""
    head = DIGITS_INT8.read_bytes()
    with open(path, "wb") as f:
        f.write(head)
        f.write(os.urandom(size - len(head)))


def refresh(path: Path, repeat: int) -> ModelSource:
    """New content (and so a new sha256) for the same file: its last 8 bytes become `repeat`."""
    with open(path, "r+b") as f:
        f.seek(-8, os.SEEK_END)
        f.write(repeat.to_bytes(8, "little"))
    return source(path)


def run(quick: bool) -> list[Figure]:
    """Throughput per size against raw ZeroMQ, then the cached push against a round trip."""
    repeats = {1: 9, 50: 5, 200: 3} if quick else {1: 15, 50: 9, 200: 5}
    figures: list[Figure] = []
    with scratch(NAME) as tmp, connected_agent(tmp / "agent") as (agent, client):
        agent_process = psutil.Process(agent.process.pid)
        agent_cache = ModelCache(agent.data_dir / "models")  # the agent's own cache directory
        cache = ModelCache(tmp / "store-only")
        for mib, count in repeats.items():
            path = tmp / f"padded_{mib}mib.tflite"
            padded_model(path, mib * MIB)
            seen: dict[str, list[Moved]] = {"raw": [], "store": [], "write": [], "edgebench": []}
            for repeat in range(count):
                model = refresh(path, repeat)
                ways = [("raw", partial(raw_send, path, model.size)), ("store", partial(store_only, model, cache)),
                        ("write", partial(write_only, path, model.size, tmp / "written")),
                        ("edgebench", partial(pushed, client, agent_process, agent_cache, model))]
                shift = repeat % len(ways)
                for name, move in ways[shift:] + ways[:shift]:
                    seen[name].append(move())
            path.unlink()
            rate = {name: median([mib * MIB / m.seconds / 1e6 for m in moved]) for name, moved in seen.items()}
            # Per repeat, edgebench against the raw send measured next to it.
            ratio = median([raw.seconds / ours.seconds for ours, raw in zip(seen["edgebench"], seen["raw"])])
            print(f"  {mib} MiB x{count}: " + ", ".join(f"{name} {value:.0f} MB/s" for name, value in rate.items()),
                  flush=True)
            figures += [
                Figure(NAME, f"push {mib} MiB", rate["edgebench"], "MB/s", "raw ZeroMQ send", rate["raw"],
                       f"ratio >= {THROUGHPUT_TARGET:g}", ratio >= THROUGHPUT_TARGET, paired_ratio=ratio),
                Figure(NAME, f"{mib} MiB: agent store path alone (write, sha256, fsync)", rate["store"], "MB/s",
                       "raw ZeroMQ send", rate["raw"]),
                Figure(NAME, f"{mib} MiB: plain write + fsync alone", rate["write"], "MB/s", "raw ZeroMQ send",
                       rate["raw"]),
            ]
            if mib == max(repeats):  # CPU per byte from the largest size only: the agent's CPU comes in 10 ms ticks
                cpu = {name: sum(m.cpu_s for m in seen[name]) * 1e3 / (count * mib * MIB / 1e6)
                       for name in ("edgebench", "raw")}
                figures.append(Figure(NAME, f"{mib} MiB: CPU per MB moved, both ends", cpu["edgebench"], "ms/MB",
                                      "raw ZeroMQ send", cpu["raw"]))
        figures += cached_push(client, source(DIGITS_INT8))
    return figures


def cached_push(client: AgentClient, model: ModelSource) -> list[Figure]:
    """A push of a model the agent holds: bytes sent, and time against a hello round trip."""
    push(client, model)
    pushes, hellos, sent = [], [], 0
    for _ in range(ROUND_TRIPS):
        start = time.perf_counter()
        sent += push(client, model)
        pushes.append(time.perf_counter() - start)
        start = time.perf_counter()
        client.hello()
        hellos.append(time.perf_counter() - start)
    push_us, hello_us = median(pushes) * 1e6, median(hellos) * 1e6
    return [
        Figure(NAME, "cached push: time", push_us, "us", "hello round trip", hello_us,
               f"ratio <= {ROUND_TRIP_TARGET:g} (one round trip)", push_us / hello_us <= ROUND_TRIP_TARGET),
        Figure(NAME, f"cached push: bytes sent ({ROUND_TRIPS} pushes)", sent, "B", "model size", model.size,
               "0 bytes", sent == 0),
    ]
