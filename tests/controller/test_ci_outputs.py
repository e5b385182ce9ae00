"""`controller regress --junit` and GitHub Actions annotations, on synthetic stored runs."""

from __future__ import annotations

import os
import xml.etree.ElementTree as ET

from controller.records import Transfer
from controller.render import annotations
from controller.store import open_store
from tests.controller.test_regress import cell, rounds
from tests.support import controller


def store_pair(db) -> None:
    """A baseline and a candidate: m regresses 20 %, n holds, o has too few clean rounds."""
    base = rounds([1000, 1010, 990]) + rounds([500, 501, 499], model="n.tflite") + \
        rounds([700, 700, 700], model="o.tflite")
    cand = rounds([1200, 1190, 1210]) + rounds([500, 499, 501], model="n.tflite") + \
        [cell(700, 0, model="o.tflite"), cell(900, 1, model="o.tflite", throttled=True)]
    # Ten quiet nights before them: the history the run-to-run noise is read from.
    nights = [(f"night-{n}", rounds([1000 + n % 3, 1000, 1001]) + rounds([500, 501, 500 - n % 2], model="n.tflite")
               + rounds([700, 700, 701], model="o.tflite"), f"2025-12-{20 + n:02d}T00:00:00+00:00")
              for n in range(10)]
    with open_store(db) as store:
        for run_id, cells, started in (*nights, ("base", base, "2026-01-01T00:00:00+00:00"),
                                       ("cand", cand, "2026-01-02T00:00:00+00:00")):
            store.start_run(run_id, "nightly", started)
            for index, c in enumerate(cells):
                store.add_cell(run_id, c, index)
            store.finish_run(run_id, started, Transfer(), [])


def test_junit_has_a_case_per_cell_a_failure_per_regression_and_skips_inconclusive(tmp_path):
    db = tmp_path / "r.sqlite"
    store_pair(db)
    out = tmp_path / "regress.xml"
    env = {k: v for k, v in os.environ.items() if k != "GITHUB_ACTIONS"}
    result = controller("regress", "--baseline", "base", "--candidate", "cand", "--junit", str(out), db=db, env=env)
    assert result.returncode == 1, result.stderr  # a confirmed regression
    assert "::error" not in result.stderr + result.stdout  # not on GitHub Actions
    root = ET.parse(out).getroot()
    assert (root.get("tests"), root.get("failures"), root.get("skipped")) == ("3", "1", "1")
    cases = {case.get("name"): case for case in root.iter("testcase")}
    assert set(cases) == {"m.tflite xnnpack x4", "n.tflite xnnpack x4", "o.tflite xnnpack x4"}
    failure = cases["m.tflite xnnpack x4"].find("failure")
    assert failure is not None and failure.get("type") == "REGRESSION" and "+20.0%" in failure.get("message")
    assert cases["o.tflite xnnpack x4"].find("skipped") is not None
    assert cases["n.tflite xnnpack x4"].find("failure") is None and cases["n.tflite xnnpack x4"].find("skipped") is None
    assert all(case.get("classname") == "edgebench.pi4" for case in cases.values())


def test_github_actions_gets_an_error_line_per_regressed_cell(tmp_path):
    db = tmp_path / "r.sqlite"
    store_pair(db)
    result = controller("regress", "--baseline", "base", "--candidate", "cand", "--json", db=db,
                        env={**os.environ, "GITHUB_ACTIONS": "true"})
    assert result.returncode == 1
    errors = [line for line in result.stderr.splitlines() if line.startswith("::error ")]
    warnings = [line for line in result.stderr.splitlines() if line.startswith("::warning ")]
    assert len(errors) == 1
    assert errors[0].startswith("::error title=REGRESSION (latency +20.0%25) pi4 m.tflite xnnpack x4::")
    assert len(warnings) == 1 and "o.tflite" in warnings[0]
    assert "latency p50 (us) REGRESSION: 1000 -> 1200 (+20.0%" in errors[0]
    assert result.stdout.count("\n") == 1  # stdout still carries only the JSON document


def test_annotations_only_on_github_actions():
    assert annotations.in_github_actions({"GITHUB_ACTIONS": "true"})
    assert not annotations.in_github_actions({"CI": "true"})
