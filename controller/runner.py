"""`controller run` as a library: models x delegates x threads on each device.

Every cell is stored the moment it arrives; a model, a device or a cell that fails is
reported with one line and the rest of the run goes on.
"""

from __future__ import annotations

import contextlib
import datetime
import secrets
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Optional

import msgspec

from agent.auth import KeyFileError
from agent.dataset import DatasetError
from agent.jobs import cell_template
from agent.protocol import CellDone, CellSpec
from agent.schema import Cell, DeviceInfo, PreprocessSpec, RunReport, Settings, Transfer
from controller import families, locations, models, profiles, variants
from controller.client import AgentClient, AgentError, AgentLost, CurveKeys, load_curve_keys
from controller.evaluation import PreparedDataset, RunEvaluation, prepare_dataset
from controller.local_agent import LocalAgent, LocalAgentError
from controller.models import ModelSource
from controller.profiles import Profile, ProfileError
from controller.store import ResultStore

CONNECT_TIMEOUT_S = 15.0


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


class Observer:
    """Hooks for progress display; the default does nothing."""

    def device_started(self, device: str, cells: int) -> None: ...

    def cell_done(self, device: str, cell: Cell) -> None: ...

    def device_finished(self, device: str) -> None: ...

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
        self.report = RunReport(run_id=new_run_id(), tag=request.tag, started_at=now_iso(),
                                finished_at=None, devices={}, transfer=Transfer(), cells=[],
                                errors=list(errors))

    def error(self, line: str) -> None:
        self.report.errors.append(line)
        self.observer.error(line)

    def keep(self, device: str, cell: Cell) -> None:
        self.store.add_cell(self.report.run_id, cell)
        self.report.cells.append(cell)
        self.observer.cell_done(device, cell)

    def measure_device(self, name: str) -> None:
        try:
            profile = profiles.load(name)
            with connect(profile) as client:
                self._measure_with(profile, client)
        except (ProfileError, LocalAgentError, AgentError, AgentLost, OSError) as exc:
            self.error(f"device {name}: {exc}")
        finally:
            self.observer.device_finished(name)

    def _measure_with(self, profile: Profile, client: AgentClient) -> None:
        name = profile.name
        welcome = client.hello(timeout_s=CONNECT_TIMEOUT_S)
        info = DeviceInfo(agent_version=welcome.agent_version, runtime=welcome.runtime,
                          runtime_version=welcome.runtime_version, facts=welcome.facts)
        self.report.devices[name] = info
        self.store.add_device(self.report.run_id, name, info)

        matrix = plan(self.sources, self.request.delegates or profile.delegates,
                      self.request.threads or profile.threads, self.request.rounds,
                      self.request.settings, self.evaluation)
        self.observer.device_started(name, len(matrix))
        failed_pushes = self._push(name, client)
        if self.dataset and not self._push_dataset(name, client):
            matrix = [(r, source, msgspec.structs.replace(spec, dataset_sha256=None, preprocess=None,
                                                          parity_samples=[]))
                      for r, source, spec in matrix]

        def finish(round_: int, source: ModelSource, cell: Cell) -> Cell:
            return msgspec.structs.replace(cell, device=name, round=round_, variant=source.variant,
                                           model_size_bytes=source.size)

        runnable = []
        for round_, source, spec in matrix:
            if source.sha256 in failed_pushes:
                self.keep(name, finish(round_, source, msgspec.structs.replace(
                    cell_template(spec, source.size), error=failed_pushes[source.sha256])))
            else:
                runnable.append((round_, source, spec))
        if not runnable:
            return

        received: dict[int, bool] = {}

        def on_cell(done: CellDone) -> None:
            round_, source, _ = runnable[done.index]
            received[done.index] = True
            cell, lines = self.evaluation.complete(source, finish(round_, source, done.cell),
                                                   done.evaluation)
            for line in lines:
                self.error(line)
            self.keep(name, cell)

        try:
            client.run_job(secrets.token_hex(8), [spec for _, _, spec in runnable], on_cell=on_cell)
        finally:
            missing = len(runnable) - len(received)
            if missing:
                self.error(f"device {name}: {missing} of {len(runnable)} cells were not measured")

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


def run(request: RunRequest, store: ResultStore, observer: Optional[Observer] = None) -> RunReport:
    """Measure the request's matrix on every device; returns the finished run."""
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
    evaluation = RunEvaluation(sources, grouped, dataset, request.preprocess)
    for line in problems + evaluation.problems:
        observer.error(line)
    state = _Run(request, store, observer, sources, errors + problems + evaluation.problems,
                 evaluation, dataset)
    store.start_run(state.report.run_id, request.tag, state.report.started_at)
    try:
        for device in request.devices:
            state.measure_device(device)
    finally:
        state.report.variants = variants.compare(grouped, state.report.cells, request.accuracy_tolerance)
        state.report.finished_at = now_iso()
        store.finish_run(state.report.run_id, state.report.finished_at, state.report.transfer,
                         state.report.errors)
    return state.report


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
