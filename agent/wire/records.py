"""Records both sides exchange: every field a cell or a device reports, defined once.

The agent fills the measurement part of a `Cell`; the controller adds what only it knows
(device name, round) and stores and prints the same records. The JSON shape of these
structs is part of the public contract of `controller run --json` (docs/contract.md);
the host-only documents built around them live in `controller.records`.
"""

from __future__ import annotations

from typing import Annotated, Literal, Optional

import msgspec

Variant = Literal["fp32", "fp16", "dynamic", "int8"]
Status = Literal["ok", "failed"]
# A cell whose single invokes spread more than this (interquartile range over the median) is
# reported as unstable. Measured on a quiet 2-core x86-64 host (the example models, 140 cells):
# median 4.6 %, 90th percentile 7.1 %, one cell above 12 %; two-thread cells sharing the cores with
# one or two busy processes: 14 of 30 above 12 %, up to 120 % (docs/contract.md, "Judgments").
UNSTABLE_SPREAD = 0.12
# The rule for cells stored before `stability` existed: std / mean over this was reported as
# unstable. One preemption among many invokes trips it, so new cells are judged on the spread.
UNSTABLE_CV = 0.10


class Record(msgspec.Struct, kw_only=True):
    """Base for result records; unknown fields from newer peers are ignored."""


# Bounds every peer enforces when it decodes a message: no well-typed but hostile value
# can exhaust memory or time (NaN fails every bound).
MAX_RUNS = 10_000_000
MAX_SECONDS = 86_400.0
Runs = Annotated[int, msgspec.Meta(ge=0, le=MAX_RUNS)]
Seconds = Annotated[float, msgspec.Meta(ge=0, le=MAX_SECONDS)]


class Settings(Record, kw_only=True):
    """How a cell is measured, with `benchmark_model`'s names and defaults.

    In a stored cell a setting is null when the tool that measured it did not honour
    it (a phone's `benchmark_model` that reported the flag as unconsumed); a request
    gives every setting (protocol.problem).
    """

    warmup_runs: Optional[Runs] = 1
    warmup_min_secs: Optional[Seconds] = 0.5
    num_runs: Optional[Annotated[int, msgspec.Meta(ge=1, le=MAX_RUNS)]] = 50
    min_secs: Optional[Seconds] = 1.0
    max_secs: Optional[Seconds] = 150.0
    run_delay: Optional[Seconds] = 0.0


class WarmupStats(Record, kw_only=True):
    """The warmup phase: how many invokes (null when the source printed only the mean) and their mean."""

    count: Optional[int]
    mean_us: Optional[float]


class LatencyStats(Record, kw_only=True):
    """Steady-state latency of single invokes, in microseconds.

    Every figure is null when the source did not give it: a `benchmark_model` log may
    print only an average, and prints p5, median and p95 at most (never p25, p75, p90 or p99).
    """

    count: Optional[int] = None
    min: Optional[float] = None
    max: Optional[float] = None
    mean: Optional[float] = None
    std: Optional[float] = None
    p50: Optional[float] = None
    p90: Optional[float] = None
    p99: Optional[float] = None
    p5: Optional[float] = None
    p95: Optional[float] = None
    p25: Optional[float] = None
    p75: Optional[float] = None

    @property
    def cv(self) -> Optional[float]:
        """The coefficient of variation (std / mean), or None when either is unknown or the mean is zero."""
        if self.std is None or not self.mean:
            return None
        return self.std / self.mean

    @property
    def centre(self) -> Optional[float]:
        """The figure comparisons use: the median, or the mean where no median exists."""
        return self.p50 if self.p50 is not None else self.mean

    @property
    def centre_is_mean(self) -> bool:
        """True when `centre` is a mean because the source printed no median."""
        return self.p50 is None and self.mean is not None


class Stability(Record, kw_only=True):
    """Whether one figure can stand for a cell's single invokes, and what decided it.

    `spread` is the interquartile range over the median, (p75 - p25) / p50: robust, so that a
    few preemptions among many invokes leave it alone where they inflate `cv` (std / mean, the
    cell's own `cv`). `unstable` is `spread` over `threshold`. `spread_low` and `spread_high`
    bound `spread` (95 %, from order statistics that take invokes as independent; bursts of
    interference are not, so the true uncertainty is wider), null where only printed figures
    are known. Where no quartiles were measured or printed, `spread` and `unstable` are null.
    `reason` says in one line why the cell is unstable, or what is missing to tell; else null.
    A busy neighbour that preempts for whole time slices stretches few of many short invokes:
    it shows in `cv` and the tail (and in `device_state.cpu_wait_share`), not in `spread`.
    """

    spread: Optional[float]
    cv: Optional[float]
    unstable: Optional[bool]
    reason: Optional[str] = None
    threshold: float = UNSTABLE_SPREAD
    spread_low: Optional[float] = None
    spread_high: Optional[float] = None

    @property
    def warning(self) -> Optional[str]:
        """The cell's warning line when it is unstable, else None."""
        return f"unstable: {self.reason}" if self.unstable else None


