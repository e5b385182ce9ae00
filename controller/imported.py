"""A `benchmark_model` console log someone ran by hand, as a stored run.

The log becomes one cell in the same shape, table and history as a measured one, so a
phone in another lab still sits next to the Pis in reports and regression checks.
"""

from __future__ import annotations

from typing import Optional

from agent.formats import benchmark_log
from agent.formats.benchmark_log import RUNTIME
from agent.wire.records import Cell, CpuFacts, Facts
from controller import __version__, models, validate
from controller.records import DeviceInfo, RunReport, Transfer, new_run_id, now_iso
from controller.store import ResultStore


def imported_facts(device: str) -> Facts:
    """The facts a log alone tells: the name it is filed under and the tool that ran."""
    return Facts(hostname=device, board=None, machine="unknown", os="unknown", kernel="", python="",
                 runtime=RUNTIME, runtime_version=None, cpu=CpuFacts(count=None), memory_mb=None,
                 temp_c=None)


class UnknownThreads(ValueError):
    """The log does not say how many threads it ran with, and none was given."""


class ModelMismatch(ValueError):
    """The log names or sizes another model than the one given, and that was to be refused."""


def log_cell(text: str, source: models.ModelSource, device: str, delegate: Optional[str],
             threads: Optional[int], strict: bool = False) -> Cell:
    """The cell a console log describes, for the model it measured.

    `delegate` and `threads` are what the user states; the log's own word on the
    delegate wins (with a warning when they differ). UnknownThreads when neither the
    log nor the user gives a thread count. A log whose own model (its file name, its
    printed size) is not `source` gives the cell a warning that names both, or
    ModelMismatch with that line when `strict`.
    """
    parsed = benchmark_log.parse(text)
    threads = threads or benchmark_log.threads_of(parsed.params)
    if threads is None:
        raise UnknownThreads("the log does not say how many threads it ran with: pass --threads N")
    mismatch = benchmark_log.model_mismatch(parsed, source.name, source.size)
    if mismatch is not None and strict:
        raise ModelMismatch(mismatch)
    template = Cell(
        device=device, model=source.name, model_sha256=source.sha256, model_size_bytes=source.size,
        variant=source.variant, delegate=delegate, threads=threads, status="failed", error="not parsed",
        warnings=[mismatch] if mismatch is not None else [],
    )
    return benchmark_log.to_cell(parsed, template)


def import_log(store: ResultStore, text: str, source: models.ModelSource, device: str,
               delegate: Optional[str] = None, threads: Optional[int] = None,
               tag: Optional[str] = None, strict: bool = False) -> RunReport:
    """Store the log as a run of one cell, in the same steps a measured run takes.

    Before anything is stored: UnknownThreads when the thread count is unknown,
    ModelMismatch under `strict` when the log measured another model, and
    `validate.DocumentError` when the run would break the bounds an imported run keeps
    (a name with a control character, a thread count the log invents), so that every run
    stored can be exported and imported again.
    """
    cell = log_cell(text, source, device, delegate, threads, strict)
    info = DeviceInfo(agent_version=f"import-log (controller {__version__})", runtime=RUNTIME,
                      runtime_version=None, facts=imported_facts(device))
    report = RunReport(run_id=new_run_id(), tag=tag, started_at=now_iso(), finished_at=None,
                       devices={device: info}, transfer=Transfer(), cells=[cell])
    validate.check_run(report)
    store.start_run(report.run_id, report.tag, report.started_at)
    store.add_device(report.run_id, device, info)
    store.add_cell(report.run_id, cell, 0)
    report.finished_at = now_iso()
    store.finish_run(report.run_id, report.finished_at, report.transfer, report.errors)
    return report
