"""`controller run` as a library: models x delegates x threads on each device.

Every cell is stored the moment it arrives; a model, a device or a cell that fails is
reported with one line and the rest of the run goes on.
"""

from __future__ import annotations

import contextlib
import dataclasses
import os
import secrets
import threading
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable, Optional, Protocol

import msgspec

from agent.formats.dataset import DatasetError
from agent.wire import protocol
from agent.wire.delegates import CPU_DELEGATES
from agent.wire.protocol import CANCELLED, AndroidTarget, CellDone, Cooling, cell_template
from agent.wire.records import Cell, PreprocessSpec, Settings
from controller import families, fingerprint, locations, models, phones, preflight, profiles
from controller.analysis import variants
from controller.client import AgentClient, AgentError, AgentLost
from controller.connect import CONNECT_TIMEOUT_S, connect
from controller.evaluation import PreparedDataset, RunEvaluation, prepare_dataset
from controller.local_agent import LocalAgentError
from controller.models import ModelSource
from controller.plan import PlannedCell, plan
from controller.profiles import Profile, ProfileError
from controller.records import DeviceInfo, RunReport, Transfer, new_run_id, now_iso
from controller.store import ResultStore, StoreError

# A lost agent is reconnected to this many times; a job interrupted by an agent restart is
# followed by at most this many fresh jobs for the cells it left out.
RECONNECTS = 2
JOB_ATTEMPTS = 3


class NothingToMeasure(ValueError):
    """No readable model was given, or the run cannot start: there is no run to make."""


@dataclass
class RunRequest:
    """What to measure: devices by profile name, model paths, and the matrix settings."""

    devices: list[str]
    models: list[str]
    threads: Optional[list[int]] = None
    delegates: Optional[list[str]] = None
    settings: Settings = field(default_factory=Settings)
    rounds: int = 1
    tag: Optional[str] = None
    dataset: Optional[str] = None
    preprocess: Optional[PreprocessSpec] = None
    reference: Optional[str] = None
    families: dict[str, list[str]] = field(default_factory=dict)
    accuracy_tolerance: float = variants.DEFAULT_TOLERANCE
    require_full_delegation: bool = False
    op_profile: bool = False
    meta: dict[str, str] = field(default_factory=dict)
    alternate_order: bool = False  # odd rounds measure the models in reverse order (A/B sessions)
    job_timeout_s: Optional[float] = None  # a job without progress this long is given up (None: from its cells)


class Observer(Protocol):
    """What a run tells whoever watches it (a progress display, a notebook, a test)."""

    def device_started(self, device: str, cells: int) -> None:
        """The device's matrix is planned: `cells` cells will be measured."""

    def cell_done(self, device: str, cell: Cell) -> None:
        """A cell was measured and stored."""

    def device_finished(self, device: str) -> None:
        """The device has no more cells to measure in this run."""

    def cooling(self, device: str, message: Cooling) -> None:
        """The agent waits for the device to cool before a cell."""

    def error(self, line: str) -> None:
        """One line about something that went wrong; the run goes on."""


class QuietObserver(Observer):
    """An observer that ignores everything (the protocol's own methods do nothing)."""