def judge_stability(latency: LatencyStats, bounds: Optional[tuple[float, float]] = None) -> Stability:
    """The stability of a cell from its latency figures, measured or printed; `bounds` is the
    interval of the spread where the invokes themselves are known (agent.stats.spread_bounds)."""
    missing = [name for name in ("p25", "p50", "p75") if getattr(latency, name) is None]
    if missing or not latency.p50:
        what = f"no {', '.join(missing)}" if missing else "a zero median"
        return Stability(spread=None, cv=latency.cv, unstable=None,
                         reason=f"the source gives {what}: the spread of single invokes is unknown")
    spread = (latency.p75 - latency.p25) / latency.p50
    low, high = bounds if bounds is not None else (None, None)
    unstable = spread > UNSTABLE_SPREAD
    return Stability(spread=spread, cv=latency.cv, unstable=unstable, spread_low=low, spread_high=high,
                     reason=_unstable_reason(spread, low, high, latency.count) if unstable else None)


def _unstable_reason(spread: float, low: Optional[float], high: Optional[float], count: Optional[int]) -> str:
    """`interquartile spread 14.2% of the median exceeds 10% (95 % interval ...)`: the figure, the
    threshold, and how sure the judgment is."""
    line = f"interquartile spread {spread:.1%} of the median exceeds {UNSTABLE_SPREAD:.0%}"
    invokes = f"{count:,} invokes" if count is not None else "invokes"
    if low is None or high is None:
        return f"{line} ({invokes})"
    doubt = "" if low > UNSTABLE_SPREAD else ", so it may not"
    return f"{line} (95 % interval {low:.1%} to {high:.1%} over {invokes}{doubt})"


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
    """How far a cell's outputs are from its reference's on the same inputs."""

    reference: str
    mean_abs: float
    max_abs: float
    top1_agreement: float


