"""Transfers under way, for all connections at once: bounded, shared, and expired when idle.

Limits count transfers per connection and for the whole agent (client ids are free to
invent, so a per-id limit alone bounds nothing). Two controllers offering the same new
blob share one transfer: the first one sends, the others wait for its `Have`, and take
over if it goes silent. A transfer that fails deletes its partial file.
"""

from __future__ import annotations

import logging
import time
from dataclasses import dataclass, field
from typing import Callable, Optional

from agent.cache import Incoming, ModelCache, TransferError

log = logging.getLogger("edgebench.agent")

PER_CLIENT = 4
TOTAL = 16
# A transfer that receives nothing this long is closed (its owner gone or stuck).
IDLE_S = 30.0

Request = Callable[[bytes, Incoming], bool]


@dataclass
class Transfer:
    """One blob arriving: who sends it, who waits for it, when it last moved."""

    incoming: Incoming
    owner: bytes
    waiters: list[bytes] = field(default_factory=list)
    last_active: float = field(default_factory=time.monotonic)

    def everyone(self) -> list[bytes]:
        """The sender and every controller waiting for this blob."""
        return [self.owner, *self.waiters]


class Transfers:
    """Every transfer the agent has open, by sha256."""

    def __init__(self, cache: ModelCache):
        self.cache = cache
        self.open: dict[str, Transfer] = {}

    def owned_by(self, client: bytes) -> int:
        """Transfers `client` is sending now."""
        return sum(1 for t in self.open.values() if t.owner == client)

    def start(self, client: bytes, sha256: str, size: int, chunk_size: int, kind: str) -> Optional[Transfer]:
        """A new transfer owned by `client`, or None when `client` now waits for another's.

        Raises TransferError when a limit, the quota or the disk refuses it.
        """
        current = self.open.get(sha256)
        if current is not None:
            if current.owner == client:  # the same controller offering again: start over
                current.incoming.abort()
                del self.open[sha256]
            else:
                if client not in current.waiters:
                    current.waiters.append(client)
                return None
        if self.owned_by(client) >= PER_CLIENT:
            raise TransferError(f"at most {PER_CLIENT} transfers at once per connection")
        if len(self.open) >= TOTAL:
            raise TransferError(f"the agent has {TOTAL} transfers open; try again when one ends")
        for name in self.cache.make_room(size, keep=set(self.open) | {sha256}):
            log.info("cache: evicted %s (least recently used)", name)
        incoming = self.cache.receive(sha256, size, chunk_size, kind)
        transfer = self.open[sha256] = Transfer(incoming, client)
        return transfer

    def get(self, client: bytes, sha256: str) -> Optional[Transfer]:
        """The transfer `client` sends for `sha256`, or None."""
        transfer = self.open.get(sha256)
        return transfer if transfer is not None and transfer.owner == client else None

    def finish(self, sha256: str, failed: bool) -> Optional[Transfer]:
        """Forget a transfer that completed or failed (a failed one's partial file goes)."""
        transfer = self.open.pop(sha256, None)
        if transfer is not None and failed:
            transfer.incoming.fail()
        return transfer

    def expire(self, now: float, request: Request) -> int:
        """Close idle transfers; one that others wait for passes to the first of them.

        Returns how many were closed.
        """
        closed = 0
        for sha256, transfer in list(self.open.items()):
            if now - transfer.last_active <= IDLE_S:
                continue
            if transfer.waiters:
                transfer.owner = transfer.waiters.pop(0)
                transfer.last_active = now
                transfer.incoming.requested = transfer.incoming.received
                log.info("transfer %s: sender silent, continued by the next controller", sha256[:12])
                request(transfer.owner, transfer.incoming)
                continue
            log.info("transfer %s: idle for %.0f s, closed", sha256[:12], IDLE_S)
            transfer.incoming.abort()
            del self.open[sha256]
            closed += 1
        return closed

    def next_deadline(self) -> Optional[float]:
        """When the earliest open transfer expires if nothing arrives, or None."""
        return min((t.last_active + IDLE_S for t in self.open.values()), default=None)

    def close(self) -> None:
        """Close every partial file (kept for a resume)."""
        for transfer in self.open.values():
            transfer.incoming.abort()
        self.open.clear()
