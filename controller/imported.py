"""A `benchmark_model` console log someone ran by hand, as a stored run.

The log becomes one cell in the same shape, table and history as a measured one, so a
phone in another lab still sits next to the Pis in reports and regression checks.
"""

from __future__ import annotations

from typing import Optional

from agent.formats import benchmark_log
from agent.formats.benchmark_log import RUNTIME
from agent.wire.records import Cell, CpuFacts, Facts
from controller import __version__, models
from controller.records import DeviceInfo, RunReport, Transfer, new_run_id, now_iso
from controller.store import ResultStore


def imported_facts(device: str) -> Facts:
    """The facts a log alone tells: the name it is filed under and the tool that ran."""
    return Facts(hostname=device, board=None, machine="unknown", os="unknown", kernel="", python="",
                 runtime=RUNTIME, runtime_version=None, cpu=CpuFacts(count=0), memory_mb=None, temp_c=None)


def log_cell(text: str, source: models.ModelSource, device: str, delegate: Optional[str],
             threads: Optional[int]) -> Cell:
    """The cell a console log describes, for the model it measured."""
    parsed = benchmark_log.parse(text)
    template = Cell(
        device=device, model=source.name, model_sha256=source.sha256, model_size_bytes=source.size,
        variant=source.variant, delegate=delegate or benchmark_log.delegate_of(parsed.params),
        threads=threads or benchmark_log.threads_of(parsed.params) or 1, status="failed",
        error="not parsed",
    )
    return benchmark_log.to_cell(parsed, template)


def import_log(store: ResultStore, text: str, source: models.ModelSource, device: str,
               delegate: Optional[str] = None, threads: Optional[int] = None,
               tag: Optional[str] = None) -> RunReport:
    """Store the log as a run of one cell, in the same steps a measured run takes."""
    cell = log_cell(text, source, device, delegate, threads)
    info = DeviceInfo(agent_version=f"import-log (controller {__version__})", runtime=RUNTIME,
                      runtime_version=None, facts=imported_facts(device))
    report = RunReport(run_id=new_run_id(), tag=tag, started_at=now_iso(), finished_at=None,
                       devices={device: info}, transfer=Transfer(), cells=[cell])
    store.start_run(report.run_id, report.tag, report.started_at)
    store.add_device(report.run_id, device, info)
    store.add_cell(report.run_id, cell, 0)
    report.finished_at = now_iso()
    store.finish_run(report.run_id, report.finished_at, report.transfer, report.errors)
    return report
