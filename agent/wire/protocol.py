"""The wire protocol between controller and agent: every message, defined once.

A message is a multipart ZeroMQ message:

    frame 0   PROTOCOL: protocol name and major version
    frame 1   the message struct, msgpack-encoded, tagged by its `type`
    frame 2+  raw binary payload (model chunks), only where a message says so

Minor versions only add optional fields; a peer ignores fields it does not know.

Model transfer is content-addressed and pulled by the agent: the controller sends
`Offer(sha256, size)`; the agent answers `Have` when it already holds that model, or
asks for it with `Fetch` requests, at most `FETCH_CREDIT` in flight, each answered by a
`Chunk` carrying the bytes. When the last byte is verified the agent answers `Have`.
"""

from __future__ import annotations

from typing import Annotated, Literal, Optional, Union

import msgspec

from agent.wire.records import Cell, Facts, PreprocessSpec, Settings, TensorSummary
from agent.wire.text import quote

PROTOCOL = b"EDGEBENCH/1"
MINOR = 0
CHUNK_SIZE = 1 << 20
FETCH_CREDIT = 8
# The first line `agent serve` prints on stdout once it accepts connections; a
# controller that started the agent reads the endpoint from it.
READY_PREFIX = "edgebench agent listening on "
# Largest frame either side accepts; a chunk plus headroom. Bigger frames are dropped by
# libzmq before they reach the application (ZMQ_MAXMSGSIZE).
MAX_FRAME_BYTES = CHUNK_SIZE + (64 << 10)
# Words in a failed cell's error when the cached model no longer matched its sha256: the
# agent evicted it, and a controller sends the model again and re-runs the cell.
CHANGED_ON_DISK = "changed on the agent's disk"
# The error of a cell killed part way because its job was cancelled: no result of the model.
CANCELLED = "cancelled by the controller"
# Most cells one RunJob carries: a longer matrix goes in several jobs (see MAX_FRAME_BYTES).
MAX_JOB_CELLS = 1000

# Bounds of what a peer may send, checked while decoding (msgspec.Meta): sizes, counts and
# names, so that no well-typed but hostile message can exhaust memory or disk, or name a path.
MAX_CELLS = 10_000
MAX_THREADS = 1024
MAX_BLOB_BYTES = 1 << 36
# Printable text without control characters: ids and names end up in logs and file names.
_TEXT = r"^[^\x00-\x1f\x7f-\x9f]+\Z"
Sha256 = Annotated[str, msgspec.Meta(pattern=r"^[0-9a-f]{64}\Z")]
Name = Annotated[str, msgspec.Meta(min_length=1, max_length=255, pattern=_TEXT)]
JobId = Annotated[str, msgspec.Meta(min_length=1, max_length=128, pattern=_TEXT)]
DelegateName = Annotated[str, msgspec.Meta(min_length=1, max_length=64, pattern=_TEXT)]
Threads = Annotated[int, msgspec.Meta(ge=1, le=MAX_THREADS)]
Offset = Annotated[int, msgspec.Meta(ge=0, le=MAX_BLOB_BYTES)]


class Message(msgspec.Struct, tag_field="type", kw_only=True):
    """Base of every wire message."""


class Hello(Message, tag="hello"):
    """A controller's first message on a connection."""

    client_version: Annotated[str, msgspec.Meta(min_length=1, max_length=64, pattern=_TEXT)]
    minor: int = MINOR


class Welcome(Message, tag="welcome"):
    """The agent's answer to `Hello`: what it is and what it can run."""

    agent_version: str
    minor: int
    runtime: Optional[str]
    runtime_version: Optional[str]
    delegates: list[str]
    facts: Facts


class Ping(Message, tag="ping"):
    """Application-level liveness check; answered by `Pong`."""

    seq: int


class Pong(Message, tag="pong"):
    """The answer to `Ping` with the same sequence number, and how the asker's jobs fare."""

    seq: int
    # Jobs the agent runs before the asker's first queued job (None: none of its jobs waits).
    ahead: Optional[int] = None
    # One line when the agent's job thread made no progress past its own deadline.
    stalled: Optional[str] = None


class Offer(Message, tag="offer"):
    """The controller offers a blob (model, dataset bundle or phone binary) by content."""

    sha256: Sha256
    size: Annotated[int, msgspec.Meta(ge=1, le=MAX_BLOB_BYTES)]
    name: Name
    kind: Literal["model", "dataset", "binary"] = "model"


