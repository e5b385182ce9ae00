"""GitHub Actions workflow commands for `controller regress`: an `::error` line per regressed
cell, so that the run's summary page lists them (written only when GITHUB_ACTIONS=true)."""

from __future__ import annotations

import os
from collections.abc import Mapping
from typing import Optional

from controller.records import RegressReport
from controller.render.format import verdict_label
from controller.render.junit import case_name, describe


def in_github_actions(environ: Optional[Mapping[str, str]] = None) -> bool:
    """Whether this process runs as a GitHub Actions step."""
    return (environ if environ is not None else os.environ).get("GITHUB_ACTIONS") == "true"


def _escape(text: str) -> str:
    # The workflow-command encoding: %, CR and LF in the message; also : and , in properties.
    return text.replace("%", "%25").replace("\r", "%0D").replace("\n", "%0A")


def _property(text: str) -> str:
    return _escape(text).replace(":", "%3A").replace(",", "%2C")


def lines(report: RegressReport) -> list[str]:
    """`::error` for each REGRESSION, `::warning` for each INCONCLUSIVE cell."""
    out = []
    for cell in report.cells:
        kind = {"REGRESSION": "error", "INCONCLUSIVE": "warning"}.get(cell.verdict)
        if kind:
            title = _property(f"{verdict_label(cell)} {cell.device} {case_name(cell)}")
            out.append(f"::{kind} title={title}::{_escape(describe(cell))}")
    return out
