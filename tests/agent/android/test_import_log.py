"""`controller import-log`: each log format stored as a run, the same way a measured run is."""

from __future__ import annotations

import csv
import json
import sqlite3
import subprocess
import sys
from pathlib import Path

import pytest

from controller import models
from controller.imported import imported_facts, log_cell
from controller.records import DeviceInfo
from controller.store import open_store
from tests.support import EXAMPLE_MODELS
from tests.support import benchmark_logs as logs

MODEL = EXAMPLE_MODELS / "digits_cnn_int8.tflite"
REAL_LOGS = Path(__file__).resolve().parents[2] / "fixtures" / "benchmark_logs"


def import_log(tmp_path, text: str, *extra: str) -> subprocess.CompletedProcess:
    log = tmp_path / "console.log"
    log.write_text(text)
    return subprocess.run(
        [sys.executable, "-m", "controller", "import-log", str(log), "--device", "pixel7", "--model", str(MODEL),
         "--db", str(tmp_path / "runs.sqlite"), *extra],
        check=False, capture_output=True, text=True, timeout=120)


@pytest.mark.parametrize("text, delegate, threads, p50", [
    (logs.NEW_INFO, "xnnpack", 4, 19794),
    (logs.OLD_PLAIN, None, 1, None),
    (logs.LOGCAT_GPU, "gpu", 1, 8190),
    (logs.BRIEF_PROFILING, "cpu", 2, 5010),
    (logs.GPU_NOT_APPLIED, "gpu", 1, 90),
])
def test_each_format_is_stored_as_an_ok_cell(tmp_path, text, delegate, threads, p50):
    result = import_log(tmp_path, text, "--json")
    assert result.returncode == 0, result.stderr
    doc = json.loads(result.stdout)
    (cell,) = doc["cells"]
    assert cell["status"] == "ok" and cell["error"] is None
    assert (cell["device"], cell["model"], cell["variant"]) == ("pixel7", MODEL.name, "int8")
    assert cell["model_size_bytes"] == MODEL.stat().st_size and len(cell["model_sha256"]) == 64
    assert (cell["delegate"], cell["threads"]) == (delegate, threads)
    assert cell["latency_us"]["p50"] == (pytest.approx(p50) if p50 is not None else None)
    assert doc["devices"]["pixel7"]["runtime"] == "benchmark_model"
    assert doc["devices"]["pixel7"]["facts"]["cpu"]["count"] is None
    with sqlite3.connect(tmp_path / "runs.sqlite") as db:
        rows = db.execute("SELECT device, threads, status, p50_us, cell FROM cells WHERE run_id = ?",
                          (doc["run_id"],)).fetchall()
    ((device, stored_threads, status, p50_us, stored),) = rows
    assert (device, stored_threads, status) == ("pixel7", threads, "ok")
    assert p50_us == (pytest.approx(p50) if p50 is not None else None)
    assert json.loads(stored)["delegate"] == delegate


def test_the_partial_paste_keeps_every_printed_figure_and_invents_none(tmp_path):
    text = (REAL_LOGS / "mi11_yolov5s_fp32_cpu_tail.log").read_text()
    result = import_log(tmp_path, text, "--threads", "4", "--json")
    assert result.returncode == 0, result.stderr
    (cell,) = json.loads(result.stdout)["cells"]
    assert cell["latency_us"] == {"count": 50, "min": 247067.0, "max": 254474.0, "mean": 249684.0, "std": 1442.0,
                                  "p50": None, "p90": None, "p99": None, "p5": None, "p95": None,
                                  "p25": None, "p75": None}
    assert cell["delegate"] is None and cell["warmup"] == {"count": None, "mean_us": 304586.0}
    with sqlite3.connect(tmp_path / "runs.sqlite") as db:
        (stored,) = db.execute("SELECT cell FROM cells").fetchone()
    assert json.loads(stored)["latency_us"]["min"] == 247067.0
    # reports read it back: no median, no delegate, and nothing filled in on the way
    report = subprocess.run(
        [sys.executable, "-m", "controller", "report", "--db", str(tmp_path / "runs.sqlite"),
         "--html", str(tmp_path / "r.html"), "--markdown", str(tmp_path / "r.md"), "--csv", str(tmp_path / "r.csv")],
        check=False, capture_output=True, text=True, timeout=300)
    assert report.returncode == 0, report.stderr
    row = next(line for line in (tmp_path / "r.md").read_text().splitlines() if MODEL.name in line)
    assert "| - |" in row  # the p50 column
    (csv_row,) = csv.DictReader((tmp_path / "r.csv").open())
    assert (csv_row["latency_us.p50"], csv_row["latency_us.mean"], csv_row["delegate"]) == ("", "249684.0", "")


