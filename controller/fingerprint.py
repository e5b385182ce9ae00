"""History fingerprints: what must be equal for two cells to measure the same thing.

A cell's fingerprint covers the device (board, CPU, OS, runtime and its version), the
model's sha256, the delegate, the thread count and the measuring settings, so that
history queries and regression checks can tell "the same cell, measured again" from
"a cell whose model, device or settings changed".
"""

from __future__ import annotations

import hashlib
from typing import Optional

import msgspec

from agent.wire.records import Cell, Facts


def _digest(value: object) -> str:
    return hashlib.sha256(msgspec.json.encode(value, order="sorted")).hexdigest()[:16]


def device_fingerprint(facts: Optional[Facts]) -> Optional[str]:
    """Board, CPU, OS and runtime with its version; None without facts."""
    if facts is None:
        return None
    android = facts.android
    return _digest({
        "board": facts.board, "machine": facts.machine, "os": facts.os,
        "cpu": [facts.cpu.count, facts.cpu.model, facts.cpu.max_freq_mhz],
        "runtime": [facts.runtime, facts.runtime_version],
        "android": [android.manufacturer, android.model, android.soc, android.android_version] if android else None,
    })


def cell_fingerprint(device: Optional[str], cell: Cell) -> str:
    """The device fingerprint plus the model, delegate, threads and measuring settings."""
    return _digest({
        "device": device, "model": cell.model_sha256, "delegate": cell.delegate,
        "threads": cell.threads, "settings": cell.settings,
    })
