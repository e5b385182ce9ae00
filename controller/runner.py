"""`controller run` as a library: models x delegates x threads on each device.

Every cell is stored the moment it arrives; a model, a device or a cell that fails is
reported with one line and the rest of the run goes on.
"""

from __future__ import annotations

import contextlib
import dataclasses
import datetime
import os
import secrets
import threading
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable, Optional

import msgspec

from agent.auth import KeyFileError
from agent.dataset import DatasetError
from agent.jobs import cell_template
from agent.protocol import AndroidTarget, CellDone, CellSpec, Cooling
from agent.runtime import CPU_DELEGATES
from agent.schema import Cell, DeviceInfo, PreprocessSpec, RunReport, Settings, Transfer
from controller import families, fingerprint, locations, models, phones, profiles, variants
from controller.client import AgentClient, AgentError, AgentLost, CurveKeys, load_curve_keys
from controller.evaluation import PreparedDataset, RunEvaluation, prepare_dataset
from controller.local_agent import LocalAgent, LocalAgentError
from controller.models import ModelSource
from controller.profiles import Profile, ProfileError
from controller.store import ResultStore

CONNECT_TIMEOUT_S = 15.0
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
    meta: dict[str, str] = field(default_factory=dict)


class Observer:
    """Hooks for progress display; the default does nothing."""

    def device_started(self, device: str, cells: int) -> None: ...

    def cell_done(self, device: str, cell: Cell) -> None: ...

    def device_finished(self, device: str) -> None: ...

    def cooling(self, device: str, message: Cooling) -> None: ...

    def error(self, line: str) -> None: ...


def now_iso() -> str:
    return datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds")


def new_run_id() -> str:
    """Sortable and unique: UTC time plus random suffix."""
    stamp = datetime.datetime.now(datetime.timezone.utc).strftime("%Y%m%dT%H%M%SZ")
    return f"{stamp}-{secrets.token_hex(3)}"


@contextlib.contextmanager
def connect(profile: Profile) -> Iterator[AgentClient]:
    """A client connected to the profile's agent, starting a local one when needed."""
    if profile.transport == "local":
        with LocalAgent(locations.local_agent_dir()) as agent, AgentClient(agent.endpoint) as client:
            yield client
    elif profile.transport == "zmq":
        with AgentClient(profile.address, curve=curve_keys(profile)) as client:
            yield client
    elif profile.transport == "adb" and profile.android is not None:
        # A phone is measured by the agent its profile names: this host's or a Pi's.
        via = profiles.load(profile.android.via)
        if via.transport == "adb":
            raise ProfileError(f"device {profile.name}: via {via.name!r} is a phone, not an agent")
        with connect(via) as client:
            yield client
    else:
        raise ProfileError(f"device {profile.name}: transport {profile.transport!r} is not supported")


def curve_keys(profile: Profile) -> Optional[CurveKeys]:
    """CURVE keys for a zmq profile that names the agent's public key, else None (plain)."""
    if profile.server_public_key is None:
        return None
    secret = profile.client_secret_key or locations.key_dir() / "controller.key_secret"
    if not Path(secret).exists():
        raise ProfileError(f"device {profile.name}: no controller key pair at {secret} "
                           "(create one with `controller keys generate`)")
    try:
        return load_curve_keys(profile.server_public_key, secret)
    except KeyFileError as exc:
        raise ProfileError(f"device {profile.name}: {exc}") from None


def plan(sources: list[ModelSource], delegates: list[str], threads: list[int], rounds: int,
         settings: Settings, evaluation: Optional[RunEvaluation] = None,
         ) -> list[tuple[int, ModelSource, CellSpec]]:
    """The matrix in run order: whole rounds one after another, so drift hits all cells.

    Within a round, family references come first, so that each variant's outputs can
    be compared with its reference's as soon as the variant's cell arrives.
    """
    if evaluation is not None:
        sources = evaluation.references_first(sources)
    # CPU cells first: accelerated cells are compared with their outputs.
    delegates = sorted(delegates, key=lambda d: d not in CPU_DELEGATES)
    return [
        (round_, source, CellSpec(model_sha256=source.sha256, model_name=source.name,
                                  delegate=delegate, threads=n, settings=settings, seed=round_,
                                  **(evaluation.cell_fields(source) if evaluation else {})))
        for round_ in range(rounds)
        for source in sources
        for delegate in delegates
        for n in threads
    ]


