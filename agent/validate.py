"""Limits every controller request must respect before the agent acts on it.

msgspec already checked types and required fields; these checks bound sizes and ranges,
so that no well-typed but hostile message can exhaust memory or disk, or name a path.
"""

from __future__ import annotations

from typing import Optional

from agent.cache import TransferError, check_sha256
from agent.protocol import Ack, Chunk, Hello, Message, Offer, RunJob
from agent.schema import Settings

MAX_NAME = 255
MAX_JOB_ID = 128
MAX_CELLS = 10_000
MAX_THREADS = 1024
MAX_RUNS = 10_000_000
MAX_SECONDS = 86_400.0
MAX_BLOB_BYTES = 1 << 36


def problem(message: Message, payload: list[bytes]) -> Optional[str]:
    """What is wrong with a decoded request, or None when it may be honoured."""
    if payload and not isinstance(message, Chunk):
        return f"{len(payload)} unexpected payload frame(s) after {type(message).__name__}"
    try:
        check = _CHECKS.get(type(message))
        return check(message, payload) if check else None
    except TransferError as exc:
        return str(exc)


def _hello(message: Hello, payload: list[bytes]) -> Optional[str]:
    return _text("client_version", message.client_version, 64)


def _offer(message: Offer, payload: list[bytes]) -> Optional[str]:
    check_sha256(message.sha256)
    if not 0 < message.size <= MAX_BLOB_BYTES:
        return f"invalid size {message.size}"
    return _text("name", message.name, MAX_NAME)


def _chunk(message: Chunk, payload: list[bytes]) -> Optional[str]:
    check_sha256(message.sha256)
    if len(payload) != 1:
        return f"a chunk carries exactly one payload frame, not {len(payload)}"
    if message.offset < 0:
        return f"invalid offset {message.offset}"
    return None


def _run(message: RunJob, payload: list[bytes]) -> Optional[str]:
    bad = _text("job_id", message.job_id, MAX_JOB_ID)
    if bad:
        return bad
    if not 0 < len(message.cells) <= MAX_CELLS:
        return f"a job has 1 to {MAX_CELLS} cells, not {len(message.cells)}"
    if message.indices is not None and (
            len(message.indices) != len(message.cells) or len(set(message.indices)) != len(message.indices)
            or min(message.indices) < 0):
        return "indices must be distinct non-negative numbers, one per cell"
    for spec in message.cells:
        check_sha256(spec.model_sha256)
        if getattr(spec, "dataset_sha256", None):
            check_sha256(spec.dataset_sha256)
        bad = (_text("model_name", spec.model_name, MAX_NAME) or _text("delegate", spec.delegate, 64)
               or _settings(spec.settings))
        if bad:
            return bad
        if not 1 <= spec.threads <= MAX_THREADS:
            return f"invalid thread count {spec.threads}"
    return None


def _settings(settings: Settings) -> Optional[str]:
    if not 0 <= settings.warmup_runs <= MAX_RUNS or not 1 <= settings.num_runs <= MAX_RUNS:
        return "warmup_runs and num_runs out of range"
    for name in ("warmup_min_secs", "min_secs", "max_secs", "run_delay"):
        value = getattr(settings, name)
        if not 0 <= value <= MAX_SECONDS:  # also false for NaN
            return f"{name} out of range: {value}"
    return None


def _ack(message: Ack, payload: list[bytes]) -> Optional[str]:
    if len(message.cells) > MAX_CELLS:
        return f"too many cells acknowledged at once ({len(message.cells)})"
    return _text("job_id", message.job_id, MAX_JOB_ID)


def _text(field: str, value: str, limit: int) -> Optional[str]:
    if not value or len(value) > limit or not value.isprintable():
        return f"invalid {field}: expected 1 to {limit} printable characters"
    return None


_CHECKS = {Hello: _hello, Offer: _offer, Chunk: _chunk, RunJob: _run, Ack: _ack}
