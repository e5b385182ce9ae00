"""A pure parser of TFLite / LiteRT `benchmark_model` console output: what is there, nothing else.

A log may come straight from the binary, through `adb shell`, out of `logcat`, or as the
last few lines someone pasted into an issue. Every figure the log does not print stays
null; nothing is filled in from another figure.

- line prefixes: none, `INFO: ` / `WARN: ` / `VERBOSE: `..., logcat (`11-22 14:13:50.123
  1234 1234 I tflite  : `, `I/tflite  ( 1234): `), glog, and the new LiteRT tool's source
  location (`INFO: [./litert/tools/benchmark_litert_model.h:88] `);
- stats lines (`count= first= curr= min= max= avg= std=`, maybe `p5= median= p95=`, maybe
  `1.2e+06` numbers) wherever they stand: the last one before the summary is the timed
  phase, the one before it the warmup;
- the summaries `Average inference timings in us: Warmup: .., Init: .., no stats: ..`,
  `Inference timings in us: Init: .., First inference: .., Warmup (avg): .., Inference
  (avg): ..` and the LiteRT tool's `BENCHMARK RESULTS` block in ms;
- memory as `Peak memory footprint (MB): init= overall=`, `Memory footprint delta from
  the start of the tool (MB): ...`, the periodic-monitoring peak, `Init/Overall footprint`;
- the delegate as the log names it, and its partitioning;
- the model it measured: its `Graph: [path]` parameter and `The input model file size (MB): N`;
- flags the tool did not honour (`Unconsumed cmdline flags`, `Duplicate flags`);
- op-profiling tables (see `op_tables`);
- failures that end with no timing lines at all.
"""

from __future__ import annotations

import re
import shlex
from dataclasses import dataclass, field
from decimal import Decimal
from typing import Optional

import msgspec

from agent.formats import op_tables
from agent.wire.delegates import DELEGATES
from agent.wire.records import (
    Cell,
    DelegateCoverage,
    LatencyStats,
    MemoryMB,
    NodeRef,
    Settings,
    WarmupStats,
    judge_stability,
)

RUNTIME = "benchmark_model"

_NUMBER = r"[-+]?(?:\d+\.?\d*|\.\d+)(?:[eE][-+]?\d+)?"

