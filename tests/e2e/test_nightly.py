"""Nightly regression checks end to end: real runs on a real local agent, a planted slowdown
(the same network under the same name with more layers), `regress` verdicts with more
rounds and exit codes, the shipped nightly script, A/B `compare`, steps in the history,
and the HTML report rendered in headless Chromium."""

from __future__ import annotations

import csv
import json
import os
import re
import shutil
import signal
import sqlite3
import subprocess
import sys
from pathlib import Path

import pytest

from controller.history import load_history
from controller.store import open_store
from tests.support import EXAMPLE_MODELS, QUICK, ROOT, controller

MODELS = [EXAMPLE_MODELS / "digits_cnn_fp32.tflite", EXAMPLE_MODELS / "mobilenet_v2_035_96_fp32.tflite"]
PLANTED = EXAMPLE_MODELS / "planted"
CELL = ("local", "conv_stack.tflite", "xnnpack", 1)
# A regression is planted, not provoked: the same file name with three times the
# convolutions, unmistakable beside the noise of a shared machine (quiet nights here
# drift by up to ~15 %, single rounds by more).
THREADS = ["--threads", "1", "--delegates", "xnnpack"]
FAST = [*QUICK, "--min-secs", "0.1", *THREADS]
THRESHOLD = ["--threshold", "25%"]
# Night-to-night alarms and undecided cells get a few more rounds in one session.
MORE = ["--more-rounds", "4", "--rounds-per-look", "4", "--max-device-seconds", "120"]


def plant(models: Path, copy: str) -> Path:
    """Put `copy` (base, slower_200, ...) of the planted network into `models` under its one name."""
    models.mkdir(exist_ok=True)
    return Path(shutil.copy(PLANTED / copy / "conv_stack.tflite", models / "conv_stack.tflite"))


def nightly(db: Path, models: Path, *extra: str, rounds: str = "5") -> dict:
    result = controller("run", "--device", "local", "--models", str(models / "conv_stack.tflite"), *FAST,
                        "--rounds", rounds, "--tag", "nightly", *extra, "--json", db=db)
    assert result.returncode == 0, result.stderr
    return json.loads(result.stdout)


def regress(db: Path) -> tuple[int, dict]:
    result = controller("regress", "--baseline", "last-good", "--candidate", "nightly", *THRESHOLD, *MORE,
                        "--json", db=db)
    assert result.returncode in (0, 1), result.stderr
    return result.returncode, json.loads(result.stdout)


def colored_pixels(png: Path) -> int:
    """Pixels with a clear hue: plot lines and markers, not text or table borders."""
    import matplotlib.image

    image = matplotlib.image.imread(str(png))[..., :3]
    return int(((image.max(axis=2) - image.min(axis=2)) > 0.3).sum())


def test_nightly_sequence_flags_a_planted_slowdown_and_not_quiet_runs(tmp_path):
    db, models = tmp_path / "history.sqlite", tmp_path / "models"
    plant(models, "base")
    first = nightly(db, models, "--meta", "commit=aaa111")
    status, none_yet = regress(db)  # the first night: nothing to compare with, not an error
    assert status == 0 and none_yet["baseline"] is None and none_yet["candidate"] == first["run_id"]
    assert none_yet["note"].startswith("no baseline yet") and none_yet["cells"] == []
    second = nightly(db, models, "--meta", "commit=bbb222")
    assert first["meta"] == {"commit": "aaa111"} and first["complete"] is True
    assert all(c["fingerprint"] for c in first["cells"])
    # Every round says what else the machine did while it ran.
    state = first["cells"][0]["device_state"]
    assert state["load_avg_start"] is not None and 0 <= state["cpu_busy_share"] <= 1
    assert state["cpu_count"] == os.cpu_count() and state["cpu_times_start"] is None
    # Same device, model, delegate, threads and settings: the same history fingerprint.
    assert {c["fingerprint"] for c in first["cells"]} == {c["fingerprint"] for c in second["cells"]}

    status, quiet = regress(db)
    assert (quiet["baseline"], quiet["candidate"]) == (first["run_id"], second["run_id"])
    assert status == 0 and not quiet["regressed"], quiet
    assert len(quiet["cells"]) == 1 and quiet["cells"][0]["verdict"] != "REGRESSION"
    # Three more quiet nights: five runs of history say how much the cell moves by itself.
    second = [nightly(db, models) for _ in range(3)][-1]

    plant(models, "slower_200")
    slow = nightly(db, models, "--meta", "commit=ccc333")
    status, loaded = regress(db)
    assert loaded["baseline"] == second["run_id"] and loaded["candidate"] == slow["run_id"]
    assert status == 1 and loaded["regressed"]
    (regression,) = loaded["cells"]
    assert regression["verdict"] == "REGRESSION" and regression["latency_p50"]["low"] > 0.25

    # The regressed run is not "last good": the next check compares with the run before it.
    plant(models, "base")
    after = nightly(db, models)
    status, recovered = regress(db)
    assert recovered["baseline"] == second["run_id"] and recovered["candidate"] == after["run_id"]

    markdown = controller("regress", "--baseline", second["run_id"], "--candidate", slow["run_id"], *THRESHOLD,
                          "--markdown", db=db)
    assert markdown.returncode == 1
    assert "## edgebench: regression found" in markdown.stdout and "| **REGRESSION (latency +" in markdown.stdout

    with open_store(db) as store:
        history = load_history(store, slow["run_id"])
    assert history.runs[0].run_id == first["run_id"] and len(history.runs) == 6
    assert history.runs[-2].run_id == second["run_id"] and history.runs[-1].run_id == slow["run_id"]
    assert history.regressed[slow["run_id"]] == {CELL}

    html, md, table = tmp_path / "report.html", tmp_path / "report.md", tmp_path / "cells.csv"
    result = controller("report", "--run", slow["run_id"], "--html", str(html), "--markdown", str(md),
                        "--csv", str(table), db=db)
    assert result.returncode == 0, result.stderr
    page = html.read_text()
    assert page.count('src="data:image/png;base64,') >= 2 and "src=\"http" not in page
    assert f"edgebench run {slow['run_id']} (nightly)" in page
    assert "| local | conv_stack.tflite |" in md.read_text()
    with open(table, newline="") as f:
        rows = list(csv.DictReader(f))
    assert len(rows) == len(slow["cells"]) and {"latency_us.p50", "memory_mb.peak_rss"} <= set(rows[0])
    _render_in_chromium(html, tmp_path)