class _RunState:
    """What the devices of one run share: the report, the store and the observer. Device
    sessions run on threads of their own, so every change goes through the lock."""

    def __init__(self, request: RunRequest, store: ResultStore, observer: Observer,
                 sources: list[ModelSource], errors: list[str], evaluation: RunEvaluation,
                 dataset: Optional[PreparedDataset], run_id: str):
        self.request, self.store, self.observer = request, store, observer
        self.sources = sources
        self.evaluation, self.dataset = evaluation, dataset
        self.report = RunReport(run_id=run_id, tag=request.tag, started_at=now_iso(),
                                finished_at=None, devices={}, transfer=Transfer(), cells=[],
                                errors=list(errors), meta=dict(request.meta))
        self.missing = 0
        self.unstored = 0
        self._lock = threading.Lock()

    def error(self, line: str) -> None:
        """One line in the run's errors and on the observer."""
        with self._lock:
            self.report.errors.append(line)
        self.observer.error(line)

    def keep(self, device: str, cell: Cell, index: Optional[int] = None) -> None:
        """Store a cell the moment it arrives (once: replays after a reconnect are dropped).

        When the store fails for good, the cell stays in the report and StoreError goes on
        up: the agent is not told the cell was stored, so it keeps it for a `--resume`.
        """
        with self._lock:
            try:
                added = self.store.add_cell(self.report.run_id, cell, index)
            except StoreError:
                self.report.cells.append(cell)
                self.unstored += 1
                raise
            if not added:
                return
            self.report.cells.append(cell)
        self.observer.cell_done(device, cell)

    def add_device(self, name: str, info: DeviceInfo) -> None:
        """Record what the device is."""
        with self._lock:
            self.report.devices[name] = info
            self.store.add_device(self.report.run_id, name, info)

    def add_transfer(self, sent: int) -> None:
        """Count one model pushed (`sent` bytes) or found cached (0)."""
        with self._lock:
            self.report.transfer.model_bytes_sent += sent
            self.report.transfer.models_cached += sent == 0

    def add_missing(self, count: int) -> None:
        """Count planned cells (or a whole device, as 1) that got no result."""
        with self._lock:
            self.missing += count


