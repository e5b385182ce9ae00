"""End to end: a real local agent reports the quartiles of its invokes and the stability they give,
and the terminal table and the HTML report show the spread, the invoke count and `ok (unstable)`
exactly where the cell's stability (or, for a cell stored without one, its CV) says so."""

from __future__ import annotations

import html
import json
import re

import msgspec
import pytest

from agent import stats
from agent.wire.records import UNSTABLE_SPREAD, judge_stability
from controller.render.format import format_fraction
from tests.support import controller, run_json

UNSTABLE_LINE = "unstable: "


def test_a_local_cell_reports_its_quartiles_and_the_spread_they_give(tmp_path, family):
    doc = run_json("--models", str(family["fp32"]), str(family["int8"]), "--threads", "1",
                   "--delegates", "cpu,xnnpack", "--num-runs", "300", db=tmp_path / "runs.sqlite")
    assert len(doc["cells"]) == 4
    for cell in doc["cells"]:
        assert cell["status"] == "ok", cell["error"]
        lat, stability = cell["latency_us"], cell["stability"]
        assert lat["count"] >= 300
        assert lat["min"] <= lat["p5"] <= lat["p25"] <= lat["p50"] <= lat["p75"] <= lat["p95"] <= lat["max"]
        assert stability["spread"] == pytest.approx((lat["p75"] - lat["p25"]) / lat["p50"])
        assert stability["spread_low"] <= stability["spread"] <= stability["spread_high"]
        assert stability["cv"] == cell["cv"] == pytest.approx(lat["std"] / lat["mean"])
        assert stability["threshold"] == UNSTABLE_SPREAD
        assert stability["unstable"] == (stability["spread"] > UNSTABLE_SPREAD)
        # the warning is the stability line, there only when the cell is unstable
        lines = [w for w in cell["warnings"] if w.startswith(UNSTABLE_LINE)]
        if stability["unstable"]:
            assert "interquartile spread" in stability["reason"] and lines == [UNSTABLE_LINE + stability["reason"]]
        else:
            assert stability["reason"] is None and lines == []


def _ns(samples_ns: list[int]) -> dict:
    """The latency and stability blocks of a cell with these invokes, as the agent computes them."""
    latency = stats.latency_stats(samples_ns)
    stability = judge_stability(latency, stats.spread_bounds(samples_ns))
    return {"latency_us": msgspec.to_builtins(latency), "stability": msgspec.to_builtins(stability),
            "cv": latency.cv, "warnings": [w for w in [stability.warning] if w]}


def _cells_as(doc: dict, device: str, **fields) -> list[dict]:
    """The run's real cells under another device name, with some fields replaced."""
    return [{**cell, "device": device, **fields} for cell in doc["cells"]]


def _terminal_rows(text: str) -> list[dict[str, str]]:
    """The run table of `controller report` as one dict per row, keyed by column heading."""
    def split(line: str, bar: str) -> list[str]:
        return [part.strip() for part in line.strip(bar).split(bar)]
    lines = text.splitlines()
    header = split(next(line for line in lines if line.startswith("┃")), "┃")
    return [dict(zip(header, split(line, "│"))) for line in lines if line.startswith("│")]


def _html_rows(page: str) -> list[dict[str, str]]:
    """The HTML report's cells table as one dict per row, keyed by column heading."""
    table = page.split("<h2>Cells</h2>", 1)[1].split("</table>", 1)[0]
    header = [html.unescape(h) for h in re.findall(r"<th>(.*?)</th>", table)]
    rows = re.findall(r"<tr>((?:<td>.*?</td>)+)</tr>", table)
    return [dict(zip(header, map(html.unescape, re.findall(r"<td>(.*?)</td>", row)))) for row in rows]


def test_the_table_and_the_report_show_spread_count_and_unstable_where_the_stability_says(tmp_path, family):
    db = tmp_path / "runs.sqlite"
    doc = run_json("--models", str(family["fp32"]), "--threads", "1", "--delegates", "cpu,xnnpack",
                   "--num-runs", "300", db=db)
    one_preemption = [25_300 + 100 * (i % 3) for i in range(200_000)]
    one_preemption[100_000] = 4_000_000
    two_speeds = [10_000 if i % 2 else 15_000 for i in range(2_000)]
    cells = (doc["cells"]
             # a preemption inflates the CV (the rule that flagged 19 cells of 20) but not the spread
             + _cells_as(doc, "one-preemption", **_ns(one_preemption))
             + _cells_as(doc, "two-speeds", **_ns(two_speeds))
             # stored before `stability` existed: judged by its CV as then
             + _cells_as(doc, "stored-before", stability=None, cv=0.5)
             + _cells_as(doc, "stored-before-calm", stability=None, cv=0.05))
    devices = {name: doc["devices"]["local"] for name in {c["device"] for c in cells}}
    dump = tmp_path / "run.jsonl"
    dump.write_text(json.dumps({**doc, "run_id": "judged", "devices": devices, "cells": cells}) + "\n")
    assert controller("import", str(dump), db=db).returncode == 0

    shown = controller("report", "--run", "judged", db=db)
    page_path = tmp_path / "report.html"
    written = controller("report", "--run", "judged", "--html", str(page_path), db=db)
    assert shown.returncode == 0 and written.returncode == 0, shown.stderr + written.stderr
    terminal, page = _terminal_rows(shown.stdout), _html_rows(page_path.read_text())
    assert len(terminal) == len(page) == len(cells)

    expected = {}
    for cell in cells:
        unstable = cell["stability"]["unstable"] if cell["stability"] else cell["cv"] > 0.10
        spread = cell["stability"]["spread"] if cell["stability"] else None
        expected[(cell["device"], cell["delegate"])] = (format_fraction(spread), f"{cell['latency_us']['count']:,}",
                                                        "ok (unstable)" if unstable else "ok")
    assert expected[("one-preemption", "cpu")] == ("0.8%", "200,000", "ok")
    assert expected[("two-speeds", "cpu")] == ("40.0%", "2,000", "ok (unstable)")
    assert expected[("stored-before", "cpu")][::2] == ("-", "ok (unstable)")
    assert expected[("stored-before-calm", "cpu")][::2] == ("-", "ok")
    for rows in (terminal, page):
        found = {(row["device"], row["delegate"]): (row["spread"], row["n"], row["status"]) for row in rows}
        assert found == expected