class Fetch(Message, tag="fetch"):
    """The agent asks for `length` bytes of an offered blob from `offset`."""

    sha256: Sha256
    offset: Offset
    length: Offset


class Chunk(Message, tag="chunk"):
    """Followed by one payload frame with `length` bytes of the model at `offset`."""

    sha256: Sha256
    offset: Offset


class Have(Message, tag="have"):
    """The agent holds the blob (already, or now that the transfer is verified)."""

    sha256: str
    transferred: int = 0


class CellSpec(msgspec.Struct, kw_only=True):
    """One cell of a job: which model, how to run it."""

    model_sha256: Sha256
    model_name: Name
    delegate: DelegateName
    threads: Threads
    settings: Settings
    seed: int = 0
    # Evaluation after timing: outputs for comparing variants, and with a dataset
    # (a bundle the agent holds) accuracy and the parity summaries of chosen samples.
    evaluate: bool = False
    dataset_sha256: Optional[Sha256] = None
    preprocess: Optional[PreprocessSpec] = None
    parity_samples: list[int] = []
    # Delegates beyond cpu/xnnpack: an external library and its options (litert-gpu
    # reads `precision`), and whether a partly delegated graph fails the cell.
    delegate_library: Optional[str] = None
    delegate_options: dict[str, str] = {}
    require_full_delegation: bool = False
    # A per-op profile, measured in a phase of its own after the timed phase.
    op_profile: bool = False
    # Device discipline: cores to pin the cell to, and the cooldown before it starts.
    cpu_affinity: list[int] = []
    cooldown_below_c: Optional[float] = None
    max_cooldown_s: float = 0.0


# Time a cell may take beyond its measuring phases: model load, delegate init and the first
# inference; on a phone also the pushes and shell round trips around `benchmark_model`.
INIT_ALLOWANCE_S = 120.0
PHONE_ALLOWANCE_S = 600.0


def cell_time_limit(spec: CellSpec, on_phone: bool = False) -> float:
    """Seconds a started cell may take before it is given up (its cooldown wait not included).

    Warmup and the timed phase are each cut at `max_secs`, and so is the op profile's phase.
    The agent kills a cell at this limit; a controller waits this long plus a margin.
    """
    phases = 3 if spec.op_profile and not on_phone else 2
    return spec.settings.max_secs * phases + (PHONE_ALLOWANCE_S if on_phone else INIT_ALLOWANCE_S)


# Every transfer ends by its deadline: this long plus its size at the slowest rate allowed.
TRANSFER_BASE_S = 120.0
TRANSFER_MIN_RATE_BYTES_S = 128 << 10


def transfer_time_limit(size: int) -> float:
    """Seconds a blob of `size` bytes may take to arrive before its transfer is given up."""
    return TRANSFER_BASE_S + size / TRANSFER_MIN_RATE_BYTES_S


def cell_template(spec: CellSpec, size: int) -> Cell:
    """The cell as known before measuring: what it is, and not yet a result."""
    return Cell(
        model=spec.model_name, model_sha256=spec.model_sha256, model_size_bytes=size,
        delegate=spec.delegate, threads=spec.threads, status="failed",
        error="cell did not start",
    )


class Evaluation(msgspec.Struct, kw_only=True):
    """A cell's model outputs on its evaluation inputs, for the controller to compare.

    `inputs` names those inputs (`dataset:SHA256` or `random:SEED:COUNT`); only outputs
    on the same inputs are comparable. `outputs` is float32 little-endian, one row of
    `values` dequantized output values per sample.
    """

    inputs: str
    outputs: bytes
    samples: int
    values: int
    tensors: list[TensorSummary] = []


class AndroidTarget(msgspec.Struct, kw_only=True):
    """A phone the agent drives through ADB, and the benchmark binary to run on it.

    `address` is `HOST:PORT` for TCP/IP adb, `serial` a USB serial; `binary_sha256`
    names a blob of kind "binary" the agent holds (sent with `Offer`).
    """

    address: Optional[str] = None
    serial: Optional[str] = None
    binary_sha256: Optional[str] = None
    binary_name: str = "benchmark_model"
    taskset: Optional[str] = None


class RunJob(Message, tag="run"):
    """Idempotent by `job_id`: a job the agent already holds is re-attached and replayed.

    `indices`, when given, are the controller's own numbers for the cells (one per cell);
    results then carry them instead of the position in `cells`.
    """

    job_id: JobId
    cells: Annotated[list[CellSpec], msgspec.Meta(min_length=1, max_length=MAX_CELLS)]
    indices: Optional[list[Annotated[int, msgspec.Meta(ge=0)]]] = None
    # Cells for a phone: run with benchmark_model through ADB instead of the runtime.
    android: Optional[AndroidTarget] = None
    # Set every cpufreq policy's governor for the job's duration (restored afterwards).
    governor: Optional[str] = None


