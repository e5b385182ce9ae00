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
from typing import Optional

import msgspec

from agent.jobs import cell_template
from agent.protocol import CellSpec
from agent.schema import Cell, DeviceInfo, RunReport, Settings, Transfer
from controller import locations, models, profiles
from controller.client import AgentClient, AgentError, AgentLost
from controller.local_agent import LocalAgent, LocalAgentError
from controller.models import ModelSource
from controller.profiles import Profile, ProfileError
from controller.store import ResultStore

CONNECT_TIMEOUT_S = 15.0


class NothingToMeasure(ValueError):
    """No readable model was given: there is no run to make."""


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
        with AgentClient(profile.address) as client:
            yield client
    else:
        raise ProfileError(f"device {profile.name}: transport {profile.transport!r} is not supported")


def plan(sources: list[ModelSource], delegates: list[str], threads: list[int], rounds: int,
         settings: Settings) -> list[tuple[int, ModelSource, CellSpec]]:
    """The matrix in run order: whole rounds one after another, so drift hits all cells."""
    return [
        (round_, source, CellSpec(model_sha256=source.sha256, model_name=source.name,
                                  delegate=delegate, threads=n, settings=settings, seed=round_))
        for round_ in range(rounds)
        for source in sources
        for delegate in delegates
        for n in threads
    ]


class _Run:
    """State of one run while devices are measured."""

    def __init__(self, request: RunRequest, store: ResultStore, observer: Observer,
                 sources: list[ModelSource], errors: list[str]):
        self.request, self.store, self.observer = request, store, observer
        self.sources = sources
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
                      self.request.settings)
        self.observer.device_started(name, len(matrix))
        failed_pushes = self._push(name, client)

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

        def on_cell(index: int, cell: Cell) -> None:
            round_, source, _ = runnable[index]
            received[index] = True
            self.keep(name, finish(round_, source, cell))

        try:
            client.run_job(secrets.token_hex(8), [spec for _, _, spec in runnable], on_cell=on_cell)
        finally:
            missing = len(runnable) - len(received)
            if missing:
                self.error(f"device {name}: {missing} of {len(runnable)} cells were not measured")

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
    for line in errors:
        observer.error(line)
    if not sources:
        raise NothingToMeasure("no readable model to measure")
    state = _Run(request, store, observer, sources, errors)
    store.start_run(state.report.run_id, request.tag, state.report.started_at)
    try:
        for device in request.devices:
            state.measure_device(device)
    finally:
        state.report.finished_at = now_iso()
        store.finish_run(state.report.run_id, state.report.finished_at, state.report.transfer,
                         state.report.errors)
    return state.report