class DeviceSession:
    """One device during one run: connect (and reconnect), plan its matrix, push models,
    run agent jobs until every cell has a result, and name the cells that got none."""

    def __init__(self, name: str, run: _RunState):
        self.name, self.run = name, run
        self.planned: Optional[list[PlannedCell]] = None

    def measure(self) -> None:
        """Measure the device; a device that fails is reported with one line, never raised."""
        name = self.name
        try:
            profile = profiles.load(name)
            for attempt in range(RECONNECTS + 1):
                try:
                    with connect(profile) as client:
                        self._measure_with(profile, client)
                    break
                except AgentLost as exc:
                    if attempt == RECONNECTS:
                        raise
                    self.run.observer.error(f"device {name}: {exc}; reconnecting")
        except (ProfileError, LocalAgentError, AgentError, AgentLost, OSError) as exc:
            self.run.error(f"device {name}: {exc}")
        finally:
            with contextlib.suppress(StoreError):  # a store that failed is reported once, by `run`
                self._report_missing()
            self.run.observer.device_finished(name)

    def _report_missing(self) -> None:
        """One line naming the planned cells of the device that have no result."""
        if self.planned is None:  # never reached: the whole device is missing
            self.run.add_missing(1)
            return
        stored = self.run.store.cell_indices(self.run.report.run_id, self.name)
        missing = [cell for cell in self.planned if cell.index not in stored]
        if not missing:
            return
        self.run.add_missing(len(missing))
        shown = ", ".join(cell.label() for cell in missing[:8])
        more = f" and {len(missing) - 8} more" if len(missing) > 8 else ""
        self.run.error(f"device {self.name}: {len(missing)} of {len(self.planned)} cells were not measured "
                       f"({shown}{more}); `controller run --resume {self.run.report.run_id}` measures them")

    def _measure_with(self, profile: Profile, client: AgentClient) -> None:
        run, name, request = self.run, self.name, self.run.request
        welcome = client.hello(timeout_s=CONNECT_TIMEOUT_S)
        info: Optional[DeviceInfo] = DeviceInfo(
            agent_version=welcome.agent_version, runtime=welcome.runtime,
            runtime_version=welcome.runtime_version, facts=welcome.facts)
        phone = phones.prepare(profile.android, client, welcome) if profile.android else None
        if phone is not None:
            info = phone.info
            if phone.error:
                run.error(f"device {name}: {phone.error}")
        if info is not None:
            run.add_device(name, info)
        cores = info.facts.cpu.count if info is not None and info.facts.cpu else None
        if cores and profile.transport != "local":
            try:
                preflight.check_threads(request.threads or profile.threads,
                                        "--threads" if request.threads else "threads", cores)
            except preflight.UsageError as exc:
                raise ProfileError(str(exc)) from None

        matrix = plan(run.sources, request.delegates or profile.delegates, request.threads or profile.threads,
                      request.rounds, request.settings, run.evaluation, profile, request.require_full_delegation,
                      request.op_profile, request.alternate_order)
        run.observer.device_started(name, len(matrix))
        failed_pushes = ({source.sha256: phone.error for source in run.sources} if phone and phone.error
                         else self._push_models(client))
        if run.dataset and not self._push_dataset(client):
            matrix = [dataclasses.replace(cell, spec=msgspec.structs.replace(
                cell.spec, dataset_sha256=None, preprocess=None, parity_samples=[])) for cell in matrix]
        self.planned = matrix

        device_fp = fingerprint.device_fingerprint(info.facts if info else None)

        def finish(planned: PlannedCell, cell: Cell) -> Cell:
            cell = msgspec.structs.replace(cell, device=name, round=planned.round, variant=planned.source.variant,
                                           model_size_bytes=planned.source.size)
            return msgspec.structs.replace(cell, fingerprint=fingerprint.cell_fingerprint(device_fp, cell))

        # A resumed run skips the cells it has stored.
        stored = run.store.cell_indices(run.report.run_id, name)
        runnable: list[PlannedCell] = []
        for planned in matrix:
            if planned.index in stored:
                continue
            if planned.source.sha256 in failed_pushes:
                run.keep(name, finish(planned, msgspec.structs.replace(
                    cell_template(planned.spec, planned.source.size),
                    error=failed_pushes[planned.source.sha256])), planned.index)
            else:
                runnable.append(planned)
        if not runnable:
            return
        by_index = {planned.index: planned for planned in runnable}

        evicted: dict[str, ModelSource] = {}
        resent: set[str] = set()

        def on_cell(done: CellDone) -> None:
            if done.index not in by_index or done.index in stored:
                return  # not ours, or replayed after a reconnect
            planned = by_index[done.index]
            if done.cell.error == CANCELLED:
                return  # cut short by an interrupt, not a result of the model: measured again
            if protocol.CHANGED_ON_DISK in (done.cell.error or "") and planned.source.sha256 not in resent:
                evicted[planned.source.sha256] = planned.source  # sent again, and the cell run again
                return
            stored.add(done.index)
            cell, lines = run.evaluation.complete(planned.source, finish(planned, done.cell), done.evaluation)
            for line in lines:
                run.error(line)
            run.keep(name, cell, done.index)

        def resend() -> None:
            for sha256, source in list(evicted.items()):
                run.error(f"device {name}: {source.name} {protocol.CHANGED_ON_DISK}; sending it again")
                resent.add(sha256)
                del evicted[sha256]
                run.add_transfer(client.push_model(str(source.path), source.sha256, source.size, source.name))

        self._run_jobs(client, runnable, on_cell, profile.governor, phone.target if phone else None,
                       before_retry=resend)

    def _run_jobs(self, client: AgentClient, runnable: list[PlannedCell],
                  on_cell: Callable[[CellDone], None], governor: Optional[str] = None,
                  android: Optional[AndroidTarget] = None,
                  before_retry: Callable[[], None] = lambda: None) -> None:
        """Run `runnable` as agent jobs until each has a result.

        The first attempt re-uses the job id stored for this run and device, so an agent
        that still holds the job (a resume) replays its results instead of measuring again;
        cells an interrupted job left out (or that `on_cell` did not store) get a fresh job,
        after `before_retry`. A long matrix goes in parts of `MAX_JOB_CELLS`, so that one
        `RunJob` always fits the frame limit.
        """
        run, name = self.run, self.name
        run_id = run.report.run_id
        for attempt in range(JOB_ATTEMPTS):
            stored = run.store.cell_indices(run_id, name)
            todo = [cell for cell in runnable if cell.index not in stored]
            if not todo:
                return
            if attempt:
                before_retry()
            job_id = run.store.job(run_id, name) if attempt == 0 else None
            if job_id is None:
                job_id = f"{run_id}/{name}/{secrets.token_hex(4)}"
                run.store.set_job(run_id, name, job_id)
            for part, start in enumerate(range(0, len(todo), protocol.MAX_JOB_CELLS)):
                cells = todo[start:start + protocol.MAX_JOB_CELLS]
                end = client.run_job(job_id if part == 0 else f"{job_id}/{part}", [cell.spec for cell in cells],
                                     on_cell=on_cell, indices=[cell.index for cell in cells], governor=governor,
                                     android=android, on_cooling=lambda message: run.observer.cooling(name, message),
                                     timeout_s=run.request.job_timeout_s)
                if end.interrupted:
                    left = [cell for cell in cells if cell.index not in run.store.cell_indices(run_id, name)]
                    run.error(f"device {name}: agent job interrupted ({end.interrupted}); "
                              f"measuring the {len(left)} cell(s) it left out again")

    def _push_dataset(self, client: AgentClient) -> bool:
        """Send the dataset unless the agent has it; False (and one line) when that fails."""
        dataset = self.run.dataset
        try:
            client.push_model(str(dataset.path), dataset.sha256, dataset.size, dataset.name, kind="dataset")
        except AgentError as exc:
            self.run.error(f"device {self.name}: dataset {dataset.name}: transfer failed: {exc}; "
                           "accuracy not measured")
            return False
        return True

    def _push_models(self, client: AgentClient) -> dict[str, str]:
        """Send each model the agent lacks; returns the error of each failed transfer."""
        failures: dict[str, str] = {}
        for source in self.run.sources:
            try:
                sent = client.push_model(str(source.path), source.sha256, source.size, source.name)
            except AgentError as exc:
                failures[source.sha256] = f"transfer failed: {exc}"
                self.run.error(f"device {self.name}: {source.name}: transfer failed: {exc}")
                continue
            self.run.add_transfer(sent)
        return failures


