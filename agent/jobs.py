"""Jobs: the cells a controller asked for, run one after another on a worker thread.

The thread never touches the agent's ROUTER socket (ZeroMQ sockets are not thread
safe): it hands each outgoing message to `send`, which the server wires to an inproc
socket its own loop forwards from.
"""

from __future__ import annotations

import logging
import queue
import threading
from typing import Callable, Optional

import msgspec

from agent.cache import ModelCache
from agent.isolation import CellRunner
from agent.protocol import CellDone, CellSpec, CellStarted, Evaluation, JobDone, Message, RunJob
from agent.runtime import CPU_DELEGATES, Runtime
from agent.schema import Cell

log = logging.getLogger("edgebench.agent")

Send = Callable[[bytes, Message], None]


def cell_template(spec: CellSpec, size: int) -> Cell:
    """The cell as known before measuring: what it is, and not yet a result."""
    return Cell(
        model=spec.model_name, model_sha256=spec.model_sha256, model_size_bytes=size,
        delegate=spec.delegate, threads=spec.threads, status="failed",
        error="cell did not start",
    )


class JobRunner:
    """Runs accepted jobs in order on one thread; cells run in child processes."""

    def __init__(self, cache: ModelCache, runtime: Optional[Runtime], send: Send, root: str = "/"):
        self.cache = cache
        self.runtime = runtime
        self.send = send
        self.root = root
        self._cells: Optional[CellRunner] = None
        self._queue: queue.Queue[Optional[tuple]] = queue.Queue()
        self._stopping = threading.Event()
        self._thread = threading.Thread(target=self._work, name="jobs", daemon=True)
        self._thread.start()

    def submit(self, client: bytes, job: RunJob) -> None:
        self._queue.put((client, job))

    def stop(self) -> None:
        """Finish the running cell, skip the rest, and end the thread."""
        self._stopping.set()
        self._queue.put(None)
        self._thread.join()

    def _work(self) -> None:
        while True:
            item = self._queue.get()
            if item is None:
                return
            client, job = item
            log.info("job %s: %d cells", job.job_id, len(job.cells))
            indices = job.indices or range(len(job.cells))
            for index, spec in zip(indices, job.cells):
                if self._stopping.is_set():
                    log.info("job %s: stopped before cell %d", job.job_id, index)
                    return
                cell, evaluation = self._run_cell(client, job.job_id, index, spec)
                log.info("job %s cell %d %s %s x%d: %s%s", job.job_id, index, spec.model_name,
                         spec.delegate, spec.threads, cell.status,
                         f" ({cell.error})" if cell.error else "")
                self.send(client, CellDone(job_id=job.job_id, index=index, cell=cell,
                                           evaluation=evaluation))
            self.send(client, JobDone(job_id=job.job_id))

    def _run_cell(self, client: bytes, job_id: str, index: int,
                  spec: CellSpec) -> tuple[Cell, Optional[Evaluation]]:
        path = self.cache.path(spec.model_sha256)
        size = path.stat().st_size if path.exists() else 0
        template = cell_template(spec, size)
        problem = self._check(spec, path.exists())
        if problem:
            return msgspec.structs.replace(template, error=problem), None
        dataset = self.cache.path(spec.dataset_sha256, "dataset") if spec.dataset_sha256 else None
        if dataset is not None and not dataset.exists():
            return msgspec.structs.replace(template, error="dataset was not transferred to the agent"), None
        if self._cells is None:
            self._cells = CellRunner(self.runtime, self.root)
        return self._cells.run(
            str(path), spec, template,
            on_start=lambda pid: self.send(client, CellStarted(job_id=job_id, index=index, pid=pid)),
            dataset_path=str(dataset) if dataset else None,
        )

    def _check(self, spec: CellSpec, have_model: bool) -> Optional[str]:
        if self.runtime is None:
            return "no LiteRT interpreter installed on the agent"
        if not have_model:
            return f"model {spec.model_name} was not transferred to the agent"
        if spec.delegate not in CPU_DELEGATES:
            return f"delegate {spec.delegate!r} is not available on this agent ({', '.join(CPU_DELEGATES)})"
        if spec.threads < 1:
            return f"invalid thread count {spec.threads}"
        return None


def delegates_offered(runtime: Optional[Runtime]) -> list[str]:
    """Delegate names this agent can run cells with."""
    return list(CPU_DELEGATES) if runtime else []