_PREFIXES = (
    # logcat -v threadtime: date time pid tid level tag: message
    re.compile(r"^\d\d-\d\d \d\d:\d\d:\d\d\.\d+\s+\d+\s+\d+ [VDIWEF] [^:]*?\s*: ?"),
    # logcat -v brief: L/tag( pid): message
    re.compile(r"^[VDIWEF]/[^(:]*\(\s*\d+\): ?"),
    # glog / absl: I1122 14:13:50.123456 1234 file.cc:12] message
    re.compile(r"^[IWEF]\d{4} [\d:.]+\s+\d+ \S+:\d+\] ?"),
    re.compile(r"^(?:INFO|WARNING|WARN|ERROR|VERBOSE|DEBUG|FATAL): ?"),
    # the LiteRT tools name their source line: [./litert/tools/benchmark_litert_model.h:88]
    re.compile(r"^\[[^\]\s]+\.(?:h|cc|cpp):\d+\] ?"),
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
_RESULTS = re.compile(r"^=+ BENCHMARK RESULTS =+$")
# The LiteRT tool's results block: "Inference (avg):      0.46 ms (2112 runs)"
_MS_LINE = re.compile(r"^(?P<key>Model initialization|Warmup \(first\)|Warmup \(avg\)|Inference \(avg\)|"
                      r"Inference \(min\)|Inference \(max\)|Inference \(std\)):\s+(?P<value>" + _NUMBER
                      + r")(?: ms)?(?: \((?P<runs>\d+) runs\))?\s*$")
_FOOTPRINT = re.compile(r"^(Init|Overall) footprint:\s+(" + _NUMBER + r") MB")
_PEAK_LITERT = re.compile(r"^Peak memory(?: usage)?:\s+(" + _NUMBER + r") MB")
_INIT = re.compile(r"^Initialized session in (" + _NUMBER + r")\s*(ms|s)\b")
_MEMORY = re.compile(
    r"^(?:Peak memory footprint|Memory footprint delta from the start of the tool) \(MB\): "
    r"init=(" + _NUMBER + r") overall=(" + _NUMBER + ")")
_PEAK = re.compile(r"^Overall peak memory footprint \(MB\) via periodic monitoring: (" + _NUMBER + ")")
_PARAM = re.compile(r"^([A-Za-z#][\w #()/-]*?)\s*: \[(.*)\]\s*$")
_MODEL_SIZE = re.compile(r"^The input model file size \(MB\): (" + _NUMBER + r")\s*$")
# Every version of the tool prints the model's size as bytes / 1e6 (BenchmarkModel::Run, in
# TensorFlow's tools and in LiteRT's copy that its own tool builds on), not in units of 2^20.
_MODEL_SIZE_UNIT = Decimal(10) ** 6
_UNCONSUMED = re.compile(r"^Unconsumed cmdline flags:\s*(.*)$")
_DUPLICATE = re.compile(r"^Duplicate flags:\s*(.*)$")
_DELEGATE_FULL = re.compile(
    r"^Explicitly applied (\w+) delegate, and the model graph will be completely executed by the delegate")
_DELEGATE_PARTIAL = re.compile(
    r"^Explicitly applied (\w+) delegate, and the model graph will be partially executed by the "
    r"delegate w/ (\d+) delegate kernels")
_DELEGATE_NONE = re.compile(r"^Though (\w+) delegate is explicitly applied, the model graph will not be executed")
_REPLACING = re.compile(r"^Replacing (\d+)(?: out of (\d+))? node\(s\) with delegate(?: \((\w+)\))?")
_DELEGATED_NODES = re.compile(r"delegate: (\d+) nodes delegated out of (\d+) nodes")
_CREATED = re.compile(r"^Created TensorFlow Lite (?:(\w+) )?delegate for (\w+)|^(\w+) delegate created\.")
_APPLY_FAILED = re.compile(r"^Failed to apply (\w+) delegate")
_FAILURE_WORDS = re.compile(
    r"(?i)\b(?:failed|failure|error|could not|cannot|can't|unable|not found|aborted|segmentation fault)\b")

# The words a log uses for a delegate, and edgebench's names for them.
_DELEGATE_WORDS = {
    "xnnpack": "xnnpack", "gpu": "gpu", "nnapi": "nnapi", "hexagon": "hexagon", "external": "external",
    "coreml": "coreml", "tflitexnnpackdelegate": "xnnpack", "tflitegpudelegatev2": "gpu",
    "tflitegpudelegate": "gpu", "tflitennapidelegate": "nnapi", "tflitehexagondelegate": "hexagon",
}
# Flags that choose what runs the graph: if the tool ignored one, the requested label is not a fact.
_EXTERNAL_FLAGS = {"external_delegate_path", "external_delegate_options"}
_DELEGATE_FLAGS = {"use_xnnpack", "use_gpu", "use_nnapi", "use_hexagon", *_EXTERNAL_FLAGS}


@dataclass
class PhaseStats:
    """One `count=... first=... min=...` line: the count and whatever figures it printed."""

    count: int
    values: dict[str, float]


@dataclass
class DelegateReport:
    """What the log says a delegate did with the graph."""

    name: Optional[str] = None           # edgebench's name for the delegate the log names
    applied: Optional[str] = None        # "fully" | "partially" | "not" | "failed"
    kernels: Optional[int] = None
    delegated_nodes: Optional[int] = None
    total_nodes: Optional[int] = None
    created: Optional[str] = None        # a delegate the log says it created


@dataclass
class BenchmarkLog:
    """Everything the parser found in one console log; None where the log says nothing."""

    params: dict[str, str] = field(default_factory=dict)
    phases: list[PhaseStats] = field(default_factory=list)  # stats lines up to the summary
    headers: int = 0                      # "Running benchmark for at least ..." lines
    summary: bool = False
    init_ms: Optional[float] = None
    first_inference_us: Optional[float] = None
    warmup_avg_us: Optional[float] = None
    inference_avg_us: Optional[float] = None
    ms: dict[str, tuple[float, Optional[int]]] = field(default_factory=dict)  # LiteRT results block
    memory_init_mb: Optional[float] = None
    memory_overall_mb: Optional[float] = None
    peak_mb: Optional[float] = None
    model_size_mb: Optional[str] = None  # as printed: its digits say how precise it is
    delegate: DelegateReport = field(default_factory=DelegateReport)
    unconsumed: list[str] = field(default_factory=list)
    duplicates: list[str] = field(default_factory=list)
    tables: op_tables.TableReader = field(default_factory=op_tables.TableReader)
    error_lines: list[str] = field(default_factory=list)
    failed_line: Optional[str] = None
    last_line: Optional[str] = None

    @property
    def warmup(self) -> Optional[PhaseStats]:
        """The warmup stats line: the one before the timed phase."""
        timed = self._timed_index()
        if timed is None:
            return self.phases[0] if self.phases and not self.summary else None
        return self.phases[timed - 1] if timed >= 1 else None

    @property
    def steady(self) -> Optional[PhaseStats]:
        """The timed phase: the last stats line before the summary."""
        timed = self._timed_index()
        return self.phases[timed] if timed is not None else None

    def _timed_index(self) -> Optional[int]:
        if not self.phases:
            return None
        if self.summary or self.headers == 0:
            return len(self.phases) - 1
        # No summary: a run that stopped after its warmup printed one header and one line.
        return len(self.phases) - 1 if self.headers >= 2 and len(self.phases) >= 2 else None

    @property
    def measured(self) -> bool:
        """True when the log holds steady-state timings."""
        return self.steady is not None or self.inference_avg_us is not None or "Inference (avg)" in self.ms

    def error(self) -> Optional[str]:
        """The one line that says why the run failed, or None for a run that measured."""
        if self.delegate.applied == "failed" and self.failed_line:
            return self.failed_line
        if self.measured:
            return None
        decisive = self.failed_line or next(iter(self.error_lines), None)
        if decisive:
            return decisive
        if self.unconsumed:
            return f"no timing results in the log; benchmark_model did not use: {' '.join(self.unconsumed)}"
        if self.last_line:
            return f"no timing results in the log; last line: {self.last_line}"
        return "empty benchmark_model log"

    def delegate_name(self) -> Optional[str]:
        """The delegate the log says ran the graph: `cpu` when it says XNNPACK was off and
        nothing else ran, None when it does not say."""
        report = self.delegate
        if report.name:
            return report.name
        if report.created:
            return report.created
        # "Use gpu : [1]" and "Use gpu: [1]" alike; the registry names each delegate's parameter
        lowered = {key.lower().replace(" ", ""): value.strip().lower() for key, value in self.params.items()}

        def on(param: Optional[str]) -> bool:
            return param is not None and lowered.get(param.replace(" ", "")) in ("1", "true")
        for delegate in DELEGATES.values():
            if not delegate.on_cpu and on(delegate.log_param):
                return delegate.name
        if lowered.get("externaldelegatepath"):
            return "external"
        xnnpack = (DELEGATES["xnnpack"].log_param or "").replace(" ", "")
        if xnnpack in lowered:
            return "xnnpack" if on(xnnpack) else "cpu"
        return None


def strip_prefix(line: str) -> str:
    """The message of one log line, without logcat, glog, severity or source-location prefixes."""
    line = line.rstrip("\r\n")
    for pattern in _PREFIXES:
        match = pattern.match(line)
        if match:
            line = line[match.end():]
    return line.strip()


def _stats(message: str) -> Optional[PhaseStats]:
    match = _STATS.match(message)
    if not match:
        return None
    values = {key: float(value) for key, value in _KEY_VALUE.findall(match.group(2))}
    return PhaseStats(count=int(match.group(1)), values=values)


def parse(text: str) -> BenchmarkLog:
    """Parse a whole `benchmark_model` console log, or any part of one."""
    log = BenchmarkLog()
    for raw in text.splitlines():
        message = strip_prefix(raw)
        if not message:
            continue
        log.last_line = message
        if log.tables.feed(message):
            continue
        if _RUNNING.match(message):
            log.headers += 1
        elif (stats := _stats(message)) is not None:
            if not log.summary:
                log.phases.append(stats)
        else:
            _parse_line(log, message, is_error=bool(_ERROR_PREFIX.match(raw)))
    if log.first_inference_us is None and log.warmup is not None:
        log.first_inference_us = log.warmup.values.get("first")
    return log


def _parse_line(log: BenchmarkLog, message: str, is_error: bool) -> None:
    """Update `log` with one message line that is not a stats line."""
    if match := _NEW_SUMMARY.match(message):
        log.summary = True
        log.init_ms = float(match["init"]) / 1000.0
        log.first_inference_us = float(match["first"])
        log.warmup_avg_us = _finite(match["warmup"])
        log.inference_avg_us = float(match["avg"])
    elif match := _OLD_SUMMARY.match(message):
        log.summary = True
        log.init_ms = float(match["init"]) / 1000.0
        log.warmup_avg_us = _finite(match["warmup"])
        log.inference_avg_us = float(match["avg"])
    elif _RESULTS.match(message):
        log.summary = True
    elif match := _MS_LINE.match(message):
        log.ms[match["key"]] = (float(match["value"]), int(match["runs"]) if match["runs"] else None)
    elif match := _MODEL_SIZE.match(message):
        log.model_size_mb = match.group(1)
    elif match := _INIT.match(message):
        if log.init_ms is None:
            value = float(match.group(1))
            log.init_ms = value * 1000.0 if match.group(2) == "s" else value
    elif match := _MEMORY.match(message):
        log.memory_init_mb, log.memory_overall_mb = float(match.group(1)), float(match.group(2))
    elif match := _FOOTPRINT.match(message):
        if match.group(1) == "Init":
            log.memory_init_mb = float(match.group(2))
        else:
            log.memory_overall_mb = float(match.group(2))
    elif match := (_PEAK.match(message) or _PEAK_LITERT.match(message)):
        log.peak_mb = float(match.group(1))
    elif match := _UNCONSUMED.match(message):
        log.unconsumed += _flags(match.group(1))
    elif match := _DUPLICATE.match(message):
        log.duplicates += [flag.strip() for flag in match.group(1).split(",") if flag.strip()]
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


def _flags(text: str) -> list[str]:
    """`--a=1 --graph test` -> ["--a=1", "--graph test"]: each flag with what follows it."""
    try:
        words = shlex.split(text)
    except ValueError:
        words = text.split()
    flags: list[str] = []
    for word in words:
        if word.startswith("-") or not flags:
            flags.append(word)
        else:
            flags[-1] += f" {word}"
    return flags


def _word(name: str) -> str:
    return _DELEGATE_WORDS.get(name.lower(), "external")


def _parse_delegate(report: DelegateReport, message: str) -> bool:
    """Update `report` from a delegate line; False when the line is about something else."""
    if match := _DELEGATE_PARTIAL.match(message):
        report.name, report.applied, report.kernels = _word(match.group(1)), "partially", int(match.group(2))
    elif match := _DELEGATE_FULL.match(message):
        report.name, report.applied = _word(match.group(1)), "fully"
    elif match := _DELEGATE_NONE.match(message):
        report.name, report.applied = _word(match.group(1)), "not"
    elif match := _APPLY_FAILED.match(message):
        report.name, report.applied = _word(match.group(1)), "failed"
    elif match := _REPLACING.match(message):
        report.delegated_nodes = int(match.group(1))
        report.total_nodes = int(match.group(2)) if match.group(2) else None
        if match.group(3) and report.created is None:
            report.created = _word(match.group(3))
    elif match := _DELEGATED_NODES.search(message):
        report.delegated_nodes, report.total_nodes = int(match.group(1)), int(match.group(2))
    elif match := _CREATED.match(message):
        # "Created TensorFlow Lite XNNPACK delegate for CPU." / "... delegate for GPU."
        word = match.group(1) or match.group(2) or match.group(3)
        if report.created is None or report.created == "xnnpack":
            report.created = _word(word)
    else:
        return False
    return True


def _finite(text: str) -> Optional[float]:
    value = float(text)
    return value if value == value and abs(value) != float("inf") else None


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


def model_mismatch(log: BenchmarkLog, name: str, size_bytes: int) -> Optional[str]:
    """One line naming both models when the one the log measured (its `Graph:` file name, its
    printed file size) is not the file `name` of `size_bytes`; None when the log agrees or
    names neither.

    A printed size agrees when it is `size_bytes` rounded to the digits the log shows.
    """
    graph = _file_name(log.params.get("Graph", ""))
    printed = log.model_size_mb
    other_name = graph is not None and graph != name
    other_size = printed is not None and not _rounds_to(size_bytes, printed)
    if not (other_name or other_size):
        return None
    measured = f"{graph or 'a model'} ({printed} MB)" if printed else graph
    # `:g` shows six significant digits, as the tool's own stream does
    return f"the log measured {measured}, not {name} ({float(_in_mb(size_bytes)):g} MB)"


def _file_name(path: str) -> Optional[str]:
    """The file name a logged model path ends in; None for no path or a file descriptor (`fd:...`)."""
    path = path.strip()
    if not path or path.startswith("fd:"):
        return None
    return re.split(r"[\\/]", path)[-1] or None


def _in_mb(size_bytes: int) -> Decimal:
    """A file size in the MB the tool prints, exactly."""
    return Decimal(size_bytes) / _MODEL_SIZE_UNIT


def _rounds_to(size_bytes: int, printed_mb: str) -> bool:
    """Whether `size_bytes`, in the tool's MB, is within half a unit of the last digit printed."""
    printed = Decimal(printed_mb)
    half_unit = Decimal(5).scaleb(printed.as_tuple().exponent - 1)
    return abs(_in_mb(size_bytes) - printed) <= half_unit


def _latency(log: BenchmarkLog) -> Optional[LatencyStats]:
    """The timed phase as printed: the stats line first, the summaries for what it lacks."""
    steady = log.steady
    values = steady.values if steady else {}
    ms = log.ms

    def from_ms(key: str) -> Optional[float]:
        return ms[key][0] * 1000.0 if key in ms else None
    mean = values.get("avg", log.inference_avg_us if log.inference_avg_us is not None else from_ms("Inference (avg)"))
    count = steady.count if steady else (ms["Inference (avg)"][1] if "Inference (avg)" in ms else None)
    if steady is None and mean is None:
        return None
    return LatencyStats(
        count=count, min=values.get("min", from_ms("Inference (min)")),
        max=values.get("max", from_ms("Inference (max)")), mean=mean,
        # the LiteRT block prints the std without a unit; its stats lines show it is in ms
        std=values.get("std", from_ms("Inference (std)")),
        p50=values.get("median"), p5=values.get("p5"), p95=values.get("p95"))


def _warmup(log: BenchmarkLog) -> Optional[WarmupStats]:
    phase = log.warmup
    mean = log.warmup_avg_us
    if mean is None and "Warmup (avg)" in log.ms:
        mean = log.ms["Warmup (avg)"][0] * 1000.0
    if phase is not None:
        return WarmupStats(count=phase.count, mean_us=phase.values.get("avg", mean))
    if mean is not None:
        runs = log.ms.get("Warmup (avg)", (None, None))[1]
        return WarmupStats(count=runs, mean_us=mean)
    return None


def _coverage(log: BenchmarkLog, not_delegated: Optional[list[NodeRef]]) -> Optional[DelegateCoverage]:
    report = log.delegate
    full: Optional[bool] = {"fully": True, "partially": False, "not": False}.get(report.applied or "")
    delegated, total = report.delegated_nodes, report.total_nodes
    if report.applied == "not" and delegated is None:
        delegated = 0
    if delegated is not None and total is not None:
        full = delegated == total
    elif not_delegated:
        full = False
    if delegated is None and total is None and full is None and not_delegated is None:
        return None
    return DelegateCoverage(delegated_nodes=delegated, total_nodes=total, full=full, not_delegated=not_delegated)


def _flag_names(flags: list[str]) -> set[str]:
    """`["--num_runs=5", "--graph test"]` -> {"num_runs", "graph"}."""
    return {flag.lstrip("-").split("=")[0].split()[0] for flag in flags if flag.strip("-")}


def _honoured(settings: Optional[Settings], ignored: set[str]) -> Optional[Settings]:
    """`settings` without those the tool ignored."""
    if settings is None:
        return None
    dropped = {name: None for name in settings.__struct_fields__ if name in ignored}
    return msgspec.structs.replace(settings, **dropped) if dropped else settings


def to_cell(log: BenchmarkLog, template: Cell) -> Cell:
    """The CONTRACT cell for a parsed log; `template` says which model, threads and settings
    were asked for, and the delegate asked for (or None).

    The cell's delegate is what the log says ran the graph. A log that says nothing keeps
    the requested label, unless the tool ignored the flag that chose it; with no request
    it is null. A log without timing results, or whose delegate failed, becomes a failed
    cell whose error is the decisive line; whatever was measured before is kept.
    """
    warnings: list[str] = []
    unconsumed = log.unconsumed
    if log.delegate_name() == "external":
        # The tool lists the external delegate's flags as unconsumed even when its provider used them.
        unconsumed = [flag for flag in unconsumed if not _flag_names([flag]) & _EXTERNAL_FLAGS]
    latency = _latency(log)
    if latency is not None and latency.p50 is None:
        warnings.append("benchmark_model printed no median: p50 unknown; comparisons use the mean")
    ignored = _flag_names(unconsumed)
    delegate = log.delegate_name()
    asked = template.delegate if not (ignored & _DELEGATE_FLAGS) else None
    if delegate is None and asked is not None:
        delegate = asked
        warnings.append(f"the log does not name the delegate; {asked} as requested")
    elif delegate is None:
        warnings.append("the log does not say which delegate ran the graph")
    elif template.delegate is not None and delegate != template.delegate:
        warnings.append(f"asked for {template.delegate}; the log shows {delegate}")
    if unconsumed:
        warnings.append(f"benchmark_model did not use these flags: {' '.join(unconsumed)}")
    if log.duplicates:
        warnings.append(f"benchmark_model saw duplicate flags ({', '.join(log.duplicates)}); "
                        "which value it used is not printed")
    memory = None
    if log.memory_init_mb is not None or log.memory_overall_mb is not None or log.peak_mb is not None:
        memory = MemoryMB(init=log.memory_init_mb, overall=log.memory_overall_mb, peak_rss=log.peak_mb)
    profile = log.tables.profile(delegate, latency)
    if delegate is None and profile is not None:
        delegate = op_tables.delegate_kernel(profile)  # e.g. TfLiteNnapiDelegate rows in the run order
        if delegate is not None:
            warnings = [w for w in warnings if not w.startswith("the log does not")]
    coverage = _coverage(log, op_tables.not_delegated(profile))
    report = log.delegate
    if report.applied == "not":
        warnings.append(f"the {report.name} delegate took no part of the graph")
    elif report.applied == "partially" and report.total_nodes is None:
        warnings.append(f"the {report.name} delegate took part of the graph ({report.kernels} delegate kernels)")
    init_ms = log.init_ms
    if init_ms is None and "Model initialization" in log.ms:
        init_ms = log.ms["Model initialization"][0]
    first = log.first_inference_us
    if first is None and "Warmup (first)" in log.ms:
        first = log.ms["Warmup (first)"][0] * 1000.0
    error = log.error()
    return msgspec.structs.replace(
        template,
        status="failed" if error else "ok",
        error=error,
        delegate=delegate,
        runtime=RUNTIME,
        # a duplicated flag's value is not printed either: not a fact about the run
        settings=_honoured(template.settings, ignored | set(log.duplicates)),
        init_ms=init_ms,
        first_inference_us=first,
        warmup=_warmup(log),
        latency_us=latency,
        # Judged from what the log printed: without quartiles, undecided and said so.
        stability=judge_stability(latency) if latency is not None else None,
        memory_mb=memory,
        delegate_coverage=coverage,
        op_profile=profile,
        warnings=[*template.warnings, *warnings],
    )
