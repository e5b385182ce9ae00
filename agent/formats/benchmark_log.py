"""A pure parser of TFLite `benchmark_model` console output.

`benchmark_model` has printed its results in several shapes over the years, and a log
may come straight from the binary, through `adb shell`, or out of `logcat`. This module
turns any of them into the measurement part of a cell (docs/contract.md, `CELL`):

- line prefixes: none, `INFO: ` / `WARNING: ` / `ERROR: `, a logcat prefix
  (`11-22 14:13:50.123  1234  1234 I tflite  : ...` or `I/tflite  ( 1234): ...`), or a
  glog prefix (`I1122 14:13:50.123 1234 file.cc:12] ...`);
- numbers in plain or exponent form (`1.24027e+06`);
- stats lines with or without `p5= median= p95=`;
- the old summary `Average inference timings in us: Warmup: .., Init: .., no stats: ..`
  and the newer `Inference timings in us: Init: .., First inference: .., Warmup (avg): ..,
  Inference (avg): ..`;
- memory as `Peak memory footprint (MB): init= overall=`, `Memory footprint delta from
  the start of the tool (MB): init= overall=`, and the periodic-monitoring peak;
- op-profiling tables, whose `count=` lines are not the headline numbers;
- delegate lines (fully, partially with N kernels, not applied; node counts);
- failures that end with no timing lines at all.

Only the stats line right after each `Running benchmark for at least ...` line counts:
the first is the warmup phase, the second the steady state.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from typing import Optional

import msgspec

from agent.wire.delegates import DELEGATES
from agent.wire.records import Cell, DelegateCoverage, LatencyStats, MemoryMB, WarmupStats

RUNTIME = "benchmark_model"

_NUMBER = r"[-+]?(?:\d+\.?\d*|\.\d+)(?:[eE][-+]?\d+)?"

_PREFIXES = (
    # logcat -v threadtime: date time pid tid level tag: message
    re.compile(r"^\d\d-\d\d \d\d:\d\d:\d\d\.\d+\s+\d+\s+\d+ [VDIWEF] [^:]*?\s*: ?"),
    # logcat -v brief: L/tag( pid): message
    re.compile(r"^[VDIWEF]/[^(:]*\(\s*\d+\): ?"),
    # glog: I1122 14:13:50.123456 1234 file.cc:12] message
    re.compile(r"^[IWEF]\d{4} \d\d:\d\d:\d\d\.\d+\s+\d+ \S+:\d+\] ?"),
    re.compile(r"^(?:INFO|WARNING|WARN|ERROR|VERBOSE|FATAL): ?"),
)
_ERROR_PREFIX = re.compile(r"^(?:ERROR: |E/|\d\d-\d\d \S+\s+\d+\s+\d+ E |E\d{4} )")

_STATS = re.compile(r"^count=(\d+)((?:\s+\w+=" + _NUMBER + r")*)\s*$")
_KEY_VALUE = re.compile(r"(\w+)=(" + _NUMBER + ")")
_RUNNING = re.compile(r"^Running benchmark for at least (\d+) iterations")
_NEW_SUMMARY = re.compile(
    r"^Inference timings in us: Init: (?P<init>" + _NUMBER + r"), First inference: (?P<first>" + _NUMBER
    + r"), Warmup \(avg\): (?P<warmup>" + _NUMBER + r"|nan|-?inf), Inference \(avg\): (?P<avg>" + _NUMBER + ")")
_OLD_SUMMARY = re.compile(
    r"^Average inference timings in us: Warmup: (?P<warmup>" + _NUMBER + r"|nan|-?inf), Init: (?P<init>"
    + _NUMBER + r"), (?:no stats|Inference): (?P<avg>" + _NUMBER + ")")
_INIT = re.compile(r"^Initialized session in (" + _NUMBER + r")\s*(ms|s)\b")
_MEMORY = re.compile(
    r"^(?:Peak memory footprint|Memory footprint delta from the start of the tool) \(MB\): "
    r"init=(" + _NUMBER + r") overall=(" + _NUMBER + ")")
_PEAK = re.compile(r"^Overall peak memory footprint \(MB\) via periodic monitoring: (" + _NUMBER + ")")
_MODEL_SIZE = re.compile(r"^The input model file size \(MB\): (" + _NUMBER + ")")
_PARAM = re.compile(r"^([A-Za-z#][\w #()/-]*?)\s*: \[(.*)\]\s*$")
_DELEGATE_FULL = re.compile(
    r"^Explicitly applied (\w+) delegate, and the model graph will be completely executed")
_DELEGATE_PARTIAL = re.compile(
    r"^Explicitly applied (\w+) delegate, and the model graph will be partially executed by the "
    r"delegate w/ (\d+) delegate kernels")
_DELEGATE_NONE = re.compile(r"^Though (\w+) delegate is explicitly applied, the model graph will not be executed")
_REPLACING = re.compile(r"^Replacing (\d+) out of (\d+) node\(s\) with delegate")
_DELEGATED_NODES = re.compile(r"delegate: (\d+) nodes delegated out of (\d+) nodes")
_APPLY_FAILED = re.compile(r"^Failed to apply (\w+) delegate")
_FAILURE_WORDS = re.compile(
    r"(?i)\b(?:failed|failure|error|could not|cannot|can't|unable|not found|aborted|segmentation fault)\b")


@dataclass
class PhaseStats:
    """One `count=... first=... min=...` line."""

    count: int
    values: dict[str, float]


@dataclass
class DelegateReport:
    """What the log says a delegate did with the graph."""

    name: Optional[str] = None
    applied: Optional[str] = None  # "fully" | "partially" | "not" | "failed"
    kernels: Optional[int] = None
    delegated_nodes: Optional[int] = None
    total_nodes: Optional[int] = None


@dataclass
class BenchmarkLog:
    """Everything the parser found in one console log."""

    params: dict[str, str] = field(default_factory=dict)
    model_size_mb: Optional[float] = None
    init_ms: Optional[float] = None
    first_inference_us: Optional[float] = None
    warmup: Optional[PhaseStats] = None
    steady: Optional[PhaseStats] = None
    warmup_avg_us: Optional[float] = None
    inference_avg_us: Optional[float] = None
    memory_init_mb: Optional[float] = None
    memory_overall_mb: Optional[float] = None
    peak_mb: Optional[float] = None
    delegate: DelegateReport = field(default_factory=DelegateReport)
    error_lines: list[str] = field(default_factory=list)
    failed_line: Optional[str] = None
    last_line: Optional[str] = None

    @property
    def measured(self) -> bool:
        """True when the log holds steady-state timings."""
        return self.steady is not None or self.inference_avg_us is not None

    def error(self) -> Optional[str]:
        """The one line that says why the run failed, or None for a run that measured."""
        if self.delegate.applied == "failed" and self.failed_line:
            return self.failed_line
        if self.measured:
            return None
        decisive = self.failed_line or next(iter(self.error_lines), None)
        if decisive:
            return decisive
        if self.last_line:
            return f"no timing results in the log; last line: {self.last_line}"
        return "empty benchmark_model log"


def strip_prefix(line: str) -> str:
    """The message of one log line, without logcat, glog or severity prefixes."""
    line = line.rstrip("\r\n")
    for pattern in _PREFIXES:
        match = pattern.match(line)
        if match:
            line = line[match.end():]
    return line.strip()


def _number(text: str) -> float:
    return float(text)


def _stats(message: str) -> Optional[PhaseStats]:
    match = _STATS.match(message)
    if not match:
        return None
    values = {key: _number(value) for key, value in _KEY_VALUE.findall(match.group(2))}
    return PhaseStats(count=int(match.group(1)), values=values)


def parse(text: str) -> BenchmarkLog:
    """Parse a whole `benchmark_model` console log."""
    log = BenchmarkLog()
    awaiting_stats = False
    phases: list[PhaseStats] = []
    for raw in text.splitlines():
        message = strip_prefix(raw)
        if not message:
            continue
        log.last_line = message
        if _RUNNING.match(message):
            awaiting_stats = True
            continue
        stats = _stats(message)
        if stats is not None:
            # Only the first stats line after a "Running benchmark" line is a phase result;
            # op-profiling tables repeat `count=` lines of their own.
            if awaiting_stats:
                phases.append(stats)
                awaiting_stats = False
            continue
        _parse_line(log, message, is_error=bool(_ERROR_PREFIX.match(raw)))
    if len(phases) > 1:
        log.warmup, log.steady = phases[0], phases[-1]
    elif phases and log.inference_avg_us is None:
        log.warmup = phases[0]  # the run stopped after its warmup phase
    elif phases:
        log.steady = phases[0]
    if log.first_inference_us is None and log.warmup is not None:
        log.first_inference_us = log.warmup.values.get("first")
    return log


def _parse_line(log: BenchmarkLog, message: str, is_error: bool) -> None:
    """Update `log` with one message line that is not a stats line."""
    if match := _NEW_SUMMARY.match(message):
        log.init_ms = _number(match["init"]) / 1000.0
        log.first_inference_us = _number(match["first"])
        log.warmup_avg_us = _finite(match["warmup"])
        log.inference_avg_us = _number(match["avg"])
    elif match := _OLD_SUMMARY.match(message):
        if log.init_ms is None:
            log.init_ms = _number(match["init"]) / 1000.0
        log.warmup_avg_us = _finite(match["warmup"])
        log.inference_avg_us = _number(match["avg"])
    elif match := _INIT.match(message):
        value = _number(match.group(1))
        log.init_ms = value * 1000.0 if match.group(2) == "s" else value
    elif match := _MEMORY.match(message):
        log.memory_init_mb, log.memory_overall_mb = _number(match.group(1)), _number(match.group(2))
    elif match := _PEAK.match(message):
        log.peak_mb = _number(match.group(1))
    elif match := _MODEL_SIZE.match(message):
        log.model_size_mb = _number(match.group(1))
    elif _parse_delegate(log.delegate, message):
        if log.delegate.applied == "failed" and log.failed_line is None:
            log.failed_line = message
    elif match := _PARAM.match(message):
        log.params.setdefault(match.group(1).strip(), match.group(2))
    elif is_error or message.startswith("Benchmarking failed") or _FAILURE_WORDS.search(message):
        if message.startswith(("Failed", "Benchmarking failed")) and log.failed_line is None:
            log.failed_line = message
        if is_error or _FAILURE_WORDS.search(message):
            log.error_lines.append(message)


def _parse_delegate(report: DelegateReport, message: str) -> bool:
    """Update `report` from a delegate line; False when the line is about something else."""
    if match := _DELEGATE_PARTIAL.match(message):
        report.name, report.applied, report.kernels = match.group(1), "partially", int(match.group(2))
    elif match := _DELEGATE_FULL.match(message):
        report.name, report.applied = match.group(1), "fully"
    elif match := _DELEGATE_NONE.match(message):
        report.name, report.applied = match.group(1), "not"
    elif match := _APPLY_FAILED.match(message):
        report.name, report.applied = match.group(1), "failed"
    elif match := (_REPLACING.match(message) or _DELEGATED_NODES.search(message)):
        report.delegated_nodes, report.total_nodes = int(match.group(1)), int(match.group(2))
    else:
        return False
    return True


def _finite(text: str) -> Optional[float]:
    value = float(text)
    return value if value == value and abs(value) != float("inf") else None


def delegate_of(params: dict[str, str]) -> str:
    """The edgebench delegate name the logged parameters describe."""
    lowered = {key.lower(): value.strip().lower() for key, value in params.items()}

    def on(name: str) -> bool:
        return lowered.get(name, "0") in ("1", "true")
    for delegate in DELEGATES.values():
        if not delegate.on_cpu and delegate.log_param and on(delegate.log_param):
            return delegate.name
    xnnpack = DELEGATES["xnnpack"].log_param
    if xnnpack in lowered:
        return "xnnpack" if on(xnnpack) else "cpu"
    return "xnnpack"


def threads_of(params: dict[str, str]) -> Optional[int]:
    """The CPU thread count the logged parameters name, if any."""
    for key in ("Num threads", "#threads used for CPU inference"):
        try:
            value = int(params[key])
        except (KeyError, ValueError):
            continue
        if value >= 1:
            return value
    return None


def _latency(log: BenchmarkLog) -> tuple[Optional[LatencyStats], list[str]]:
    steady = log.steady
    if steady is None:
        if log.inference_avg_us is None:
            return None, []
        mean = log.inference_avg_us
        return (LatencyStats(count=0, min=mean, max=mean, mean=mean, std=0.0, p50=mean),
                ["benchmark_model printed only an average: latency spread unknown"])
    v = steady.values
    mean = v.get("avg", log.inference_avg_us or 0.0)
    warnings = []
    if "median" in v:
        p50 = v["median"]
    else:
        p50 = mean
        warnings.append("benchmark_model printed no median: p50 is the mean")
    return LatencyStats(
        count=steady.count, min=v.get("min", mean), max=v.get("max", mean), mean=mean,
        std=v.get("std", 0.0), p50=p50, p5=v.get("p5"), p95=v.get("p95"),
    ), warnings


def to_cell(log: BenchmarkLog, template: Cell) -> Cell:
    """The cell (docs/contract.md, `CELL`) for a parsed log: `template` says which model, delegate and threads.

    A log without timing results, or whose delegate failed, becomes a failed cell whose
    error is the decisive line; whatever was measured before the failure is kept.
    """
    latency, warnings = _latency(log)
    warmup = None
    if log.warmup is not None:
        warmup = WarmupStats(count=log.warmup.count, mean_us=log.warmup.values.get("avg", log.warmup_avg_us))
    elif log.warmup_avg_us is not None:
        warmup = WarmupStats(count=0, mean_us=log.warmup_avg_us)
    memory = None
    if log.memory_overall_mb is not None or log.peak_mb is not None:
        memory = MemoryMB(init=log.memory_init_mb, overall=log.memory_overall_mb, peak_rss=log.peak_mb)
    coverage = None
    report = log.delegate
    if report.delegated_nodes is not None and report.total_nodes:
        coverage = DelegateCoverage(delegated_nodes=report.delegated_nodes, total_nodes=report.total_nodes,
                                    full=report.delegated_nodes == report.total_nodes)
    if report.applied == "not":
        warnings.append(f"the {report.name} delegate took no part of the graph")
    elif report.applied == "partially" and coverage is None:
        warnings.append(f"the {report.name} delegate took part of the graph ({report.kernels} delegate kernels)")
    error = log.error()
    return msgspec.structs.replace(
        template,
        status="failed" if error else "ok",
        error=error,
        runtime=RUNTIME,
        init_ms=log.init_ms,
        first_inference_us=log.first_inference_us,
        warmup=warmup,
        latency_us=latency,
        memory_mb=memory,
        delegate_coverage=coverage,
        warnings=[*template.warnings, *warnings],
    )
