"""Jobs: the cells a controller asked for, run one after another on a worker thread.

The thread never touches the agent's ROUTER socket (ZeroMQ sockets are not thread
safe): it hands each outgoing message to `send`, which the server wires to an inproc
socket its own loop forwards from.
"""

from __future__ import annotations

import contextlib
import logging
import queue
import threading
from typing import Callable, Optional

import msgspec

from agent.android.adb import AdbError
from agent.android.runner import AndroidRunner
from agent.cache import ModelCache
from agent.facts import SysRoot
from agent.isolation import CellRunner
from agent.protocol import (
    AndroidTarget,
    CellDone,
    CellSpec,
    CellStarted,
    Cooling,
    Error,
    Evaluation,
    InfoReply,
    InfoRequest,
    JobDone,
    Message,
    RunJob,
)
from agent.runtime import Runtime, builtin_delegates
from agent.schema import Cell, DeviceState
from agent.thermal import Governor, cool_down

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
        self._android: Optional[AndroidRunner] = None
        self._queue: queue.Queue[Optional[tuple]] = queue.Queue()
        self._stopping = threading.Event()
        self._thread = threading.Thread(target=self._work, name="jobs", daemon=True)
        self._thread.start()

    def submit(self, client: bytes, job: RunJob) -> None:
        self._queue.put((client, job))

    def submit_info(self, client: bytes, request: InfoRequest) -> None:
        """Read a phone's facts on the job thread, which owns the ADB connections."""
        self._queue.put((client, request))

    def stop(self) -> None:
        """Finish the running cell, skip the rest, and end the thread."""
        self._stopping.set()
        self._queue.put(None)
        self._thread.join()
        if self._android is not None:
            self._android.close()

    def _work(self) -> None:
        while True:
            item = self._queue.get()
            if item is None:
                return
            client, job = item
            if isinstance(job, InfoRequest):
                self.send(client, self._phone_facts(job.android))
                continue
            log.info("job %s: %d cells", job.job_id, len(job.cells))
            indices = job.indices or range(len(job.cells))
            try:
                with contextlib.ExitStack() as stack:
                    if job.governor:
                        stack.enter_context(Governor(SysRoot(self.root), job.governor))
                    if not self._run_cells(client, job, indices):
                        return
            except Exception as exc:  # an agent fault ends this job, never the job thread
                log.exception("job %s: failed", job.job_id)
                self.send(client, JobDone(job_id=job.job_id, interrupted=f"agent error: {exc}"))
                continue
            self.send(client, JobDone(job_id=job.job_id))

    def _run_cells(self, client: bytes, job: RunJob, indices) -> bool:
        """Run the job's cells in order; False when the runner stopped part way."""
        for index, spec in zip(indices, job.cells):
            if self._stopping.is_set():
                log.info("job %s: stopped before cell %d", job.job_id, index)
                return False
            cooldown = self._cool_down(client, job.job_id, index, spec)
            cell, evaluation = (self._run_on_phone(job.android, spec) if job.android is not None
                                else self._run_cell(client, job.job_id, index, spec))
            if cooldown is not None:
                state = cell.device_state or DeviceState()
                cell = msgspec.structs.replace(cell, device_state=msgspec.structs.replace(
                    state, cooldown_s=round(cooldown[0], 3), cooled=cooldown[1]))
            log.info("job %s cell %d %s %s x%d: %s%s", job.job_id, index, spec.model_name,
                     spec.delegate, spec.threads, cell.status,
                     f" ({cell.error})" if cell.error else "")
            self.send(client, CellDone(job_id=job.job_id, index=index, cell=cell,
                                       evaluation=evaluation))
        return True

    def _cool_down(self, client: bytes, job_id: str, index: int,
                   spec: CellSpec) -> Optional[tuple[float, Optional[bool]]]:
        """Wait for the profile's cooldown temperature; (seconds waited, cooled) or None."""
        if spec.cooldown_below_c is None:
            return None

        def tick(temp: Optional[float], remaining: float) -> None:
            self.send(client, Cooling(job_id=job_id, index=index, temp_c=temp,
                                      target_c=spec.cooldown_below_c, remaining_s=remaining))

        waited, cooled = cool_down(SysRoot(self.root), spec.cooldown_below_c, spec.max_cooldown_s,
                                   self._stopping, tick)
        if cooled is False:
            log.warning("job %s cell %d: still above %.1f C after %.0f s; measuring anyway",
                        job_id, index, spec.cooldown_below_c, waited)
        return waited, cooled

    def _android_runner(self) -> AndroidRunner:
        if self._android is None:
            # The agent's data directory holds the model cache and the ADB key.
            self._android = AndroidRunner(self.cache, self.cache.directory.parent / "adb")
        return self._android

    def _run_on_phone(self, target: AndroidTarget, spec: CellSpec) -> tuple[Cell, None]:
        path = self.cache.path(spec.model_sha256)
        template = cell_template(spec, path.stat().st_size if path.exists() else 0)
        return self._android_runner().run(target, spec, template), None

    def _phone_facts(self, target: AndroidTarget) -> Message:
        try:
            return InfoReply(facts=self._android_runner().facts(target))
        except AdbError as exc:
            return Error(message=str(exc), ref="info")

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
        try:
            return self._cells.run(
                str(path), spec, template,
                on_start=lambda pid: self.send(client, CellStarted(job_id=job_id, index=index, pid=pid)),
                dataset_path=str(dataset) if dataset else None,
            )
        except OSError as exc:  # no child process could be started (limits, sandbox)
            return msgspec.structs.replace(template, error=f"could not start the cell's process: {exc}"), None

    def _check(self, spec: CellSpec, have_model: bool) -> Optional[str]:
        if self.runtime is None:
            return "no LiteRT interpreter installed on the agent"
        if not have_model:
            return f"model {spec.model_name} was not transferred to the agent"
        offered = builtin_delegates(self.runtime)
        if spec.delegate not in offered and not spec.delegate_library:
            return (f"delegate {spec.delegate!r} is not available on this agent ({', '.join(offered)}; "
                    "others need a library in the profile's [delegate_options])")
        if spec.threads < 1:
            return f"invalid thread count {spec.threads}"
        return None


def delegates_offered(runtime: Optional[Runtime]) -> list[str]:
    """Delegate names this agent can run cells with, besides external libraries."""
    return builtin_delegates(runtime)