def test_shipped_nightly_script_first_night_then_quiet_then_regressed(tmp_path):
    script = ROOT / "examples" / "nightly" / "edgebench-nightly"
    models, out = tmp_path / "models", tmp_path / "out"
    out.mkdir()
    fleet = tmp_path / "fleet.toml"
    fleet.write_text('devices = ["local"]\n')
    config = tmp_path / "nightly.env"
    config.write_text(f"FLEET={fleet}\nMODELS={models}\nOUT={out}\nROUNDS=4\nMORE_ROUNDS=4\n"
                      f"MAX_DEVICE_SECONDS=120\nRUN_ARGS='{' '.join(FAST)}'\nREGRESS_ARGS='{' '.join(THRESHOLD)}'\n")
    env = {**os.environ, "EDGEBENCH_NIGHTLY_CONFIG": str(config), "EDGEBENCH_DB": str(tmp_path / "n.sqlite")}

    def night() -> subprocess.CompletedProcess:
        return subprocess.run([str(script)], env=env, capture_output=True, text=True, timeout=600, check=False)

    plant(models, "base")
    first = night()
    assert first.returncode == 0, first.stderr
    assert "no baseline yet" in first.stderr and (out / "report.html").stat().st_size > 0
    assert "no baseline yet" in (out / "regress.md").read_text()
    second = night()
    assert second.returncode == 0, second.stderr + second.stdout
    # Two runs cannot say how much nights differ by themselves: undecided, and said so.
    assert "## edgebench: no regression" in (out / "regress.md").read_text()
    for _ in range(3):  # three more quiet nights of history
        assert night().returncode == 0
    plant(models, "slower_200")
    third = night()
    assert third.returncode == 1, third.stderr + third.stdout
    assert "## edgebench: regression found" in (out / "regress.md").read_text()
    page = (out / "report.html").read_text()
    assert "REGRESSION" in page and "6 run(s) of history" in page


def test_report_and_history_name_a_planted_step(tmp_path):
    db, models = tmp_path / "steps.sqlite", tmp_path / "models"
    plant(models, "base")
    # Five nights a side: the permutation test still finds the step when a busy machine
    # makes one night of the base as slow as the copy.
    nights = [nightly(db, models, rounds="2") for _ in range(5)]
    plant(models, "slower_200")
    nights += [nightly(db, models, rounds="2") for _ in range(5)]
    stepped = nights[5]["run_id"]

    result = controller("history", "--tag", "nightly", "--json", db=db)
    assert result.returncode == 0, result.stderr
    (cell,) = json.loads(result.stdout)["cells"]
    assert len(cell["points"]) == 10
    assert [s["run_id"] for s in cell["steps"]] == [stepped], [round(p["p50_us"]) for p in cell["points"]]
    (step,) = cell["steps"]
    assert step["before_run_id"] == nights[4]["run_id"]
    assert step["low"] > 0.25 and step["change"] >= step["low"]

    md = tmp_path / "report.md"
    result = controller("report", "--run", nights[-1]["run_id"], "--markdown", str(md), db=db)
    assert result.returncode == 0, result.stderr
    text = md.read_text()
    assert f"at run {stepped}" in text and "10 run(s) of history" in text
    assert f"| {step['change']:+.1%} [" in text or f"{step['change']:+.1%} [" in text


