"""`controller import-log`: each log format stored as a run, the same way a measured run is."""

from __future__ import annotations

import json
import sqlite3
import subprocess
import sys

import pytest

from tests.support import EXAMPLE_MODELS
from tests.support import benchmark_logs as logs

MODEL = EXAMPLE_MODELS / "digits_cnn_int8.tflite"


def import_log(tmp_path, text: str, *extra: str) -> subprocess.CompletedProcess:
    log = tmp_path / "console.log"
    log.write_text(text)
    return subprocess.run(
        [sys.executable, "-m", "controller", "import-log", str(log), "--device", "pixel7", "--model", str(MODEL),
         "--db", str(tmp_path / "runs.sqlite"), *extra],
        check=False, capture_output=True, text=True, timeout=120)


@pytest.mark.parametrize("text, delegate, threads, p50", [
    (logs.NEW_INFO, "xnnpack", 4, 19794),
    (logs.OLD_PLAIN, "xnnpack", 1, 1.20411e6),
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
    assert cell["latency_us"]["p50"] == pytest.approx(p50)
    assert doc["devices"]["pixel7"]["runtime"] == "benchmark_model"
    with sqlite3.connect(tmp_path / "runs.sqlite") as db:
        rows = db.execute("SELECT device, delegate, threads, status, p50_us FROM cells WHERE run_id = ?",
                          (doc["run_id"],)).fetchall()
    assert rows == [("pixel7", delegate, threads, "ok", pytest.approx(p50))]


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