def test_a_log_without_a_thread_count_needs_threads(tmp_path):
    text = (REAL_LOGS / "mi11_yolov5s_fp32_cpu_tail.log").read_text()
    result = import_log(tmp_path, text)
    assert result.returncode == 2 and "Traceback" not in result.stderr
    assert "does not say how many threads" in result.stderr and "--threads" in result.stderr


def test_failed_log_is_a_failed_cell_and_the_command_still_succeeds(tmp_path):
    result = import_log(tmp_path, logs.NNAPI_FAILED)
    assert result.returncode == 0, result.stderr
    assert "Failed to apply NNAPI delegate." in result.stdout
    with sqlite3.connect(tmp_path / "runs.sqlite") as db:
        ((status, cell),) = db.execute("SELECT status, cell FROM cells").fetchall()
    assert status == "failed"
    assert json.loads(cell)["error"] == "Failed to apply NNAPI delegate."
    assert json.loads(cell)["delegate"] == "nnapi"


def test_overrides_and_bad_input(tmp_path):
    result = import_log(tmp_path, logs.OLD_PLAIN, "--delegate", "cpu", "--threads", "4", "--json")
    cell = json.loads(result.stdout)["cells"][0]
    assert (cell["delegate"], cell["threads"]) == ("cpu", 4)

    missing = subprocess.run(
        [sys.executable, "-m", "controller", "import-log", str(tmp_path / "nope.log"), "--device", "p",
         "--model", str(MODEL), "--db", str(tmp_path / "x.sqlite")],
        check=False, capture_output=True, text=True, timeout=60)
    assert missing.returncode == 2 and "nope.log" in missing.stderr and "Traceback" not in missing.stderr
    bad_model = tmp_path / "bad.tflite"
    bad_model.write_bytes(b"not a model")
    log = tmp_path / "ok.log"
    log.write_text(logs.NEW_INFO)
    wrong = subprocess.run(
        [sys.executable, "-m", "controller", "import-log", str(log), "--device", "p", "--model", str(bad_model),
         "--db", str(tmp_path / "x.sqlite")],
        check=False, capture_output=True, text=True, timeout=60)
    assert wrong.returncode == 2 and "bad.tflite" in wrong.stderr and "Traceback" not in wrong.stderr


@pytest.mark.parametrize("log", sorted(p.stem for p in REAL_LOGS.glob("*.log")))
def test_every_real_log_is_stored_and_read_back_unchanged(tmp_path, log):
    cell = log_cell((REAL_LOGS / f"{log}.log").read_text(), models.load(MODEL), "dev", None, 4)
    assert cell.runtime == "benchmark_model" and cell.status in ("ok", "failed")
    with open_store(tmp_path / "runs.sqlite") as store:
        store.start_run("r1", None, "2026-12-01T00:00:00+00:00")
        store.add_device("r1", "dev", DeviceInfo(agent_version="import-log", runtime="benchmark_model",
                                                 runtime_version=None, facts=imported_facts("dev")))
        store.add_cell("r1", cell, 0)
        (back,) = store.load_run("r1").cells
    assert back == cell  # every printed figure kept, every missing one still null


def test_a_log_is_stored_in_a_shared_postgresql_database(tmp_path, postgres_url):
    log = tmp_path / "console.log"
    log.write_text(logs.NEW_INFO)
    result = subprocess.run(
        [sys.executable, "-m", "controller", "import-log", str(log), "--device", "pixel7", "--model", str(MODEL),
         "--db", postgres_url, "--json"], check=False, capture_output=True, text=True, timeout=120)
    assert result.returncode == 0, result.stderr
    run_id = json.loads(result.stdout)["run_id"]
    with open_store(postgres_url) as store:
        (cell,) = store.load_run(run_id).cells
    assert (cell.device, cell.delegate, cell.threads) == ("pixel7", "xnnpack", 4)
    assert cell.latency_us.p50 == pytest.approx(19794)
