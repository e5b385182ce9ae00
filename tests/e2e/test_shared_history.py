"""One history for a team: two controllers (two processes, each with its own local device
profile and data directory, as on two hosts) measure at the same time into one PostgreSQL
database; a third controller runs `regress` and `report` over both; the database exported
and imported into a fresh SQLite file gives the same report. Cells are counted at each step.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import xml.etree.ElementTree as ET

import pytest

from controller.store import open_store
from tests.support import EXAMPLE_MODELS, QUICK, controller

ROUNDS = 3
MODELS = [str(EXAMPLE_MODELS / "digits_cnn_fp32.tflite"), str(EXAMPLE_MODELS / "digits_cnn_int8.tflite")]
PROFILES = {
    "lab-a": 'name = "lab-a"\ntransport = "local"\nthreads = [1]\ndelegates = ["xnnpack"]\n',
    "lab-b": 'name = "lab-b"\ntransport = "local"\nthreads = [2]\ndelegates = ["cpu"]\n',
}
CELLS_PER_RUN = len(MODELS) * ROUNDS  # one delegate and one thread count per profile


def host_env(tmp_path, name: str, db: str) -> dict[str, str]:
    """The environment of a controller on its own host: its profile, data and config dirs."""
    home = tmp_path / name
    (home / "profiles").mkdir(parents=True)
    (home / "profiles" / f"{name}.toml").write_text(PROFILES[name])
    return {**os.environ, "EDGEBENCH_PROFILES": str(home / "profiles"), "XDG_DATA_HOME": str(home / "data"),
            "XDG_CONFIG_HOME": str(home / "config"), "EDGEBENCH_DB": db}


def run_both(envs: dict[str, dict[str, str]]) -> dict[str, dict]:
    """One `controller run --tag nightly` per host, all at once; their run documents."""
    procs = {name: subprocess.Popen(
        [sys.executable, "-m", "controller", "run", "--device", name, "--models", *MODELS, *QUICK,
         "--rounds", str(ROUNDS), "--tag", "nightly", "--json"],
        env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True) for name, env in envs.items()}
    documents = {}
    for name, proc in procs.items():
        out, err = proc.communicate(timeout=600)
        assert proc.returncode == 0, err
        documents[name] = json.loads(out)
    return documents


def test_two_controllers_one_database_one_report_that_travels(tmp_path, postgres_url):
    envs = {name: host_env(tmp_path, name, postgres_url) for name in PROFILES}
    counts: dict[str, int] = {}

    # Two controllers, two rounds of nightly runs, each pair measured concurrently.
    baselines, candidates = run_both(envs), run_both(envs)
    for name in PROFILES:
        for document in (baselines[name], candidates[name]):
            assert document["schema_version"] == 1
            assert {c["device"] for c in document["cells"]} == {name}
            assert len(document["cells"]) == CELLS_PER_RUN
            assert all(c["status"] == "ok" for c in document["cells"])
    with open_store(postgres_url) as store:
        counts["postgres cells after both controllers"] = store.count_cells()
        for name in PROFILES:
            counts[f"postgres cells of {name}"] = sum(
                store.count_cells(d[name]["run_id"]) for d in (baselines, candidates))
    assert counts["postgres cells after both controllers"] == 4 * CELLS_PER_RUN
    assert all(counts[f"postgres cells of {name}"] == 2 * CELLS_PER_RUN for name in PROFILES)

    # A third controller (no profiles of its own) judges and reports over both.
    third = tmp_path / "third"
    regress_json, junit_cases = {}, 0
    for name in PROFILES:
        junit = third / f"{name}.xml"
        third.mkdir(exist_ok=True)
        result = controller("regress", "--baseline", baselines[name]["run_id"], "--candidate",
                            candidates[name]["run_id"], "--fail-on", "never", "--junit", str(junit), "--json",
                            db=postgres_url)
        assert result.returncode == 0, result.stderr
        regress_json[name] = json.loads(result.stdout)
        assert len(regress_json[name]["cells"]) == len(MODELS)  # a comparison per cell, rounds pooled
        cases = ET.parse(junit).getroot().iter("testcase")
        junit_cases += sum(1 for _ in cases)
    counts["cells compared by regress (both controllers)"] = sum(len(r["cells"]) for r in regress_json.values())
    counts["junit test cases"] = junit_cases
    assert junit_cases == 2 * len(MODELS)

    def report(db: str) -> list[str]:
        """Each controller's latest nightly run, with the tag's trend, as Markdown and CSV."""
        texts = []
        for name in PROFILES:
            for output in ("--markdown", "--csv"):
                result = controller("report", "--run", candidates[name]["run_id"], output, "-", db=db)
                assert result.returncode == 0, result.stderr
                texts.append(result.stdout)
        return texts

    pg_report = report(postgres_url)
    csv_a, csv_b = pg_report[1], pg_report[3]
    counts["cells in the two reported runs (CSV rows)"] = len(csv_a.splitlines()) + len(csv_b.splitlines()) - 2
    assert counts["cells in the two reported runs (CSV rows)"] == 2 * CELLS_PER_RUN
    # A cell's trend holds the runs of that same cell, whichever controller made them: here its
    # own controller's two runs, none of the other lab's (which measured other cells).
    for name, markdown in zip(PROFILES, (pg_report[0], pg_report[2])):
        trend = [line for line in markdown.splitlines() if line.startswith(f"| {name} ") and "→" in line]
        assert len(trend) == len(MODELS)
        points = [[point.strip() for point in row.strip(" |").split("|")[-1].split("→")] for row in trend]
        assert all(len(p) == 2 and "-" not in p for p in points), trend

    # Export everything, import into a fresh SQLite file: the same report.
    export = controller("export", "--all", db=postgres_url)
    assert export.returncode == 0, export.stderr
    lines = export.stdout.splitlines()
    counts["runs exported"] = len(lines)
    counts["cells exported"] = sum(len(json.loads(line)["cells"]) for line in lines)
    assert counts["runs exported"] == 4 and counts["cells exported"] == 4 * CELLS_PER_RUN
    dump = tmp_path / "runs.jsonl"
    dump.write_text(export.stdout)

    sqlite_db = tmp_path / "fresh.sqlite"
    imported = controller("import", str(dump), db=sqlite_db)
    assert imported.returncode == 0, imported.stderr
    assert "imported 4 run(s) with 24 cell(s) and 2 regression check(s)" in imported.stderr
    with open_store(sqlite_db) as store:
        counts["sqlite cells after import"] = store.count_cells()
    again = controller("import", str(dump), db=sqlite_db)
    assert again.returncode == 0, again.stderr
    assert "imported 0 run(s) with 0 cell(s) and 0 regression check(s); 4 run(s) already present" in again.stderr
    with open_store(sqlite_db) as store:
        counts["sqlite cells after importing again"] = store.count_cells()
    assert counts["sqlite cells after import"] == counts["sqlite cells after importing again"] == 4 * CELLS_PER_RUN

    assert report(str(sqlite_db)) == pg_report
    for name in PROFILES:
        result = controller("regress", "--baseline", baselines[name]["run_id"], "--candidate",
                            candidates[name]["run_id"], "--fail-on", "never", "--json", db=sqlite_db)
        assert json.loads(result.stdout) == regress_json[name]
    print("cells counted:", json.dumps(counts, indent=2))


@pytest.mark.parametrize("command", [["report"], ["regress", "--baseline", "latest"], ["export"]])
def test_reading_commands_do_not_create_a_missing_database(tmp_path, command):
    missing = tmp_path / "typo.sqlite"
    result = controller(*command, db=missing)
    assert result.returncode == 2
    assert f"no results database at {missing}" in result.stderr
    assert not missing.exists()