class JobAccepted(Message, tag="accepted"):
    """The agent queued the job with this many cells."""

    job_id: str
    cells: int


class CellStarted(Message, tag="cell_started"):
    """Cell `index` started in process `pid`."""

    job_id: str
    index: int
    pid: int


class CellDone(Message, tag="cell_done"):
    """Cell `index` finished: its result, and its outputs when it was evaluated."""

    job_id: str
    index: int
    cell: Cell
    evaluation: Optional[Evaluation] = None


class Cooling(Message, tag="cooling"):
    """The agent waits for the device to cool before cell `index` (sent about once a second)."""

    job_id: str
    index: int
    temp_c: Optional[float]
    target_c: float
    remaining_s: float


class JobDone(Message, tag="job_done"):
    """The job ended; `interrupted` says why when it ended before all its cells ran."""

    job_id: str
    interrupted: Optional[str] = None


class Ack(Message, tag="ack"):
    """The controller stored these results: the agent may delete them from its outbox."""

    job_id: JobId
    cells: Annotated[list[int], msgspec.Meta(max_length=MAX_CELLS)] = []
    done: bool = False


class Cancel(Message, tag="cancel"):
    """Stop a job: its running cell is killed, the rest skipped; it ends with a JobDone."""

    job_id: JobId


class InfoRequest(Message, tag="info"):
    """Device facts: the agent's own, or those of the phone `android` names."""

    android: Optional[AndroidTarget] = None


class InfoReply(Message, tag="facts"):
    """The facts an `InfoRequest` asked for."""

    facts: Facts


class Error(Message, tag="error"):
    """A request the agent could not honour; `ref` names what it was about."""

    message: str
    ref: Optional[str] = None


AnyMessage = Union[
    Hello, Welcome, Ping, Pong, Offer, Fetch, Chunk, Have, RunJob, JobAccepted,
    CellStarted, CellDone, Cooling, JobDone, InfoRequest, InfoReply, Error, Ack, Cancel,
]

_encoder = msgspec.msgpack.Encoder()
_decoder = msgspec.msgpack.Decoder(AnyMessage)


class ProtocolError(ValueError):
    """A message that cannot be decoded: wrong protocol, malformed or unknown."""


def problem(message: Message, payload: list) -> Optional[str]:
    """What a decoded message breaks beyond its field bounds, or None: payload frames only
    after a `Chunk` (exactly one), a job's `indices` one distinct number per cell, and
    every setting of a job's cells given."""
    if isinstance(message, Chunk):
        return None if len(payload) == 1 else f"a chunk carries exactly one payload frame, not {len(payload)}"
    if payload:
        return f"{len(payload)} unexpected payload frame(s) after {type(message).__name__}"
    if isinstance(message, RunJob) and message.indices is not None and (
            len(message.indices) != len(message.cells) or len(set(message.indices)) != len(message.indices)):
        return "indices must be distinct non-negative numbers, one per cell"
    if isinstance(message, RunJob):
        for spec in message.cells:  # null only marks a setting a tool did not honour, in a stored cell
            missing = [name for name in spec.settings.__struct_fields__ if getattr(spec.settings, name) is None]
            if missing:
                return f"settings must not be null: {', '.join(missing)}"
    return None
def encode(message: Message, *payload: bytes) -> list[bytes]:
    """The frames of `message` followed by its raw payload frames."""
    return [PROTOCOL, _encoder.encode(message), *payload]


def decode(frames: list[bytes]) -> tuple[AnyMessage, list[bytes]]:
    """Split received frames into a validated message and its payload frames."""
    if len(frames) < 2:
        raise ProtocolError(f"expected at least 2 frames, got {len(frames)}")
    if frames[0] != PROTOCOL:
        raise ProtocolError(f"unsupported protocol {bytes(frames[0][:32])!r}, expected {PROTOCOL!r}")
    try:
        message = _decoder.decode(frames[1])
    except (msgspec.DecodeError, msgspec.ValidationError, UnicodeDecodeError, RecursionError) as exc:
        # msgspec reports invalid UTF-8 in a string as UnicodeDecodeError (found by fuzzing),
        # and nesting deeper than the stack as RecursionError.
        raise ProtocolError(f"malformed message: {quote(str(exc))}") from None
    return message, list(frames[2:])
