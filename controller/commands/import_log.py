"""`controller import-log`: a `benchmark_model` console log someone ran by hand, stored as a run.

The log becomes one cell in the same shape, table and history as a measured one, so a
phone in another lab still sits next to the Pis in reports and regression checks.
"""

from __future__ import annotations

import argparse
from pathlib import Path
from typing import Optional

from agent.android import benchmark_log
from agent.android.device_facts import RUNTIME
from agent.modelfile import ModelFormatError
from agent.schema import Cell, CpuFacts, DeviceInfo, Facts, RunReport, Transfer
from controller import __version__, locations, models
from controller.commands import print_json, stderr_console, stdout_console
from controller.display import results_table
from controller.runner import new_run_id, now_iso
from controller.store import ResultStore


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("import-log", help="store a benchmark_model console log as a result")
    p.add_argument("file", metavar="FILE", help="the console output (adb shell, logcat or a file)")
    p.add_argument("--device", required=True, help="device name the result is filed under")
    p.add_argument("--model", required=True, metavar="PATH", help="the .tflite file the log measured")
    p.add_argument("--delegate", help="delegate name (default: read from the log's parameters)")
    p.add_argument("--threads", type=int, help="thread count (default: read from the log's parameters)")
    p.add_argument("--tag", help="label for this run")
    p.add_argument("--db", help="results database (default: EDGEBENCH_DB or the user data dir)")
    p.add_argument("--json", action="store_true", help="print the run as one JSON document")
    p.set_defaults(func=main)


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


def main(args: argparse.Namespace) -> int:
    console = stderr_console()
    if args.threads is not None and args.threads < 1:
        console.print("[red]error:[/red] --threads must be at least 1", highlight=False)
        return 2
    try:
        text = Path(args.file).read_text(encoding="utf-8", errors="replace")
    except OSError as exc:
        console.print(f"[red]error:[/red] {args.file}: {exc.strerror or exc}", highlight=False)
        return 2
    try:
        source = models.load(Path(args.model))
    except (OSError, ModelFormatError) as exc:
        reason = exc.strerror if isinstance(exc, OSError) and exc.strerror else exc
        console.print(f"[red]error:[/red] {args.model}: {reason}", highlight=False)
        return 2
    cell = log_cell(text, source, args.device, args.delegate, args.threads)
    info = DeviceInfo(agent_version=f"import-log (controller {__version__})", runtime=RUNTIME,
                      runtime_version=None, facts=imported_facts(args.device))
    report = RunReport(run_id=new_run_id(), tag=args.tag, started_at=now_iso(), finished_at=None,
                       devices={args.device: info}, transfer=Transfer(), cells=[cell])
    with ResultStore(args.db or locations.default_db()) as store:
        store.start_run(report.run_id, report.tag, report.started_at)
        store.add_device(report.run_id, args.device, info)
        store.add_cell(report.run_id, cell, 0)
        report.finished_at = now_iso()
        store.finish_run(report.run_id, report.finished_at, report.transfer, report.errors)
    if args.json:
        print_json(report)
        console.print(results_table(report))
    else:
        stdout_console().print(results_table(report))
    return 0