class _Run:
    """State of one run while devices are measured."""

    def __init__(self, request: RunRequest, store: ResultStore, observer: Observer,
                 sources: list[ModelSource], errors: list[str], evaluation: RunEvaluation,
                 dataset: Optional[PreparedDataset]):
        self.request, self.store, self.observer = request, store, observer
        self.sources = sources
        self.evaluation, self.dataset = evaluation, dataset
        self.planned: dict[str, list[tuple[int, CellSpec]]] = {}
        self.report = RunReport(run_id=new_run_id(), tag=request.tag, started_at=now_iso(),
                                finished_at=None, devices={}, transfer=Transfer(), cells=[],
                                errors=list(errors), meta=dict(request.meta))
        self.missing = 0

    def error(self, line: str) -> None:
        self.report.errors.append(line)
        self.observer.error(line)

    def keep(self, device: str, cell: Cell, index: Optional[int] = None) -> None:
        if not self.store.add_cell(self.report.run_id, cell, index):
            return  # a result replayed after a reconnect: stored already
        self.report.cells.append(cell)
        self.observer.cell_done(device, cell)

    def measure_device(self, name: str) -> None:
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
                    self.observer.error(f"device {name}: {exc}; reconnecting")
        except (ProfileError, LocalAgentError, AgentError, AgentLost, OSError) as exc:
            self.error(f"device {name}: {exc}")
        finally:
            self._report_missing(name)
            self.observer.device_finished(name)

    def _report_missing(self, name: str) -> None:
        """One line naming the planned cells of a device that have no result."""
        if name not in self.planned:  # never reached: the whole device is missing
            self.missing += 1
            return
        planned = self.planned[name]
        stored = self.store.cell_indices(self.report.run_id, name)
        missing = [(index, spec) for index, spec in planned if index not in stored]
        if not missing:
            return
        self.missing += len(missing)
        shown = ", ".join(f"#{index} {spec.model_name} {spec.delegate} x{spec.threads}"
                          for index, spec in missing[:8])
        more = f" and {len(missing) - 8} more" if len(missing) > 8 else ""
        self.error(f"device {name}: {len(missing)} of {len(planned)} cells were not measured "
                   f"({shown}{more}); `controller run --resume {self.report.run_id}` measures them")

    def _run_jobs(self, name: str, client: AgentClient, runnable: list,
                  on_cell: Callable[[CellDone], None], governor: Optional[str] = None,
                  android: Optional[AndroidTarget] = None) -> None:
        """Run `runnable` (index, round, source, spec) as agent jobs until each has a result.

        The first attempt re-uses the job id stored for this run and device, so an agent
        that still holds the job (a resume) replays its results instead of measuring again;
        cells an interrupted job left out get a fresh job.
        """
        run_id = self.report.run_id
        for attempt in range(JOB_ATTEMPTS):
            stored = self.store.cell_indices(run_id, name)
            todo = [entry for entry in runnable if entry[0] not in stored]
            if not todo:
                return
            job_id = self.store.job(run_id, name) if attempt == 0 else None
            if job_id is None:
                job_id = f"{run_id}/{name}/{secrets.token_hex(4)}"
                self.store.set_job(run_id, name, job_id)
            end = client.run_job(job_id, [spec for *_, spec in todo], on_cell=on_cell,
                                 indices=[entry[0] for entry in todo], governor=governor, android=android,
                                 on_cooling=lambda message: self.observer.cooling(name, message))
            if not end.interrupted:
                return
            left = [entry for entry in todo if entry[0] not in self.store.cell_indices(run_id, name)]
            self.error(f"device {name}: agent job interrupted ({end.interrupted}); "
                       f"measuring the {len(left)} cell(s) it left out again")

    def _measure_with(self, profile: Profile, client: AgentClient) -> None:
        name = profile.name
        welcome = client.hello(timeout_s=CONNECT_TIMEOUT_S)
        info: Optional[DeviceInfo] = DeviceInfo(
            agent_version=welcome.agent_version, runtime=welcome.runtime,
            runtime_version=welcome.runtime_version, facts=welcome.facts)
        phone = phones.prepare(profile.android, client, welcome) if profile.android else None
        if phone is not None:
            info = phone.info
            if phone.error:
                self.error(f"device {name}: {phone.error}")
        if info is not None:
            self.report.devices[name] = info
            self.store.add_device(self.report.run_id, name, info)

        matrix = [(r, source, msgspec.structs.replace(spec, **profile.cell_fields(
                      spec.delegate, self.request.require_full_delegation)))
                  for r, source, spec in plan(self.sources, self.request.delegates or profile.delegates,
                                              self.request.threads or profile.threads, self.request.rounds,
                                              self.request.settings, self.evaluation)]
        self.observer.device_started(name, len(matrix))
        failed_pushes = ({source.sha256: phone.error for source in self.sources} if phone and phone.error
                         else self._push(name, client))
        if self.dataset and not self._push_dataset(name, client):
            matrix = [(r, source, msgspec.structs.replace(spec, dataset_sha256=None, preprocess=None,
                                                          parity_samples=[]))
                      for r, source, spec in matrix]

        device_fp = fingerprint.device_fingerprint(info.facts if info else None)

        def finish(round_: int, source: ModelSource, cell: Cell) -> Cell:
            cell = msgspec.structs.replace(cell, device=name, round=round_, variant=source.variant,
                                           model_size_bytes=source.size)
            return msgspec.structs.replace(cell, fingerprint=fingerprint.cell_fingerprint(device_fp, cell))

        # Cells are numbered by their place in the matrix; a resumed run skips those stored.
        self.planned[name] = [(index, spec) for index, (_, _, spec) in enumerate(matrix)]
        stored = self.store.cell_indices(self.report.run_id, name)
        runnable = []
        for index, (round_, source, spec) in enumerate(matrix):
            if index in stored:
                continue
            if source.sha256 in failed_pushes:
                self.keep(name, finish(round_, source, msgspec.structs.replace(
                    cell_template(spec, source.size), error=failed_pushes[source.sha256])), index)
            else:
                runnable.append((index, round_, source, spec))
        if not runnable:
            return
        by_index = {index: (round_, source) for index, round_, source, _ in runnable}

        def on_cell(done: CellDone) -> None:
            if done.index not in by_index or done.index in stored:
                return  # not ours, or replayed after a reconnect
            stored.add(done.index)
            round_, source = by_index[done.index]
            cell, lines = self.evaluation.complete(source, finish(round_, source, done.cell),
                                                   done.evaluation)
            for line in lines:
                self.error(line)
            self.keep(name, cell, done.index)

        self._run_jobs(name, client, runnable, on_cell, profile.governor, phone.target if phone else None)

    def _push_dataset(self, device: str, client: AgentClient) -> bool:
        """Send the dataset unless the agent has it; False (and one line) when that fails."""
        dataset = self.dataset
        try:
            client.push_model(str(dataset.path), dataset.sha256, dataset.size, dataset.name, kind="dataset")
        except AgentError as exc:
            self.error(f"device {device}: dataset {dataset.name}: transfer failed: {exc}; "
                       "accuracy not measured")
            return False
        return True

    def _push(self, device: str, client: AgentClient) -> dict[str, str]:
        """Send each model the agent lacks; returns the error of each failed transfer."""
        failures: dict[str, str] = {}
        for source in self.sources:
            try:
                sent = client.push_model(str(source.path), source.sha256, source.size, source.name)
            except AgentError as exc:
                failures[source.sha256] = f"transfer failed: {exc}"
                self.error(f"device {device}: {source.name}: transfer failed: {exc}")
                continue
            transfer = self.report.transfer
            transfer.model_bytes_sent += sent
            transfer.models_cached += sent == 0
        return failures


