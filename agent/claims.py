"""Which controller each job belongs to, and the messages that claim, acknowledge and cancel
jobs: `RunJob` (a new job, or a re-attach to one the agent holds), `Ack` and `Cancel`.

A job belongs to the controller that claimed it last; another one may take it over only
once that controller is gone. Results go to the owner; a job whose owner was forgotten
keeps its results in the outbox until a controller claims it again.
"""

from __future__ import annotations

import logging
import threading
import time
from typing import Callable, Optional

from agent.cache import ModelCache
from agent.clients import Clients
from agent.jobs import JobRunner
from agent.outbox import Outbox
from agent.replay import Replays
from agent.wire.protocol import Ack, AndroidTarget, Cancel, Error, JobAccepted, Message, RunJob
from agent.wire.text import quote

log = logging.getLogger("edgebench.agent")

# Jobs waiting for the job thread at once (each holds its cells in memory).
MAX_QUEUED_JOBS = 32
# The outbox is pruned at start and after this many accepted jobs.
PRUNE_EVERY = 32
# A refused claim on a job is answered once per this interval per connection.
REFUSE_INTERVAL_S = 1.0

Reply = Callable[[bytes, Message], None]
PhoneAllowed = Callable[[bytes, AndroidTarget, str], bool]


class Claims:
    """Jobs and their owners; answers through `reply(client, message)`."""

    def __init__(self, outbox: Outbox, replays: Replays, jobs: JobRunner, cache: ModelCache, clients: Clients,
                 reply: Reply, phone_allowed: PhoneAllowed, stopping: threading.Event):
        self.outbox, self.replays, self.jobs, self.cache = outbox, replays, jobs, cache
        self.clients, self.reply, self.phone_allowed, self.stopping = clients, reply, phone_allowed, stopping
        self.owners: dict[str, bytes] = {}
        self._models: dict[str, list[str]] = {}
        self._accepted = 0

    def on_run(self, client: bytes, message: RunJob, payload: list) -> None:
        """Accept a new job (recorded in the outbox, its models pinned), or re-attach to one held."""
        if message.android is not None and not self.phone_allowed(client, message.android, message.job_id):
            return
        if self.outbox.known(message.job_id):
            self._reattach(client, message)
            return
        refusal = self._refusal()
        if refusal is not None:
            self.reply(client, Error(message=refusal, ref=message.job_id))
            return
        self._accepted += 1
        if self._accepted % PRUNE_EVERY == 0:  # a walk over the outbox: not for every job
            self.outbox.prune()
        try:
            self.outbox.accept(message)
        except OSError as exc:
            log.warning("job %s: refused: cannot write it to the outbox: %s", message.job_id, exc)
            self.reply(client, Error(message=f"the agent cannot record the job on its disk ({exc.strerror or exc}); "
                                             "try again when it has space", ref=message.job_id))
            return
        self.owners[message.job_id] = client
        models = [spec.model_sha256 for spec in message.cells]
        self._models[message.job_id] = models
        self.cache.pin(models)
        self.reply(client, JobAccepted(job_id=message.job_id, cells=len(message.cells)))
        self.jobs.submit(client, message)

    def _refusal(self) -> Optional[str]:
        """Why no new job can be accepted now, or None."""
        if self.stopping.is_set():
            return "agent is stopping; not accepting jobs"
        stalled = self.jobs.progress.stalled()
        if stalled is not None:
            return f"{stalled}; not accepting jobs until the agent restarts"
        if self.jobs.queued() >= MAX_QUEUED_JOBS:
            return f"the agent has {MAX_QUEUED_JOBS} jobs queued; try again later"
        return None

    def _reattach(self, client: bytes, message: RunJob) -> None:
        """The same job again: a controller reconnecting. It gets what it has not acknowledged,
        unless another controller that is still connected owns the job."""
        owner = self.owners.get(message.job_id)
        if owner is not None and owner != client:
            state = self.clients.alive(owner)
            if state is not None:
                claimant = self.clients.get(client)
                now = time.monotonic()
                if now - claimant.refused_at < REFUSE_INTERVAL_S:
                    return  # a claim flood gets one refusal per interval, not one per message
                claimant.refused_at = now
                heard = now - state.last_seen
                log.warning("job %s: claim by client %s refused: owned by client %s", message.job_id,
                            client.hex(), owner.hex())
                self.reply(client, Error(
                    message=f"job {quote(message.job_id)} is owned by another controller (client "
                            f"{owner.hex()[:12]}, heard from {heard:.0f} s ago); it can be taken over "
                            "once that controller is gone", ref=message.job_id))
                return
        if owner != client:
            log.info("job %s: re-attached by client %s", message.job_id, client.hex())
        self.owners[message.job_id] = client
        self.reply(client, JobAccepted(job_id=message.job_id, cells=len(message.cells)))
        self.replays.request(message.job_id, client)

    def on_ack(self, client: bytes, message: Ack, payload: list) -> None:
        """Results the controller stored: gone from the outbox (the whole job with `done`)."""
        self.outbox.ack(message.job_id, message.cells, message.done)
        self.replays.acked(message.job_id, len(message.cells) + message.done)
        if message.done:
            self.owners.pop(message.job_id, None)
            self.replays.forget(message.job_id)

    def on_cancel(self, client: bytes, message: Cancel, payload: list) -> None:
        """Stop a queued or running job, unless another controller still connected owns it."""
        owner = self.owners.get(message.job_id)
        if owner is not None and owner != client and self.clients.alive(owner) is not None:
            self.reply(client, Error(message=f"job {quote(message.job_id)} is owned by another controller",
                                     ref=message.job_id))
            return
        if self.jobs.cancel(message.job_id):
            log.info("job %s: cancel asked by client %s", message.job_id, client.hex())
            self.owners[message.job_id] = client
        else:
            self.reply(client, Error(message=f"job {quote(message.job_id)} is not running", ref=message.job_id))

    def ahead(self, client: bytes) -> Optional[int]:
        """Jobs the agent runs before the first of `client`'s queued jobs (None: none waits)."""
        mine = {job_id for job_id, owner in self.owners.items() if owner == client}
        return self.jobs.ahead(mine) if mine else None

    def recipient(self, job_id: str, asker: bytes, done: bool) -> Optional[bytes]:
        """Who gets a message of the job thread: the job's owner (None: nobody now, it waits in
        the outbox), or for a message of no job, who asked. A job's end unpins its models."""
        if done:
            self.cache.unpin(self._models.pop(job_id, []))
        return self.owners.get(job_id) if job_id else asker

    def forget(self, clients: set[bytes]) -> None:
        """Connections forgotten: their jobs have no owner until claimed again."""
        for job_id in [job for job, owner in self.owners.items() if owner in clients]:
            del self.owners[job_id]
