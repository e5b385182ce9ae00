"""Numbers as people read them: durations, megabytes, fractions (pure, no rich)."""

from __future__ import annotations

from typing import Optional


def format_us(us: Optional[float]) -> str:
    """A duration given in microseconds, in the unit that reads best."""
    if us is None:
        return "-"
    if us < 1000:
        return f"{us:.1f} µs"
    if us < 1_000_000:
        return f"{us / 1000:.2f} ms"
    return f"{us / 1e6:.2f} s"


def format_mb(mb: Optional[float]) -> str:
    """Megabytes with one decimal."""
    return "-" if mb is None else f"{mb:.1f}"


def format_fraction(value: Optional[float]) -> str:
    """A fraction as a percentage with one decimal."""
    return "-" if value is None else f"{value * 100:.1f}%"