def resume(ref: str, store: ResultStore, observer: Optional[Observer] = None,
           job_timeout_s: Optional[float] = None) -> RunReport:
    """Measure what an earlier run did not store: agents replay results they still hold.

    `job_timeout_s` replaces the recorded run's own, when given.
    """
    run_id = store.resolve(ref)
    text = store.load_request(run_id)
    if text is None:
        raise NothingToMeasure(f"run {run_id} cannot be resumed: it was made without a recorded request")
    request = msgspec.json.decode(text, type=RunRequest)
    if job_timeout_s is not None:
        request.job_timeout_s = job_timeout_s
    return run(request, store, observer, resume_id=run_id)


def run(request: RunRequest, store: ResultStore, observer: Optional[Observer] = None,
        resume_id: Optional[str] = None, run_id: Optional[str] = None) -> RunReport:
    """Measure the request's matrix on every device; returns the finished run.

    With `resume_id`, continue that stored run: cells it has are neither measured nor stored again.
    `run_id` names a new run (default: a fresh id), so that a caller that is interrupted
    can find its own run in a database other controllers write to as well.
    """
    observer = observer or QuietObserver()
    sources, errors = models.resolve(request.models)
    reference = _reference(request, sources, errors)
    if reference is not None and reference not in sources:
        sources.insert(0, reference)
    for line in errors:
        observer.error(line)
    if not sources:
        raise NothingToMeasure("no readable model to measure")
    grouped, problems = families.group(sources, request.families, reference)
    dataset = _dataset(request)
    evaluation = RunEvaluation(sources, grouped, dataset, request.preprocess,
                               accelerators=any(d not in CPU_DELEGATES for d in _delegates(request)))
    for line in problems + evaluation.problems:
        observer.error(line)
    state = _RunState(request, store, observer, sources, errors + problems + evaluation.problems,
                      evaluation, dataset, run_id or new_run_id())
    if resume_id is None:
        store.start_run(state.report.run_id, request.tag, state.report.started_at, request.meta)
        # Absolute model paths, so that a resume from another directory finds the same files.
        recorded = dataclasses.replace(request, models=[os.path.abspath(m) for m in request.models])
        store.save_request(state.report.run_id, msgspec.json.encode(recorded).decode())
    else:
        previous = store.load_run(resume_id)
        state.report.run_id, state.report.started_at = resume_id, previous.started_at
        state.report.devices, state.report.cells = previous.devices, previous.cells
        state.report.transfer = previous.transfer
    interrupted = True
    try:
        _measure_devices(state, request.devices)
        interrupted = False
    except StoreError as exc:
        # Measuring on is pointless when nothing can be kept; what the agents measured and
        # this controller could not store stays in their outboxes, unacknowledged.
        state.report.store_problem = (
            f"{exc}; {state.unstored} cell(s) measured but not stored (in this document); the agents keep "
            f"them: `controller run --resume {state.report.run_id}` stores them once the database answers")
        state.error(f"results database: {state.report.store_problem}")
    finally:
        report = state.report
        report.variants = variants.compare(grouped, report.cells, request.accuracy_tolerance)
        report.finished_at = now_iso()
        report.complete = not interrupted and state.missing == 0
        if report.store_problem is None:
            store.finish_run(report.run_id, report.finished_at, report.transfer, report.errors, report.complete,
                             report.variants)
    return state.report


