"""Documents only the controller builds: runs, device summaries, variant and regression reports.

Their JSON shape is the public contract of `controller run --json` and `controller regress
--json` (docs/contract.md); the records they hold (`Cell`, `Facts`) come from the wire contract.
"""

from __future__ import annotations

import datetime
import secrets
from typing import Literal, Optional

import msgspec

from agent.wire.records import Cell, Facts, Record, Status

Verdict = Literal["REGRESSION", "IMPROVEMENT", "NO CHANGE", "INCONCLUSIVE"]
VERDICTS: tuple[Verdict, ...] = ("REGRESSION", "IMPROVEMENT", "NO CHANGE", "INCONCLUSIVE")


class DeviceInfo(Record, kw_only=True):
    """A device as the run saw it: agent version, runtime and facts."""

    agent_version: str
    runtime: Optional[str]
    runtime_version: Optional[str]
    facts: Facts


class Transfer(Record, kw_only=True):
    """How many model bytes the run sent and how many models were cached already."""

    model_bytes_sent: int = 0
    models_cached: int = 0


class VariantRow(Record, kw_only=True):
    """One variant at one setting in a family comparison (medians over rounds)."""

    model: str
    variant: Optional[str]
    delegate: Optional[str]  # null when the source did not say
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
    delegate: Optional[str]  # null when the source did not say
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


# Version of the run document's shape (`schema_version`); bumped when a field changes
# meaning or is dropped, not when an optional field is added.
RUN_SCHEMA_VERSION = 1


class RunReport(Record, kw_only=True):
    """The document `controller run --json` prints."""

    schema_version: int = RUN_SCHEMA_VERSION
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
    # Set when the results database failed for good during the run: what was lost, in one line.
    store_problem: Optional[str] = None


class FigureChange(Record, kw_only=True):
    """One figure of one cell, baseline vs candidate, over their rounds.

    `change` is relative (0.08 = 8 % slower) for latency and memory, in top-1 fractions lost
    for accuracy, and in nodes more left to the CPU for delegate coverage; `low`/`high` bound it
    (bootstrap over rounds; for two separately measured runs widened by the run-to-run noise
    of the cell's history), null where nothing can bound it. `reason` says what decided the
    verdict, or what would.
    """

    verdict: Verdict
    baseline: Optional[float]
    candidate: Optional[float]
    change: Optional[float]
    low: Optional[float]
    high: Optional[float]
    threshold: float
    rounds: tuple[int, int]
    reason: Optional[str] = None


class CellComparison(Record, kw_only=True):
    """A cell of the baseline run and the same cell of the candidate run."""

    device: str
    model: str
    delegate: Optional[str]  # null when the source did not say
    threads: int
    verdict: Verdict
    latency_p50: FigureChange
    memory_peak: Optional[FigureChange] = None
    accuracy_top1: Optional[FigureChange] = None
    delegate_coverage: Optional[FigureChange] = None
    # The metrics whose own verdict made `verdict` (latency_p50, memory_peak, accuracy_top1,
    # delegate_coverage; `status` when the candidate fails where the baseline worked).
    decided_by: list[str] = []
    flags: list[str] = []
    # (baseline, candidate) rounds left out as disturbed
    disturbed_rounds: tuple[int, int] = msgspec.field(default_factory=lambda: (0, 0))
    # Filled when more rounds were measured in one session: how many looks decided it.
    looks: int = 1


class RegressReport(Record, kw_only=True):
    """The document `controller regress --json` prints."""

    baseline: Optional[str]  # null on a first night: "no baseline yet"
    candidate: str
    threshold: float
    memory_threshold: float
    accuracy_threshold: float
    regressed: bool
    counts: dict[str, int]
    cells: list[CellComparison]
    only_in_baseline: list[str] = []
    only_in_candidate: list[str] = []
    note: Optional[str] = None
    disturbed_rounds: int = 0
    confidence: float = 0.95  # of each look's interval
    more_rounds: Optional[MoreRounds] = None
    # The metrics that may fail the check (`--fail-on-metric`); `regressed` counts only these.
    fail_on_metric: list[str] = msgspec.field(default_factory=lambda: ["latency", "memory", "accuracy", "coverage"])


class MoreRounds(Record, kw_only=True):
    """Extra rounds measured for undecided cells: baseline and candidate models interleaved in
    sessions, judged at looks after `batch`, then twice as many, ... extra rounds, every look
    at a Bonferroni-corrected confidence (`controller.analysis.sequential`)."""

    planned_rounds: int
    batch: int  # extra rounds per side before the first look at them
    looks: int  # planned looks, the first (the runs as stored) included
    max_device_seconds: float
    device_seconds: float = 0.0
    sessions: list[str] = []  # run ids of the session runs
    notes: list[str] = []


class OpChange(Record, kw_only=True):
    """One op type or node in two profiles: time per run in both and the difference (us).

    A side the op does not exist on is null, and so is the change.
    """

    key: str
    baseline_us: Optional[float]
    candidate_us: Optional[float]
    change_us: Optional[float]
    ratio: Optional[float]


class ProfileDiff(Record, kw_only=True):
    """Two cells' profiles compared, each list sorted by the absolute change, largest first."""

    baseline: str
    candidate: str
    by_type: list[OpChange]
    nodes: list[OpChange]


class FamilyOpTypes(Record, kw_only=True):
    """One variant family at one setting on one device: each variant's time per op type."""

    device: str
    family: str
    delegate: str
    threads: int
    variants: list[str]
    op_types: list[str]
    # totals[i][j]: variant i, op type j, in us per run; null when the variant has no such op.
    totals: list[list[Optional[float]]]


def to_builtins(record: msgspec.Struct) -> dict:
    """A record as plain JSON-ready Python objects."""
    return msgspec.to_builtins(record)


def now_iso() -> str:
    """Now in UTC, ISO 8601, to the second."""
    return datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds")


def new_run_id() -> str:
    """A run id, sortable and unique across hosts: UTC time plus 48 random bits (controllers
    sharing one database start runs in the same second; the store refuses an id it has already)."""
    stamp = datetime.datetime.now(datetime.timezone.utc).strftime("%Y%m%dT%H%M%SZ")
    return f"{stamp}-{secrets.token_hex(6)}"