def test_compare_measures_two_files_interleaved_and_judges_them(tmp_path):
    db = tmp_path / "ab.sqlite"
    base, slow = PLANTED / "base" / "conv_stack.tflite", PLANTED / "slower_200" / "conv_stack.tflite"
    result = controller("compare", "--baseline-model", str(base), "--candidate-model", str(slow),
                        "--device", "local", *FAST, "--rounds", "4", *MORE, "--json", db=db)
    assert result.returncode == 1, result.stderr
    doc = json.loads(result.stdout)
    (cell,) = doc["cells"]
    # Three times the work; a busy machine narrows the measured gap, never to the threshold.
    assert cell["verdict"] == "REGRESSION" and cell["latency_p50"]["low"] > 0.25
    # Four pairs, and four more when a busy machine left the first look undecided; a pair goes
    # when either half was disturbed.
    pairs, disturbed = cell["latency_p50"]["rounds"], cell["disturbed_rounds"]
    assert pairs[0] == pairs[1] and pairs[0] + sum(disturbed) >= 4 * cell["looks"] >= pairs[0]

    same = controller("compare", "--baseline-model", str(base), "--candidate-model", str(base),
                      "--device", "local", *FAST, "--rounds", "4", *MORE, "--json", db=db)
    assert same.returncode == 0, same.stderr
    doc = json.loads(same.stdout)
    (cell,) = doc["cells"]
    assert cell["verdict"] != "REGRESSION" and cell["model"] == "conv_stack.tflite"
    assert doc["more_rounds"]["looks"] == 2 and doc["more_rounds"]["device_seconds"] > 0
    # The session runs are stored, and kept out of the history: two models share a name in them.
    with open_store(db) as store:
        assert len(store.run_ids(limit=100)) >= 2
    assert json.loads(controller("history", "--json", db=db).stdout)["cells"] == []

    bad = controller("compare", "--baseline-model", str(tmp_path / "nope.tflite"), "--candidate-model", str(base),
                     "--device", "local", db=db)
    assert bad.returncode == 2 and "nope.tflite: no such file" in bad.stderr
    # The timed-phase flags are checked as `controller run` checks them, before anything runs.
    bad = controller("compare", "--baseline-model", str(base), "--candidate-model", str(base),
                     "--device", "local", "--min-secs", "-1", db=db)
    assert bad.returncode == 2 and bad.stderr.strip() == ("error: --min-secs must be a number of seconds "
                                                          "from 0 to 86400, not -1.0")


def test_compare_measures_no_more_rounds_than_the_budget_allows(tmp_path):
    db, base = tmp_path / "budget.sqlite", PLANTED / "base" / "conv_stack.tflite"
    # The first look's rounds alone cost more than the budget: no later look fits.
    result = controller("compare", "--baseline-model", str(base), "--candidate-model", str(base),
                        "--device", "local", *FAST, "--rounds", "4", "--more-rounds", "40",
                        "--rounds-per-look", "4", "--max-device-seconds", "0.01", "--json", db=db)
    assert result.returncode == 0, result.stderr
    doc = json.loads(result.stdout)
    (cell,) = doc["cells"]
    # One session run, the first look's: four pairs at most (fewer when a half was disturbed).
    assert doc["more_rounds"]["looks"] == 6 and len(doc["more_rounds"]["sessions"]) == 1
    assert cell["looks"] == 1 and cell["latency_p50"]["rounds"][0] <= 4
    spent = [n for n in doc["more_rounds"]["notes"] if n.startswith("device-seconds budget spent")]
    if cell["verdict"] == "INCONCLUSIVE":
        assert len(spent) == 1 and "after 0 more round(s): 1 cell(s) left undecided" in spent[0]
    else:
        assert spent == []


def _screenshot(browser: str, html: Path, tmp_path: Path) -> Path:
    shot = html.with_suffix(".png")
    result = subprocess.run(
        [browser, "--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
         "--disable-background-networking", "--disable-component-update", "--disable-sync",
         f"--user-data-dir={tmp_path / 'chromium'}", "--window-size=1280,2400", f"--screenshot={shot}",
         html.as_uri()], capture_output=True, text=True, timeout=120, check=False)
    assert shot.exists(), result.stderr[-2000:]
    return shot


