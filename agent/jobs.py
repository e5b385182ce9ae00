"""Jobs: the cells a controller asked for, run one after another on a worker thread.

The thread never touches the agent's ROUTER socket (ZeroMQ sockets are not thread
safe): it hands each outgoing message to `send`, which the server wires to an inproc
socket its own loop forwards from.

Cells run on one of two back ends with the same interface (`CellBackend`): a fresh child
process per cell on this device (`LocalCells`), or `benchmark_model` on a phone through
ADB (`PhoneCells`).
"""

from __future__ import annotations

import contextlib
import logging
import queue
import threading
from dataclasses import dataclass
from pathlib import Path
from typing import Callable, Optional, Protocol, Union

import msgspec

from agent import trust
from agent.android.adb import AdbError
from agent.android.runner import AndroidRunner
from agent.cache import ModelCache, changed_on_disk
from agent.facts import SysRoot
from agent.isolation import CellRunner
from agent.progress import Progress
from agent.runtime import Runtime, builtin_delegates, first_line
from agent.thermal import POLL_S, Governor, cool_down
from agent.wire.protocol import (
    CANCELLED,
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
    cell_template,
    cell_time_limit,
)
from agent.wire.records import Cell, DeviceState
from agent.wire.text import quote

log = logging.getLogger("edgebench.agent")

Send = Callable[[bytes, Message], None]
OnStart = Callable[[int], None]
# Reading a phone's facts: connecting (with its authorisation wait) and a few shell commands.
PHONE_FACTS_S = 120.0


class CellBackend(Protocol):
    """Measures one cell; never raises for what the model, the delegate or the device does."""

    def run(self, spec: CellSpec, template: Cell, on_start: OnStart) -> tuple[Cell, Optional[Evaluation]]:
        """The measured cell (or `template` failed with one line) and its outputs, if evaluated."""


class LocalCells:
    """Cells of this device, each in a fresh child process (see agent.isolation).

    A cell's model is re-hashed when its file changed since it was verified, and a delegate
    library is loaded only when the agent's `delegate_libraries` grants it (agent.trust).
    """

    def __init__(self, cache: ModelCache, runtime: Optional[Runtime], root: str,
                 libraries: Union[str, list[str]] = (), data_dir: Optional[Path] = None,
                 memory_limit_mb: Optional[float] = None):
        self.cache, self.runtime, self.root = cache, runtime, root
        self.libraries = libraries if isinstance(libraries, str) else list(libraries)
        self.data_dir = data_dir or cache.directory.parent
        self.memory_limit_mb = memory_limit_mb
        self.cancel = threading.Event()  # set: the running cell is killed and fails as cancelled
        self._cells: Optional[CellRunner] = None

    def kill_running(self) -> None:
        """Kill the running cell's process (after setting `cancel`)."""
        if self._cells is not None:
            self._cells.kill_running()

    def run(self, spec: CellSpec, template: Cell, on_start: OnStart) -> tuple[Cell, Optional[Evaluation]]:
        """Measure the cell in a child process."""
        path = self.cache.path(spec.model_sha256)
        problem = self._check(spec, path.exists()) or self.cache.verify(spec.model_sha256)
        if problem:
            return msgspec.structs.replace(template, error=problem), None
        if spec.delegate_library:
            try:
                spec = msgspec.structs.replace(spec, delegate_library=trust.delegate_library(
                    spec.delegate_library, self.libraries, self.data_dir))
            except trust.NotAllowed as exc:
                return msgspec.structs.replace(template, error=str(exc)), None
        dataset = self.cache.path(spec.dataset_sha256, "dataset") if spec.dataset_sha256 else None
        if dataset is not None and not dataset.exists():
            return msgspec.structs.replace(template, error="dataset was not transferred to the agent"), None
        if self._cells is None:
            self._cells = CellRunner(self.runtime, self.root, self.memory_limit_mb)
        try:
            cell, evaluation = self._cells.run(str(path), spec, template, on_start=on_start,
                                               dataset_path=str(dataset) if dataset else None,
                                               cancel=self.cancel, cancelled_error=CANCELLED)
        except OSError as exc:  # no child process could be started (limits, sandbox)
            return msgspec.structs.replace(template, error=f"could not start the cell's process: {exc}"), None
        # A model that would not load may have changed on disk after it was checked: say so,
        # so that the controller sends it again, rather than blame the model.
        changed = self.cache.verify(spec.model_sha256) if cell.status != "ok" else None
        return (msgspec.structs.replace(cell, error=changed), None) if changed else (cell, evaluation)

    def _check(self, spec: CellSpec, have_model: bool) -> Optional[str]:
        if self.runtime is None:
            return "no LiteRT interpreter installed on the agent"
        if not have_model:
            if spec.model_sha256 in self.cache.evicted:
                return changed_on_disk(spec.model_sha256)
            return f"model {spec.model_name} was not transferred to the agent"
        offered = builtin_delegates(self.runtime)
        if spec.delegate not in offered and not spec.delegate_library:
            return (f"delegate {spec.delegate!r} is not available on this agent ({', '.join(offered)}; "
                    "others need a library in the profile's [delegate_options])")
        return None