def resume(ref: str, store: ResultStore, observer: Optional[Observer] = None) -> RunReport:
    """Measure what an earlier run did not store: agents replay results they still hold."""
    run_id = store.resolve(ref)
    text = store.load_request(run_id)
    if text is None:
        raise NothingToMeasure(f"run {run_id} cannot be resumed: it was made without a recorded request")
    return run(msgspec.json.decode(text, type=RunRequest), store, observer, resume_id=run_id)


def run(request: RunRequest, store: ResultStore, observer: Optional[Observer] = None,
        resume_id: Optional[str] = None) -> RunReport:
    """Measure the request's matrix on every device; returns the finished run.

    With `resume_id`, continue that stored run: cells it has are neither measured nor stored again.
    """
    observer = observer or Observer()
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
    state = _Run(request, store, observer, sources, errors + problems + evaluation.problems,
                 evaluation, dataset)
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
    finally:
        report = state.report
        report.variants = variants.compare(grouped, report.cells, request.accuracy_tolerance)
        report.finished_at = now_iso()
        report.complete = not interrupted and state.missing == 0
        store.finish_run(report.run_id, report.finished_at, report.transfer, report.errors, report.complete,
                         report.variants)
    return state.report


def _measure_devices(state: _Run, devices: list[str]) -> None:
    """Measure every device at once, one thread each: a device that fails or hangs up is
    reported and the others finish. Interrupting the controller leaves what is stored."""
    if len(devices) == 1:
        state.measure_device(devices[0])
        return
    def measure(device: str) -> None:
        try:
            state.measure_device(device)
        except Exception as exc:  # noqa: BLE001 - one device's surprise must not cost the others their results
            state.error(f"device {device}: stopped by an internal error: {exc!r}")

    threads = [threading.Thread(target=measure, args=(device,), name=f"device-{device}", daemon=True)
               for device in devices]
    for thread in threads:
        thread.start()
    for thread in threads:
        while thread.is_alive():  # a timed join keeps Ctrl-C deliverable to the main thread
            thread.join(0.5)


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