def _render_in_chromium(html: Path, tmp_path: Path) -> None:
    browser = shutil.which("chromium") or shutil.which("chromium-browser")
    if browser is None:
        pytest.skip("needs Chromium (Debian package chromium) to render the report")
    # The same page without its figures is the yardstick: plots are the only colored things.
    bare = tmp_path / "bare.html"
    bare.write_text(re.sub(r"<img [^>]*>", "", html.read_text()))
    with_figures = colored_pixels(_screenshot(browser, html, tmp_path))
    without = colored_pixels(_screenshot(browser, bare, tmp_path))
    assert with_figures > 1000 and without * 10 < with_figures, (with_figures, without)


def test_fleet_run_reports_an_unreachable_device_and_finishes_the_others(tmp_path):
    profiles = tmp_path / "profiles"
    profiles.mkdir()
    shutil.copy(ROOT / "device_profiles" / "local.toml", profiles / "bench.toml")
    (profiles / "bench.toml").write_text((profiles / "bench.toml").read_text().replace('name = "local"',
                                                                                       'name = "bench"'))
    # A port nothing listens on: connection attempts go unanswered.
    (profiles / "gone.toml").write_text('transport = "zmq"\naddress = "tcp://127.0.0.1:9"\n'
                                        'threads = [1]\ndelegates = ["xnnpack"]\n')
    fleet = tmp_path / "fleet.toml"
    fleet.write_text('devices = ["bench", "gone"]\n')
    db = tmp_path / "fleet.sqlite"
    result = controller("run", "--fleet", str(fleet), "--models", str(MODELS[0]), *QUICK, "--threads", "1",
                        "--delegates", "xnnpack", "--json", db=db,
                        env={**os.environ, "EDGEBENCH_PROFILES": str(profiles)})
    assert result.returncode == 0, result.stderr
    doc = json.loads(result.stdout)
    assert [c["device"] for c in doc["cells"]] == ["bench"] and doc["cells"][0]["status"] == "ok"
    assert any(line.startswith("device gone: ") for line in doc["errors"])
    assert doc["complete"] is False  # a device gave nothing


def test_an_interrupted_run_keeps_its_cells_and_is_marked_incomplete(tmp_path):
    db = tmp_path / "cut.sqlite"
    run = subprocess.Popen(
        [sys.executable, "-m", "controller", "run", "--device", "local", "--models", *map(str, MODELS),
         *QUICK, "--min-secs", "0.5", "--rounds", "4", "--threads", "1", "--delegates", "xnnpack",
         "--db", str(db), "--json"], stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        _wait_for_a_stored_cell(db, run)
        run.send_signal(signal.SIGTERM)
        stdout, stderr = run.communicate(timeout=120)
    finally:
        run.kill()
    assert run.returncode == 130, stderr
    assert "interrupted" in stderr
    with open_store(db) as store:
        kept = store.load_run("latest")
    assert not kept.complete and kept.finished_at is not None
    assert 1 <= len(kept.cells) < 2 * 4
    # What was measured is still printed, as the one JSON document.
    doc = json.loads(stdout)
    assert doc["run_id"] == kept.run_id and doc["complete"] is False and len(doc["cells"]) == len(kept.cells)


def _wait_for_a_stored_cell(db: Path, run: subprocess.Popen) -> None:
    """Block until the run has committed a cell (read through SQLite's own locking)."""
    for _ in range(600):
        if db.exists():
            with sqlite3.connect(db, timeout=5) as conn:
                if conn.execute("SELECT name FROM sqlite_master WHERE name = 'cells'").fetchone() and \
                        conn.execute("SELECT COUNT(*) FROM cells").fetchone()[0]:
                    return
        try:
            run.wait(0.1)  # also notices a run that ended early
        except subprocess.TimeoutExpired:
            continue
        raise AssertionError(f"run ended before storing a cell: {run.stderr.read()}")
    raise AssertionError("no cell was stored within a minute")


@pytest.mark.skipif(shutil.which("systemd-analyze") is None, reason="needs systemd-analyze (package systemd)")
def test_nightly_timer_and_service_verify(tmp_path):
    shipped = ROOT / "examples" / "nightly"
    script = shipped / "edgebench-nightly"
    assert os.access(script, os.X_OK)
    assert subprocess.run(["sh", "-n", str(script)], check=False).returncode == 0
    # verify needs the ExecStart binary: point it at the shipped script.
    service = tmp_path / "edgebench-nightly.service"
    service.write_text((shipped / service.name).read_text().replace("/usr/local/bin/edgebench-nightly", str(script)))
    shutil.copy(shipped / "edgebench-nightly.timer", tmp_path)
    result = subprocess.run(["systemd-analyze", "verify", str(service), str(tmp_path / "edgebench-nightly.timer")],
                            capture_output=True, text=True, timeout=60, check=False)
    assert result.returncode == 0 and not result.stderr.strip(), result.stderr