def _measure_devices(state: _RunState, devices: list[str]) -> None:
    """Measure every device at once, one thread each: a device that fails or hangs up is
    reported and the others finish. Interrupting the controller leaves what is stored."""
    if len(devices) == 1:
        DeviceSession(devices[0], state).measure()
        return

    failures: list[StoreError] = []

    def measure(device: str) -> None:
        try:
            DeviceSession(device, state).measure()
        except StoreError as exc:
            failures.append(exc)
        except Exception as exc:  # noqa: BLE001 - one device's surprise must not cost the others their results
            state.error(f"device {device}: stopped by an internal error: {exc!r}")

    threads = [threading.Thread(target=measure, args=(device,), name=f"device-{device}", daemon=True)
               for device in devices]
    for thread in threads:
        thread.start()
    for thread in threads:
        while thread.is_alive():  # a timed join keeps Ctrl-C deliverable to the main thread
            thread.join(0.5)
    if failures:
        raise failures[0]


def _reference(request: RunRequest, sources: list[ModelSource], errors: list[str]) -> Optional[ModelSource]:
    """The `--reference` model, read like any other; a usage error when unreadable."""
    if request.reference is None:
        return None
    found, problems = models.resolve([request.reference])
    if problems or len(found) != 1:
        raise NothingToMeasure(f"--reference: {problems[0] if problems else 'names more than one model'}")
    return next((s for s in sources if s.sha256 == found[0].sha256), found[0])


def _dataset(request: RunRequest) -> Optional[PreparedDataset]:
    """The `--dataset` bundle; a usage error when the directory cannot be used."""
    if request.dataset is None:
        return None
    if request.preprocess is None:
        raise NothingToMeasure("--dataset needs --preprocess SPEC.toml (how images become tensors)")
    try:
        return prepare_dataset(Path(request.dataset), locations.data_dir() / "datasets")
    except (DatasetError, OSError) as exc:
        raise NothingToMeasure(f"--dataset: {exc}") from None


def _delegates(request: RunRequest) -> list[str]:
    """Every delegate the run may use: the requested ones, else those of its profiles."""
    if request.delegates:
        return list(request.delegates)
    names: list[str] = []
    for device in request.devices:
        try:
            names += profiles.load(device).delegates
        except ProfileError:
            continue  # reported when the device is measured
    return names
