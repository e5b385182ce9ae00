"""Result records: every field a cell, a device or a run reports, defined once.

The agent fills the measurement part of a `Cell`; the controller adds what only it knows
(device name, round) and stores and prints the same records. The JSON shape of these
structs is the public contract of `controller run --json`.
"""

from __future__ import annotations

from typing import Literal, Optional

import msgspec

Variant = Literal["fp32", "fp16", "dynamic", "int8"]
Status = Literal["ok", "failed"]


class Record(msgspec.Struct, kw_only=True):
    """Base for result records; unknown fields from newer peers are ignored."""


class Settings(Record, kw_only=True):
    """How a cell is measured, with `benchmark_model`'s names and defaults."""

    warmup_runs: int = 1
    warmup_min_secs: float = 0.5
    num_runs: int = 50
    min_secs: float = 1.0
    max_secs: float = 150.0
    run_delay: float = 0.0


class WarmupStats(Record, kw_only=True):
    count: int
    mean_us: Optional[float]


class LatencyStats(Record, kw_only=True):
    """Steady-state latency of single invokes, in microseconds.

    `p90` and `p99` are null when the source had no per-invoke times (a
    `benchmark_model` log reports p5, median and p95 at most).
    """

    count: int
    min: float
    max: float
    mean: float
    std: float
    p50: float
    p90: Optional[float] = None
    p99: Optional[float] = None
    p5: Optional[float] = None
    p95: Optional[float] = None


class MemoryMB(Record, kw_only=True):
    """Resident memory of the cell's own process, in MB (10^6 bytes).

    `init` and `overall` are deltas from before the model was loaded to after
    interpreter init and to the peak during inference; `peak_rss` is the absolute peak.
    """

    init: Optional[float]
    overall: Optional[float]
    peak_rss: Optional[float]


class Accuracy(Record, kw_only=True):
    """Top-k accuracy over the dataset images that decoded (`skipped` did not)."""

    samples: int
    top1: float
    top5: float
    skipped: int = 0


class OutputDiff(Record, kw_only=True):
    reference: str
    mean_abs: float
    max_abs: float
    top1_agreement: float


class PreprocessSpec(Record, kw_only=True, forbid_unknown_fields=True):
    """How images become input tensors (CONTRACT "Preprocessing spec").

    `size` may be left out to mean the model's own input height and width.
    """

    size: Optional[tuple[int, int]] = None
    resize: Literal["direct", "shorter_side_center_crop"] = "direct"
    resize_to: Optional[int] = None
    interpolation: Literal["nearest", "bilinear", "area", "bicubic"] = "bilinear"
    color: Literal["RGB", "BGR"] = "RGB"
    mean: list[float] = msgspec.field(default_factory=lambda: [0.0])
    std: list[float] = msgspec.field(default_factory=lambda: [1.0])
    scale: float = 1.0


class TensorSummary(Record, kw_only=True):
    """A compact fingerprint of one preprocessed input tensor, comparable across hosts.

    `thumbnail` is the tensor average-pooled to at most 8x8 per channel, so that two
    summaries give a meaningful largest difference without shipping whole tensors.
    """

    sample: int
    sha256: str
    mean: float
    std: float
    min: float
    max: float
    thumbnail: list[float]


class PreprocessParity(Record, kw_only=True):
    """Host vs device input tensors for the same dataset images."""

    samples: int
    identical: int
    max_abs_diff: float
    tolerance: float
    ok: bool


class DelegateCoverage(Record, kw_only=True):
    """How much of the graph the delegate took; `delegated_nodes` is null when the
    accelerator only says whether it took everything."""

    delegated_nodes: Optional[int]
    total_nodes: int
    full: bool


class DeviceState(Record, kw_only=True):
    """Device condition at the start and end of a cell.

    `throttled` is true when the firmware reported throttling (or under-voltage,
    frequency capping, the soft temperature limit) at either end of the cell, or a
    since-boot flag appeared during it. `cooled` is false when the cell started hot
    because the cooldown wait ran out.
    """

    temp_c_start: Optional[float] = None
    temp_c_end: Optional[float] = None
    throttled: bool = False
    throttle_flags: list[str] = []
    cpu_freq_mhz_start: Optional[float] = None
    cpu_freq_mhz_end: Optional[float] = None
    governor: Optional[str] = None
    cooldown_s: Optional[float] = None
    cooled: Optional[bool] = None
    throttled_raw_start: Optional[str] = None
    throttled_raw_end: Optional[str] = None


class Cell(Record, kw_only=True):
    """One model x delegate x threads measurement (CONTRACT `CELL`)."""

    device: str = ""
    model: str
    model_sha256: str
    model_size_bytes: int
    variant: Optional[Variant] = None
    delegate: str
    threads: int
    round: int = 0
    status: Status
    error: Optional[str] = None
    runtime: Optional[str] = None
    runtime_version: Optional[str] = None
    settings: Optional[Settings] = None
    load_ms: Optional[float] = None
    init_ms: Optional[float] = None
    delegate_init_ms: Optional[float] = None
    first_inference_us: Optional[float] = None
    warmup: Optional[WarmupStats] = None
    latency_us: Optional[LatencyStats] = None
    cv: Optional[float] = None
    warnings: list[str] = []
    memory_mb: Optional[MemoryMB] = None
    accuracy: Optional[Accuracy] = None
    output_diff: Optional[OutputDiff] = None
    preprocess_parity: Optional[PreprocessParity] = None
    delegate_coverage: Optional[DelegateCoverage] = None
    device_state: Optional[DeviceState] = None
    fingerprint: Optional[str] = None


