"""Transfers under way, for all connections at once: bounded, shared, and expired.

Limits count transfers per peer (a controller's CURVE key, or its address without one:
connection ids are free to invent, so a per-id limit alone bounds nothing) and for the
whole agent; a peer at its limit that offers another blob gives up its least active
transfer for it, so that its own abandoned transfers never lock it out. Each transfer has
an absolute deadline from its size, and is closed when no chunk arrives for `IDLE_S`;
offering the blob again resets neither. Two controllers offering the same new blob share
one transfer: the first one sends, the others wait for its `Have`, and take over if it
goes silent. A transfer that fails, expires or is abandoned deletes its partial file, and
the space the open transfers still need is reserved, so that two of them cannot fill the
disk together.
"""

from __future__ import annotations

import logging
import time
from dataclasses import dataclass, field
from typing import Callable, Optional

from agent.cache import Incoming, ModelCache, TransferError
from agent.wire.protocol import transfer_time_limit

log = logging.getLogger("edgebench.agent")

PER_PEER = 4
TOTAL = 16
# A transfer that receives nothing this long is closed (its owner gone or stuck).
IDLE_S = 30.0

Request = Callable[[bytes, Incoming], bool]
Refuse = Callable[[bytes, str, str], None]


@dataclass
class Transfer:
    """One blob arriving: who sends it, who waits for it, when it last moved."""

    incoming: Incoming
    owner: bytes
    peer: str
    waiters: list[bytes] = field(default_factory=list)
    started: float = field(default_factory=time.monotonic)
    last_active: float = field(default_factory=time.monotonic)
    deadline: float = 0.0

    def everyone(self) -> list[bytes]:
        """The sender and every controller waiting for this blob."""
        return [self.owner, *self.waiters]


class Transfers:
    """Every transfer the agent has open, by sha256; `refuse(client, sha256, reason)` tells a
    controller that a transfer it sent or waited for was closed."""

    def __init__(self, cache: ModelCache, refuse: Refuse):
        self.cache = cache
        self.refuse = refuse
        self.open: dict[str, Transfer] = {}

    def owned_by(self, peer: str) -> int:
        """Transfers `peer` is sending now, over any of its connections."""
        return sum(1 for t in self.open.values() if t.peer == peer)

    def start(self, client: bytes, peer: str, sha256: str, size: int, chunk_size: int,
              kind: str) -> Optional[Transfer]:
        """A new transfer owned by `client`, or None when `client` now waits for another's
        (the caller handles an owner offering its own transfer again).

        Raises TransferError when a limit, the quota or the disk refuses it.
        """
        current = self.open.get(sha256)
        if current is not None:
            if client not in current.waiters:
                current.waiters.append(client)
            return None
        if self.owned_by(peer) >= PER_PEER:
            oldest = min((t for t in self.open.values() if t.peer == peer), key=lambda t: t.last_active)
            self._close(oldest.incoming.sha256, f"transfer of {oldest.incoming.sha256[:12]} closed: the same "
                                                f"controller offered a newer one (at most {PER_PEER} at once)")
        if len(self.open) >= TOTAL:
            raise TransferError(f"the agent has {TOTAL} transfers open; try again when one ends")
        for name in self.cache.make_room(size, keep=set(self.open) | {sha256}):
            log.info("cache: evicted %s (least recently used)", name)
        incoming = self.cache.receive(sha256, size, chunk_size, kind, reserved=self.reserved())
        now = time.monotonic()
        transfer = self.open[sha256] = Transfer(incoming, client, peer, started=now, last_active=now,
                                                deadline=now + transfer_time_limit(size))
        return transfer

    def reserved(self) -> int:
        """Bytes the open transfers still have to write."""
        return sum(t.incoming.size - t.incoming.received for t in self.open.values())

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
        """Close transfers past their deadline, and idle ones nobody else waits for (their
        partial files deleted, everyone involved told why); an idle one that others wait for
        passes to the first of them. Returns how many were closed.
        """
        closed = 0
        for sha256, transfer in list(self.open.items()):
            if now >= transfer.deadline:
                reason = (f"transfer of {sha256[:12]} took longer than its deadline of "
                          f"{transfer.deadline - transfer.started:.0f} s; offer it again")
            elif now - transfer.last_active > IDLE_S:
                if transfer.waiters:
                    transfer.owner = transfer.waiters.pop(0)
                    transfer.last_active = now
                    transfer.incoming.requested = transfer.incoming.received
                    log.info("transfer %s: sender silent, continued by the next controller", sha256[:12])
                    request(transfer.owner, transfer.incoming)
                    continue
                reason = f"transfer of {sha256[:12]} received nothing for {IDLE_S:.0f} s; abandoned"
            else:
                continue
            self._close(sha256, reason)
            closed += 1
        return closed

    def _close(self, sha256: str, reason: str) -> None:
        """End a transfer that will not complete: its partial file goes, everyone is told."""
        transfer = self.finish(sha256, failed=True)
        if transfer is None:
            return
        log.info("%s (%d of %d bytes received; partial file deleted)", reason,
                 transfer.incoming.received, transfer.incoming.size)
        for client in transfer.everyone():
            self.refuse(client, sha256, reason)

    def next_deadline(self) -> Optional[float]:
        """When the earliest open transfer expires if nothing arrives, or None."""
        return min((min(t.last_active + IDLE_S, t.deadline) for t in self.open.values()), default=None)

    def close(self) -> None:
        """Close every partial file (a restart deletes them)."""
        for transfer in self.open.values():
            transfer.incoming.abort()
        self.open.clear()