@dataclass
class PhoneCells:
    """Cells of one phone, measured with benchmark_model through ADB."""

    phones: AndroidRunner
    target: AndroidTarget

    def run(self, spec: CellSpec, template: Cell, on_start: OnStart) -> tuple[Cell, Optional[Evaluation]]:
        """Measure the cell on the phone (no outputs: benchmark_model does not print them)."""
        return self.phones.run(self.target, spec, template), None


@dataclass(frozen=True)
class _Job:
    client: bytes
    job: RunJob


@dataclass(frozen=True)
class _PhoneFacts:
    client: bytes
    request: InfoRequest


_Work = Union[_Job, _PhoneFacts]


class JobRunner:
    """Runs accepted jobs in order on one thread; cells run in child processes or on phones."""

    def __init__(self, cache: ModelCache, runtime: Optional[Runtime], send: Send, root: str = "/",
                 libraries: Union[str, list[str]] = (), data_dir: Optional[Path] = None,
                 memory_limit_mb: Optional[float] = None):
        self.cache = cache
        self.send = send
        self.root = root
        self._local = LocalCells(cache, runtime, root, libraries, data_dir, memory_limit_mb)
        self._android: Optional[AndroidRunner] = None
        self._queue: queue.Queue[Optional[_Work]] = queue.Queue()
        self._stopping = threading.Event()
        # Set to end a cooldown wait early (a cancel, or the agent stopping).
        self._abort = threading.Event()
        # The job being run, and the ids of jobs cancelled before or while they run.
        self._current: Optional[str] = None
        self._cancelled: set[str] = set()
        self._lock = threading.Lock()
        self._thread = threading.Thread(target=self._work, name="jobs", daemon=True)
        self.progress = Progress(self._thread)
        self._thread.start()

    def submit(self, client: bytes, job: RunJob) -> None:
        """Queue a job from `client`; its cells run after the jobs before it."""
        self._queue.put(_Job(client, job))

    def queued(self) -> int:
        """Jobs waiting for the job thread."""
        return self._queue.qsize()

    def ahead(self, job_ids: set[str]) -> Optional[int]:
        """Jobs to run before the first queued one of `job_ids` (the running job counts), or
        None when none of them waits in the queue."""
        waiting = [item for item in list(self._queue.queue) if isinstance(item, _Job)]
        for position, item in enumerate(waiting):
            if item.job.job_id in job_ids:
                return position + (self._current is not None)
        return None

    def cancel(self, job_id: str) -> bool:
        """Stop a queued or running job: its running cell is killed, the rest skipped.

        Returns False when no such job is queued or running. Safe from the server's thread.
        """
        with self._lock:
            if job_id == self._current:
                self._cancelled.add(job_id)
                self._abort.set()
                self._local.cancel.set()
                self._local.kill_running()
                return True
            queued = any(isinstance(item, _Job) and item.job.job_id == job_id for item in list(self._queue.queue))
            if queued:
                self._cancelled.add(job_id)
            return queued

    def submit_info(self, client: bytes, request: InfoRequest) -> None:
        """Read a phone's facts on the job thread, which owns the ADB connections."""
        self._queue.put(_PhoneFacts(client, request))

    def stop(self, abandon: bool = False, wait_s: Optional[float] = None) -> None:
        """Finish the running cell (or with `abandon`, kill it), skip the rest, end the thread.

        `wait_s` bounds the wait for the thread (it is a daemon: the process may exit without it).
        """
        self._stopping.set()
        self.progress.stopping = True
        self._abort.set()  # a cooldown wait ends early; the running cell finishes
        running = self._current
        if abandon and running is not None:
            self.cancel(running)
        self._queue.put(None)
        self._thread.join(wait_s)
        if self._android is not None and not self._thread.is_alive():
            self._android.close()

    def _work(self) -> None:
        """The job thread: whatever one job or request does, the thread goes on to the next."""
        while True:
            item = self._queue.get()
            if item is None:
                return
            try:
                if isinstance(item, _PhoneFacts):
                    with self.progress.phase("reading a phone's facts", PHONE_FACTS_S):
                        self.send(item.client, self._phone_facts(item.request.android))
                elif not self._run_job(item.client, item.job):
                    return
            except Exception as exc:  # the thread must outlive any one job
                log.exception("job thread: %s failed; going on with the next job", type(item).__name__)
                if isinstance(item, _Job):
                    with contextlib.suppress(Exception):
                        self.send(item.client, JobDone(job_id=item.job.job_id,
                                                       interrupted=f"agent error: {quote(first_line(exc))}"))

    def _run_job(self, client: bytes, job: RunJob) -> bool:
        """Run one job to its end (or its cancel); False when the runner stopped part way."""
        with self._lock:
            if job.job_id in self._cancelled:
                self._cancelled.discard(job.job_id)
                self.send(client, JobDone(job_id=job.job_id, interrupted=CANCELLED))
                return True
            self._current = job.job_id
            self._local.cancel.clear()
            if not self._stopping.is_set():
                self._abort.clear()
        try:
            return self._run_owned(client, job)
        finally:
            with self._lock:
                self._current = None
                self._cancelled.discard(job.job_id)

    def _run_owned(self, client: bytes, job: RunJob) -> bool:
        log.info("job %s: %d cells", quote(job.job_id), len(job.cells))
        backend: CellBackend = (PhoneCells(self._android_runner(), job.android) if job.android is not None
                                else self._local)
        try:
            with contextlib.ExitStack() as stack:
                governor = stack.enter_context(Governor(SysRoot(self.root), job.governor)) if job.governor \
                    else None
                if not self._run_cells(client, job, backend, governor.problems if governor else []):
                    return False
        except Exception as exc:  # an agent fault ends this job, never the job thread
            log.exception("job %s: failed", quote(job.job_id))
            self.send(client, JobDone(job_id=job.job_id, interrupted=f"agent error: {quote(first_line(exc))}"))
            return True
        if job.job_id in self._cancelled:
            log.info("job %s: %s", job.job_id, CANCELLED)
            self.send(client, JobDone(job_id=job.job_id, interrupted=CANCELLED))
        else:
            self.send(client, JobDone(job_id=job.job_id))
        return True

    def _run_cells(self, client: bytes, job: RunJob, backend: CellBackend, governor_problems: list[str]) -> bool:
        """Run the job's cells in order; False when the runner stopped part way.

        A governor the job asked for but could not get (a hardened service may not write
        cpufreq) becomes a warning on each cell, whose device state names the governor it
        really ran under.
        """
        for index, spec in zip(job.indices or range(len(job.cells)), job.cells):
            if self._stopping.is_set():
                log.info("job %s: stopped before cell %d", job.job_id, index)
                return False
            if job.job_id in self._cancelled:
                return True
            cooldown = self._cool_down(client, job.job_id, index, spec)
            try:
                size = self.cache.path(spec.model_sha256).stat().st_size
            except OSError:
                size = 0  # not transferred, or evicted: the backend says which
            template = cell_template(spec, size)
            with self.progress.phase(f"cell {index} of job {quote(job.job_id)}",
                                     cell_time_limit(spec, on_phone=job.android is not None)):
                cell, evaluation = self._measure(backend, spec, template, lambda pid, index=index: self.send(
                    client, CellStarted(job_id=job.job_id, index=index, pid=pid)))
            if job.job_id in self._cancelled and cell.error == CANCELLED:
                # Killed part way: not a result of the model, so none is kept; measured again later.
                log.info("job %s cell %d: %s while it ran", quote(job.job_id), index, CANCELLED)
                continue
            if governor_problems:
                ran_under = cell.device_state.governor if cell.device_state else None
                cell = msgspec.structs.replace(cell, warnings=[*cell.warnings, *(
                    f"governor {job.governor} not set ({problem}); ran under {ran_under or 'an unknown governor'}"
                    for problem in governor_problems)])
            if cooldown is not None:
                state = cell.device_state or DeviceState()
                cell = msgspec.structs.replace(cell, device_state=msgspec.structs.replace(
                    state, cooldown_s=round(cooldown[0], 3), cooled=cooldown[1]))
            log.info("job %s cell %d %s %s x%d: %s%s", quote(job.job_id), index, quote(spec.model_name),
                     quote(spec.delegate), spec.threads, cell.status,
                     f" ({quote(cell.error, 400)})" if cell.error else "")
            self.send(client, CellDone(job_id=job.job_id, index=index, cell=cell,
                                       evaluation=evaluation))
        return True

    @staticmethod
    def _measure(backend: CellBackend, spec: CellSpec, template: Cell,
                 on_start: OnStart) -> tuple[Cell, Optional[Evaluation]]:
        """The backend's result; an agent fault fails this cell only (nothing was measured)."""
        try:
            return backend.run(spec, template, on_start)
        except Exception as exc:  # one cell's surprise must not end the job
            log.exception("cell %s %s x%d: agent error", quote(spec.model_name), quote(spec.delegate), spec.threads)
            return msgspec.structs.replace(template, error=f"agent error: {quote(first_line(exc))}"), None

    def _cool_down(self, client: bytes, job_id: str, index: int,
                   spec: CellSpec) -> Optional[tuple[float, Optional[bool]]]:
        """Wait for the profile's cooldown temperature; (seconds waited, cooled) or None."""
        if spec.cooldown_below_c is None:
            return None

        def tick(temp: Optional[float], remaining: float) -> None:
            self.send(client, Cooling(job_id=job_id, index=index, temp_c=temp,
                                      target_c=spec.cooldown_below_c, remaining_s=remaining))

        with self.progress.phase(f"the cooldown before cell {index} of job {quote(job_id)}",
                                 spec.max_cooldown_s + POLL_S):
            waited, cooled = cool_down(SysRoot(self.root), spec.cooldown_below_c, spec.max_cooldown_s,
                                       self._abort, tick)
        if cooled is False:
            log.warning("job %s cell %d: still above %.1f C after %.0f s; measuring anyway",
                        job_id, index, spec.cooldown_below_c, waited)
        return waited, cooled

    def _android_runner(self) -> AndroidRunner:
        if self._android is None:
            # The agent's data directory holds the model cache and the ADB key.
            self._android = AndroidRunner(self.cache, self.cache.directory.parent / "adb")
        return self._android

    def _phone_facts(self, target: AndroidTarget) -> Message:
        try:
            return InfoReply(facts=self._android_runner().facts(target))
        except AdbError as exc:
            return Error(message=str(exc), ref="info")
