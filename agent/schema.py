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
    """Steady-state latency of single invokes, in microseconds."""

    count: int
    min: float
    max: float
    mean: float
    std: float
    p50: float
    p90: float
    p99: float


class MemoryMB(Record, kw_only=True):
    """Resident memory of the cell's own process, in MB (10^6 bytes).

    `init` and `overall` are deltas from before the model was loaded to after
    interpreter init and to the peak during inference; `peak_rss` is the absolute peak.
    """

    init: Optional[float]
    overall: Optional[float]
    peak_rss: Optional[float]


class Accuracy(Record, kw_only=True):
    samples: int
    top1: float
    top5: float


class OutputDiff(Record, kw_only=True):
    reference: str
    mean_abs: float
    max_abs: float
    top1_agreement: float


class DelegateCoverage(Record, kw_only=True):
    delegated_nodes: int
    total_nodes: int
    full: bool


class DeviceState(Record, kw_only=True):
    """Device condition at the start and end of a cell."""

    temp_c_start: Optional[float] = None
    temp_c_end: Optional[float] = None
    throttled: bool = False
    cpu_freq_mhz_start: Optional[float] = None
    cpu_freq_mhz_end: Optional[float] = None


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
    first_inference_us: Optional[float] = None
    warmup: Optional[WarmupStats] = None
    latency_us: Optional[LatencyStats] = None
    cv: Optional[float] = None
    warnings: list[str] = []
    memory_mb: Optional[MemoryMB] = None
    accuracy: Optional[Accuracy] = None
    output_diff: Optional[OutputDiff] = None
    delegate_coverage: Optional[DelegateCoverage] = None
    device_state: Optional[DeviceState] = None


class CpuFacts(Record, kw_only=True):
    count: int
    model: Optional[str] = None
    max_freq_mhz: Optional[float] = None
    governor: Optional[str] = None


class Throttled(Record, kw_only=True):
    raw: str
    now: list[str]
    since_boot: list[str]


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


class DeviceInfo(Record, kw_only=True):
    agent_version: str
    runtime: Optional[str]
    runtime_version: Optional[str]
    facts: Facts


class Transfer(Record, kw_only=True):
    model_bytes_sent: int = 0
    models_cached: int = 0


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


def to_builtins(record: msgspec.Struct) -> dict:
    """A record as plain JSON-ready Python objects."""
    return msgspec.to_builtins(record)
