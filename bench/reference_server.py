"""The footprint benchmark's yardstick: the least a Python ZeroMQ daemon can be.

A ROUTER socket with the agent's libzmq heartbeat that sleeps in `poll` and answers
edgebench `Ping`s with `Pong`s, nothing else. Prints the agent's ready line with its
endpoint, then serves until terminated or `lifetime_s` has passed.

    python bench/reference_server.py HEARTBEAT_MS LIFETIME_S
"""

from __future__ import annotations

import sys
import time

import zmq

from agent.wire import protocol
from agent.wire.protocol import READY_PREFIX, Ping, Pong


def serve(heartbeat_ms: int, lifetime_s: float) -> None:
    """Answer pings on a free loopback port until `lifetime_s` has passed."""
    ctx = zmq.Context()
    router = ctx.socket(zmq.ROUTER)
    router.setsockopt(zmq.HEARTBEAT_IVL, heartbeat_ms)
    router.setsockopt(zmq.HEARTBEAT_TIMEOUT, 3 * heartbeat_ms)
    router.setsockopt(zmq.LINGER, 0)
    port = router.bind_to_random_port("tcp://127.0.0.1")
    print(f"{READY_PREFIX}tcp://127.0.0.1:{port}", flush=True)
    deadline = time.monotonic() + lifetime_s
    try:
        while (remaining := deadline - time.monotonic()) > 0:
            if not router.poll(int(remaining * 1000) + 1):
                continue
            peer, *frames = router.recv_multipart()
            message, _ = protocol.decode(frames)
            if isinstance(message, Ping):
                router.send_multipart([peer, *protocol.encode(Pong(seq=message.seq))])
    finally:
        router.close()
        ctx.term()


if __name__ == "__main__":
    serve(int(sys.argv[1]), float(sys.argv[2]))