class CpuPolicy(Record, kw_only=True):
    """One cpufreq policy: a cluster of cores that share a clock."""

    cpus: list[int]
    model: Optional[str] = None
    min_freq_mhz: Optional[float] = None
    max_freq_mhz: Optional[float] = None
    cur_freq_mhz: Optional[float] = None
    governor: Optional[str] = None


class CpuFacts(Record, kw_only=True):
    count: int
    model: Optional[str] = None
    max_freq_mhz: Optional[float] = None
    governor: Optional[str] = None
    policies: list[CpuPolicy] = []


class Throttled(Record, kw_only=True):
    raw: str
    now: list[str]
    since_boot: list[str]


class AndroidFacts(Record, kw_only=True):
    """What `getprop` and the battery say about an Android device."""

    manufacturer: Optional[str] = None
    model: Optional[str] = None
    soc: Optional[str] = None
    android_version: Optional[str] = None
    sdk: Optional[int] = None
    abis: list[str] = []
    serial: Optional[str] = None
    battery_temp_c: Optional[float] = None


class Facts(Record, kw_only=True):
    """What a device is (CONTRACT "Device facts")."""

    hostname: str
    board: Optional[str]
    machine: str
    os: str
    kernel: str
    python: str
    runtime: Optional[str]
    runtime_version: Optional[str]
    cpu: CpuFacts
    memory_mb: Optional[int]
    temp_c: Optional[float]
    throttled: Optional[Throttled] = None
    android: Optional[AndroidFacts] = None


class DeviceInfo(Record, kw_only=True):
    agent_version: str
    runtime: Optional[str]
    runtime_version: Optional[str]
    facts: Facts


class Transfer(Record, kw_only=True):
    model_bytes_sent: int = 0
    models_cached: int = 0


class VariantRow(Record, kw_only=True):
    """One variant at one setting in a family comparison (medians over rounds)."""

    model: str
    variant: Optional[str]
    delegate: str
    threads: int
    status: Status
    size_bytes: int
    p50_us: Optional[float] = None
    p90_us: Optional[float] = None
    init_ms: Optional[float] = None
    peak_mb: Optional[float] = None
    top1: Optional[float] = None
    top1_delta: Optional[float] = None
    top1_agreement: Optional[float] = None
    speedup: Optional[float] = None


class Recommendation(Record, kw_only=True):
    """The fastest variant and setting within the accuracy tolerance."""

    model: str
    variant: Optional[str]
    delegate: str
    threads: int
    p50_us: float
    speedup: Optional[float]
    basis: Literal["top1", "top1_agreement"]


class FamilyComparison(Record, kw_only=True):
    """A variant family side by side on one device, with a recommendation."""

    device: str
    family: str
    reference: Optional[str]
    tolerance: float
    rows: list[VariantRow]
    recommendation: Optional[Recommendation]
    statement: str


class RunReport(Record, kw_only=True):
    """The document `controller run --json` prints."""

    run_id: str
    tag: Optional[str]
    started_at: str
    finished_at: Optional[str]
    devices: dict[str, DeviceInfo]
    transfer: Transfer
    cells: list[Cell]
    errors: list[str] = []
    variants: list[FamilyComparison] = []
    meta: dict[str, str] = {}
    complete: bool = True


class FigureChange(Record, kw_only=True):
    """One figure of one cell, baseline vs candidate, over their rounds.

    `change` is relative (0.08 = 8 % slower) for latency and memory and in top-1
    fractions lost for accuracy; `low`/`high` bound it (bootstrap over rounds).
    """

    verdict: Literal["REGRESSION", "IMPROVEMENT", "NO CHANGE", "INCONCLUSIVE"]
    baseline: Optional[float]
    candidate: Optional[float]
    change: Optional[float]
    low: Optional[float]
    high: Optional[float]
    threshold: float
    rounds: tuple[int, int]


class CellComparison(Record, kw_only=True):
    """A cell of the baseline run and the same cell of the candidate run."""

    device: str
    model: str
    delegate: str
    threads: int
    verdict: Literal["REGRESSION", "IMPROVEMENT", "NO CHANGE", "INCONCLUSIVE"]
    latency_p50: FigureChange
    memory_peak: Optional[FigureChange] = None
    accuracy_top1: Optional[FigureChange] = None
    flags: list[str] = []


class RegressReport(Record, kw_only=True):
    """The document `controller regress --json` prints."""

    baseline: str
    candidate: str
    threshold: float
    memory_threshold: float
    accuracy_threshold: float
    regressed: bool
    counts: dict[str, int]
    cells: list[CellComparison]
    only_in_baseline: list[str] = []
    only_in_candidate: list[str] = []


def to_builtins(record: msgspec.Struct) -> dict:
    """A record as plain JSON-ready Python objects."""
    return msgspec.to_builtins(record)
