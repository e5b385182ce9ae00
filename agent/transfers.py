"""Transfers under way, for all connections at once: bounded, shared, and expired; and the
two messages that drive them, `Offer` and `Chunk`.

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
from agent.clients import Clients
from agent.wire.protocol import (
    CHUNK_SIZE,
    FETCH_CREDIT,
    Chunk,
    Error,
    Fetch,
    Have,
    Message,
    Offer,
    transfer_time_limit,
)

log = logging.getLogger("edgebench.agent")

PER_PEER = 4
TOTAL = 16
# A transfer that receives nothing this long is closed (its owner gone or stuck).
IDLE_S = 30.0

Reply = Callable[[bytes, Message], None]


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
    """Every transfer the agent has open, by sha256; answers through `reply(client, message)`."""

    def __init__(self, cache: ModelCache, clients: Clients, reply: Reply):
        self.cache, self.clients, self.reply = cache, clients, reply
        self.open: dict[str, Transfer] = {}

    def on_offer(self, client: bytes, message: Offer, payload: list) -> None:
        """A blob offered: `Have` when it is cached, else the first `Fetch`es (or a wait for the
        controller already sending it)."""
        if self.get(client, message.sha256) is not None:
            # Its own transfer, offered again: it goes on as it was (no new requests, no more time).
            log.debug("client %s: offered %s again; the transfer goes on", client.hex(), message.sha256[:12])
            return
        try:
            if self.cache.has(message.sha256, message.kind):
                self.reply(client, Have(sha256=message.sha256, transferred=0))
                return
            transfer = self.start(client, self.clients.get(client).peer, message.sha256, message.size,
                                  CHUNK_SIZE, message.kind)
        except (TransferError, OSError) as exc:
            log.warning("client %s: refused %s: %s", client.hex(), message.sha256, exc)
            self.reply(client, Error(message=str(exc), ref=message.sha256))
            return
        if transfer is None:
            log.info("client %s: waits for %s, already arriving from another controller",
                     client.hex(), message.sha256)
            return
        log.info("client %s: receiving %s (%d bytes, from %d)", client.hex(), message.name,
                 message.size, transfer.incoming.received)
        self._request_credit(client, transfer.incoming)

    def on_chunk(self, client: bytes, message: Chunk, payload: list) -> None:
        """Bytes of an offered blob: written and hashed; the next `Fetch`, or `Have` to everyone
        waiting once the blob is whole and verified."""
        transfer = self.get(client, message.sha256)
        if transfer is None:
            self.reply(client, Error(message="chunk without an offer", ref=message.sha256))
            return
        transfer.last_active = time.monotonic()
        incoming = transfer.incoming
        try:
            complete = incoming.write(message.offset, payload[0])
        except (TransferError, OSError) as exc:
            self.finish(message.sha256, failed=True)
            log.warning("client %s: transfer %s failed: %s", client.hex(), message.sha256, exc)
            for waiting in transfer.everyone():
                self.reply(waiting, Error(message=str(exc), ref=message.sha256))
            return
        if complete:
            self.finish(message.sha256, failed=False)
            log.info("client %s: stored %s", client.hex(), message.sha256)
            for waiting in transfer.everyone():
                self.reply(waiting, Have(sha256=message.sha256, transferred=incoming.size if waiting == client else 0))
        else:
            self._request_next(client, incoming)

    def _request_credit(self, client: bytes, incoming: Incoming) -> None:
        for _ in range(FETCH_CREDIT):
            if not self._request_next(client, incoming):
                break

    def _request_next(self, client: bytes, incoming: Incoming) -> bool:
        request = incoming.next_request()
        if request is None:
            return False
        offset, length = request
        self.reply(client, Fetch(sha256=incoming.sha256, offset=offset, length=length))
        return True

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

    def expire(self, now: float) -> int:
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
                    self._request_credit(transfer.owner, transfer.incoming)
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
            self.reply(client, Error(message=reason, ref=sha256))

    def next_deadline(self) -> Optional[float]:
        """When the earliest open transfer expires if nothing arrives, or None."""
        return min((min(t.last_active + IDLE_S, t.deadline) for t in self.open.values()), default=None)

    def close(self) -> None:
        """Close every partial file (a restart deletes them)."""
        for transfer in self.open.values():
            transfer.incoming.abort()
        self.open.clear()