class PreprocessSpec(Record, kw_only=True, forbid_unknown_fields=True):
    """How images become input tensors (docs/contract.md, "Preprocessing spec").

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


class NodeRef(Record, kw_only=True):
    """One node of the graph by its index and builtin op type."""

    index: int
    op_type: str


class DelegateCoverage(Record, kw_only=True):
    """How much of the graph the delegate took, as far as the source says.

    `delegated_nodes` is null when the accelerator only says whether it took everything;
    `total_nodes` and `full` are null when the source gives no total; `not_delegated`
    lists the nodes that stayed outside the delegate, null when unknown.
    """

    delegated_nodes: Optional[int]
    total_nodes: Optional[int]
    full: Optional[bool]
    not_delegated: Optional[list[NodeRef]] = None


class OpNode(Record, kw_only=True):
    """One node of a per-op profile; times are per run (all calls), in microseconds.

    `ran_on` is the delegate that executed it (`xnnpack`, `gpu`, ...), `cpu` for the
    interpreter's own kernels, null when unknown. `share` is its fraction of the summed
    node time.

    `runtime` marks a row of the runtime's own work that a profiler prints among the
    nodes (LiteRT's buffer registration and sync, AllocateTensors): part of the invoke,
    so in the summed time and the reconciliation, but no op of the graph, so outside
    `by_type` and the slowest ops. Its `index` is its place in the profiler's run order
    and its `ran_on` is null.
    """

    index: int
    op_type: str
    name: Optional[str]
    ran_on: Optional[str]
    times_called: Optional[float]
    avg_us: Optional[float]
    p50_us: Optional[float]
    share: Optional[float]
    runtime: bool = False


class OpTypeTotal(Record, kw_only=True):
    """All nodes of one op type: how many, and their time per run."""

    op_type: str
    count: int
    total_us: Optional[float]
    share: Optional[float]


class OpProfile(Record, kw_only=True):
    """Where the time of one run goes, node by node and per op type.

    `reconciled` is the summed node time per run over the cell's own p50, or its mean where
    the source printed no median (its warnings then say so); null without either. Near 1
    when the profile accounts for the whole invoke.
    """

    method: str
    reconciled: Optional[float]
    nodes: list[OpNode]
    by_type: list[OpTypeTotal]
    warnings: list[str] = []


class DeviceState(Record, kw_only=True):
    """Device condition at the start and end of a cell.

    `throttled` is true when the firmware reported throttling (or under-voltage,
    frequency capping, the soft temperature limit) at either end of the cell, or a
    since-boot flag appeared during it, and null when the throttle word could not be
    read. `cooled` is false when the cell started hot because the cooldown wait ran out.
    """

    temp_c_start: Optional[float] = None
    temp_c_end: Optional[float] = None
    throttled: Optional[bool] = None
    throttle_flags: list[str] = []
    cpu_freq_mhz_start: Optional[float] = None
    cpu_freq_mhz_end: Optional[float] = None
    governor: Optional[str] = None
    cooldown_s: Optional[float] = None
    cooled: Optional[bool] = None
    throttled_raw_start: Optional[str] = None
    throttled_raw_end: Optional[str] = None
    # Where the throttle word came from (`sysfs:PATH` or `vcgencmd`); when it could not be
    # read, `throttled` is null and `throttle_problem` says why.
    throttle_source: Optional[str] = None
    throttle_problem: Optional[str] = None
    # What the cell could do with the Pi's device nodes (`/dev/vcio`: "rw", "missing", ...).
    devices: dict[str, str] = {}
    # What else ran: the 1-minute load average at each end (/proc/loadavg), and over the
    # cell the share of all CPUs' time that was busy and that the hypervisor stole (/proc/stat).
    load_avg_start: Optional[float] = None
    load_avg_end: Optional[float] = None
    cpu_busy_share: Optional[float] = None
    cpu_steal_share: Optional[float] = None
    cpu_count: Optional[int] = None
    # Of the time the measuring threads were runnable during the timed phase, the share they
    # waited for a CPU (/proc/self/task/*/schedstat): 0 when nothing competed with them.
    cpu_wait_share: Optional[float] = None
    cpu_times_start: Optional[list[int]] = None  # the /proc/stat counters at the start; cleared at the end


class Cell(Record, kw_only=True):
    """One model x delegate x threads measurement (docs/contract.md, `CELL`)."""

    device: str = ""
    model: str
    model_sha256: str
    model_size_bytes: int
    variant: Optional[Variant] = None
    delegate: Optional[str]  # null: the source does not say what ran the graph
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
    stability: Optional[Stability] = None
    warnings: list[str] = []
    memory_mb: Optional[MemoryMB] = None
    accuracy: Optional[Accuracy] = None
    output_diff: Optional[OutputDiff] = None
    preprocess_parity: Optional[PreprocessParity] = None
    delegate_coverage: Optional[DelegateCoverage] = None
    device_state: Optional[DeviceState] = None
    fingerprint: Optional[str] = None
    op_profile: Optional[OpProfile] = None

    @property
    def unstable(self) -> bool:
        """True when the cell is reported as unstable: its `stability` says so, or, for a cell
        stored before `stability` existed, its `cv` exceeds UNSTABLE_CV."""
        if self.stability is not None:
            return self.stability.unstable is True
        return self.cv is not None and self.cv > UNSTABLE_CV


class CpuPolicy(Record, kw_only=True):
    """One cpufreq policy: a cluster of cores that share a clock."""

    cpus: list[int]
    model: Optional[str] = None
    min_freq_mhz: Optional[float] = None
    max_freq_mhz: Optional[float] = None
    cur_freq_mhz: Optional[float] = None
    governor: Optional[str] = None


class CpuFacts(Record, kw_only=True):
    """The CPU: core count (null when unknown, as for a device known only from an imported log),
    core model, fastest clock and governor."""

    count: Optional[int]
    model: Optional[str] = None
    max_freq_mhz: Optional[float] = None
    governor: Optional[str] = None
    policies: list[CpuPolicy] = []


class Throttled(Record, kw_only=True):
    """The firmware's throttle word and the conditions it reports now and since boot."""

    raw: str
    now: list[str]
    since_boot: list[str]
    source: Optional[str] = None  # `sysfs:PATH` or `vcgencmd`


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
    """What a device is (docs/contract.md, "Device facts")."""

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
    throttle_problem: Optional[str] = None  # why `throttled` is null
    python_arch: Optional[str] = None  # the interpreter's target and pointer size: "aarch64-linux-gnu 64-bit"
    devices: dict[str, str] = {}  # the Pi's device nodes and what the agent may do with them
