"""Run documents from elsewhere (`controller import`), checked before they are stored.

A document can decode into the right types and still hold what no edgebench run writes:
an empty run id, a newline or an escape code in a name (names end up on terminals, in log
lines and in file names), a negative thread count, a count no database column holds, or a
start time that is not a time. Each value is held to the bound the wire contract sets for
it (`agent.wire.protocol`, `agent.wire.records`): one definition decides for agents,
controllers and imports alike.

Accepted timestamps come back in the form the controller itself writes (UTC, to the
second, `controller.records.now_iso`): runs are ordered by that text, so `latest` is then
the newest run in time whatever offset a document was written with.
"""

from __future__ import annotations

import datetime
from collections.abc import Iterator
from typing import Annotated, Any, Optional

import msgspec

from agent.wire.protocol import MAX_BLOB_BYTES, DelegateName, Name, Sha256, Threads
from agent.wire.records import Cell, Runs
from agent.wire.text import printable, quote
from controller.records import RegressReport, RunReport

# Integers the stores keep, in columns and inside JSON: SQLite INTEGER and PostgreSQL BIGINT
# are signed 64-bit.
INT64_MIN, INT64_MAX = -(2**63), 2**63 - 1
Count = Annotated[int, msgspec.Meta(ge=0, le=INT64_MAX)]
ModelBytes = Annotated[int, msgspec.Meta(ge=0, le=MAX_BLOB_BYTES)]


class DocumentError(ValueError):
    """A value of a run document outside its bounds; the message names the field."""


def check_run(document: RunReport) -> RunReport:
    """The document, its timestamps in UTC (`now_iso` form); DocumentError naming the first field at fault.

    Works on any RunReport, and so on the exchange's RunDocument with its checks.
    """
    _check(document.run_id, Name, "run_id")
    if document.tag is not None:
        _check(document.tag, Name, "tag")
    started = utc_timestamp(document.started_at, "started_at")
    finished = utc_timestamp(document.finished_at, "finished_at") if document.finished_at is not None else None
    for device in document.devices:
        _check(device, Name, f"devices[{shown(device)}]")
    for key in document.meta:
        _check(key, Name, f"meta[{shown(key)}]")
    _check(document.transfer.model_bytes_sent, Count, "transfer.model_bytes_sent")
    _check(document.transfer.models_cached, Count, "transfer.models_cached")
    for index, cell in enumerate(document.cells):
        _check_cell(cell, f"cells[{index}]")
    for index, check in enumerate(getattr(document, "checks", [])):
        _check_regress(check, document.run_id, f"checks[{index}]")
    for where, number in _integers(msgspec.to_builtins(document), ""):
        if not INT64_MIN <= number <= INT64_MAX:
            raise DocumentError(f"{where}: {number} does not fit a 64-bit integer")
    return msgspec.structs.replace(document, started_at=started, finished_at=finished)


def check_name(value: str, where: str) -> None:
    """DocumentError naming `where` unless `value` is a name the contract takes (an id, a tag,
    a device or model name): not empty, not too long, no control character."""
    _check(value, Name, where)


def check_delegate(value: str, where: str) -> None:
    """DocumentError naming `where` unless `value` is a delegate name the contract takes."""
    _check(value, DelegateName, where)


def check_threads(value: int, where: str) -> None:
    """DocumentError naming `where` unless `value` is a thread count the contract takes."""
    _check(value, Threads, where)


def utc_timestamp(text: str, where: str) -> str:
    """An ISO-8601 time with a UTC offset, as UTC in the controller's own form; DocumentError otherwise."""
    # Python before 3.11 reads only the form isoformat() writes, without a trailing Z.
    normal = text[:-1] + "+00:00" if text.endswith(("Z", "z")) else text
    try:
        moment = datetime.datetime.fromisoformat(normal)
    except ValueError:
        raise DocumentError(f"{where}: {shown(text)} is not an ISO-8601 time") from None
    if moment.tzinfo is None or moment.utcoffset() is None:
        raise DocumentError(f"{where}: {shown(text)} has no UTC offset (e.g. +00:00)")
    try:
        return moment.astimezone(datetime.timezone.utc).isoformat(timespec="seconds")
    except OverflowError:
        raise DocumentError(f"{where}: {shown(text)} is outside the years a time can have") from None


