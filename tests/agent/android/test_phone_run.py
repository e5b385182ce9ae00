"""End to end: `controller run` on an emulated phone, through a real local agent and adb-shell."""

from __future__ import annotations

import json
import sqlite3
import subprocess
import sys

import pytest

from tests.support import EXAMPLE_MODELS, QUICK
from tests.support.phone import emulated_phone, write_stand_in

MODEL = EXAMPLE_MODELS / "digits_cnn_int8.tflite"


def controller(*args: str, db) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "controller", *args, "--db", str(db)],
                          check=False, capture_output=True, text=True, timeout=600)


@pytest.fixture
def profiles_dir(tmp_path, monkeypatch):
    directory = tmp_path / "profiles"
    write_stand_in(directory / "bin" / "benchmark_model")
    monkeypatch.setenv("EDGEBENCH_PROFILES", str(directory))
    return directory


def write_profile(directory, address: str) -> None:
    (directory / "phone.toml").write_text(
        'name = "phone"\ndescription = "emulated phone"\ntransport = "adb"\n'
        f'adb_address = "{address}"\nvia = "local"\nbenchmark_binary = "bin/benchmark_model"\n'
        'taskset = "1"\nthreads = [1, 2]\ndelegates = ["cpu", "xnnpack", "gpu", "nnapi"]\n')


def test_run_on_a_phone_gives_the_same_json_table_and_history_as_a_pi(tmp_path, profiles_dir):
    db = tmp_path / "runs.sqlite"
    with emulated_phone(tmp_path) as phone:
        write_profile(profiles_dir, phone.address)
        result = controller("run", "--device", "phone", "--models", str(MODEL), *QUICK, "--json", db=db)
        assert result.returncode == 0, result.stderr
        doc = json.loads(result.stdout)
        again = controller("run", "--device", "phone", "--models", str(MODEL), *QUICK,
                           "--delegates", "xnnpack", "--threads", "1", db=db)
        assert again.returncode == 0, again.stderr
        pushed = [c for c in phone.commands if c.startswith("mv -f")]
        runs = [c for c in phone.commands if "--graph=" in c]

    facts = doc["devices"]["phone"]["facts"]
    assert doc["devices"]["phone"]["runtime"] == "benchmark_model"
    assert facts["board"] == "Google Pixel Emul" and facts["os"] == "Android 13 (API 33)"
    assert facts["cpu"]["count"] == 8 and facts["android"]["soc"] == "SM8250"
    cells = {(c["delegate"], c["threads"]): c for c in doc["cells"]}
    assert set(cells) == {(d, n) for d in ("cpu", "xnnpack", "gpu", "nnapi") for n in (1, 2)}
    for (delegate, _threads), cell in cells.items():
        assert (cell["device"], cell["model"], cell["variant"], cell["round"]) == ("phone", MODEL.name, "int8", 0)
        assert cell["model_size_bytes"] == MODEL.stat().st_size
        if delegate in ("nnapi", "gpu"):  # this phone has neither an NNAPI driver nor a GPU delegate
            assert cell["status"] == "failed"
            assert cell["error"] == f"Failed to apply {delegate.upper()} delegate."
            continue
        assert cell["status"] == "ok", cell["error"]
        assert cell["runtime"] == "benchmark_model"
        latency = cell["latency_us"]
        assert latency["count"] == 5 and latency["min"] <= latency["p50"] <= latency["max"]
        assert latency["p90"] is None and latency["p99"] is None  # benchmark_model prints neither
        assert cell["device_state"]["temp_c_start"] == pytest.approx(41.5)
        # Android has no throttle word: unknown, with the reason, never "not throttled".
        assert cell["device_state"]["throttled"] is None and cell["device_state"]["throttle_problem"]

    assert len(pushed) == 2  # binary and model, across both runs
    assert len(runs) == 9 and all(r.startswith("taskset 1 ") for r in runs)
    row = next(line for line in again.stdout.splitlines() if MODEL.name in line)
    assert "xnnpack" in row and "ok" in row
    with sqlite3.connect(db) as conn:
        stored = conn.execute("SELECT delegate, threads, status FROM cells WHERE run_id = ? ORDER BY id",
                              (doc["run_id"],)).fetchall()
        (runs_stored,) = conn.execute("SELECT count(*) FROM runs").fetchone()
    assert sorted(stored) == sorted((c["delegate"], c["threads"], c["status"]) for c in doc["cells"])
    assert runs_stored == 2


def test_phone_that_is_not_there_fails_its_cells_with_one_line(tmp_path, profiles_dir):
    with emulated_phone(tmp_path) as gone:
        address = gone.address
    write_profile(profiles_dir, address)
    result = controller("run", "--device", "phone", "--models", str(MODEL), *QUICK, "--delegates", "xnnpack",
                        "--threads", "1", "--json", db=tmp_path / "runs.sqlite")
    assert result.returncode == 2  # nothing could be measured
    doc = json.loads(result.stdout)
    assert doc["devices"] == {}
    (cell,) = doc["cells"]
    assert cell["status"] == "failed"
    assert cell["error"].startswith(f"phone {address} not reachable")
    assert any(line.startswith(f"device phone: phone {address} not reachable") for line in doc["errors"])
    assert "Traceback" not in result.stderr


def test_phone_op_profile_comes_from_the_stand_in_tables_through_the_parser(tmp_path, profiles_dir):
    db = tmp_path / "runs.sqlite"
    with emulated_phone(tmp_path) as phone:
        write_profile(profiles_dir, phone.address)
        result = controller("run", "--device", "phone", "--models", str(MODEL), *QUICK, "--delegates", "xnnpack",
                            "--threads", "1", "--op-profile", "--json", db=db)
        runs = [c for c in phone.commands if "--graph=" in c]
    assert result.returncode == 0, result.stderr
    assert all("--enable_op_profiling=true" in r for r in runs) and runs
    (cell,) = json.loads(result.stdout)["cells"]
    assert cell["status"] == "ok", cell["error"]
    profile = cell["op_profile"]
    assert profile["method"] == "benchmark_model"
    # The stand-in timed the model's own nodes. The tool prints ms with three decimals, so a
    # sub-microsecond op reads 0.000; the convolutions never do.
    assert {n["op_type"] for n in profile["nodes"]} >= {"CONV_2D", "FULLY_CONNECTED"}
    assert all(n["avg_us"] is None or n["avg_us"] >= 0 for n in profile["nodes"])
    assert all(n["avg_us"] > 0 for n in profile["nodes"] if n["op_type"] == "CONV_2D")
    assert sum(t["count"] for t in profile["by_type"]) == len(profile["nodes"])