def _check_cell(cell: Cell, where: str) -> None:
    """A cell's names, settings and counts."""
    _check(cell.device, Name, f"{where}.device")
    _check(cell.model, Name, f"{where}.model")
    _check(cell.model_sha256, Sha256, f"{where}.model_sha256")
    _check(cell.model_size_bytes, ModelBytes, f"{where}.model_size_bytes")
    if cell.delegate is not None:
        _check(cell.delegate, DelegateName, f"{where}.delegate")
    _check(cell.threads, Threads, f"{where}.threads")
    _check(cell.round, Runs, f"{where}.round")
    counts = {
        "warmup.count": cell.warmup.count if cell.warmup else None,
        "latency_us.count": cell.latency_us.count if cell.latency_us else None,
        "accuracy.samples": cell.accuracy.samples if cell.accuracy else None,
        "accuracy.skipped": cell.accuracy.skipped if cell.accuracy else None,
        "delegate_coverage.delegated_nodes": cell.delegate_coverage.delegated_nodes if cell.delegate_coverage else None,
        "delegate_coverage.total_nodes": cell.delegate_coverage.total_nodes if cell.delegate_coverage else None,
    }
    for name, value in counts.items():
        if value is not None:
            _check(value, Count, f"{where}.{name}")


def _check_regress(check: RegressReport, run_id: str, where: str) -> None:
    """A regression check carried with a run: about this run, against a run named properly."""
    if check.candidate != run_id:
        raise DocumentError(f"{where}.candidate: {shown(check.candidate)} is not this run")
    if check.baseline is not None:
        _check(check.baseline, Name, f"{where}.baseline")
    for index, cell in enumerate(check.cells):
        _check(cell.device, Name, f"{where}.cells[{index}].device")
        _check(cell.model, Name, f"{where}.cells[{index}].model")
        if cell.delegate is not None:
            _check(cell.delegate, DelegateName, f"{where}.cells[{index}].delegate")
        _check(cell.threads, Threads, f"{where}.cells[{index}].threads")


def _check(value: Any, kind: Any, where: str) -> None:
    """DocumentError naming `where` unless `value` keeps to the bounds of `kind` (an Annotated type)."""
    try:
        msgspec.convert(value, kind)
    except msgspec.ValidationError:
        raise DocumentError(f"{where}: {_wrong(value, kind.__metadata__[0])}") from None


def _wrong(value: Any, meta: msgspec.Meta) -> str:
    """What is wrong with `value`, in words, for the bounds `meta` it broke."""
    if isinstance(value, str):
        if not value:
            return "empty"
        if printable(value) != value:
            return f"{shown(value)} holds a control character"
        if meta.max_length is not None and len(value) > meta.max_length:
            return f"longer than {meta.max_length} characters"
        return f"{shown(value)} does not match {meta.pattern}"
    low = meta.ge if meta.ge is not None else "-"
    high = meta.le if meta.le is not None else ""
    return f"{value} is outside {low} to {high}"


def _integers(value: Any, where: str) -> Iterator[tuple[str, int]]:
    """Every integer in a document of plain objects, with where it is (`cells[0].threads`)."""
    if isinstance(value, bool):
        return
    if isinstance(value, int):
        yield where or "$", value
    elif isinstance(value, dict):
        for key, item in value.items():
            yield from _integers(item, f"{where}.{quote(str(key))}" if where else quote(str(key)))
    elif isinstance(value, list):
        for index, item in enumerate(value):
            yield from _integers(item, f"{where}[{index}]")


def shown(text: Optional[str]) -> str:
    """A document's string fit for one line of a terminal: in quotes, control characters escaped."""
    return f'"{quote(text or "")}"'
