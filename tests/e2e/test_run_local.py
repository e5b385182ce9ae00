"""End to end: `controller run --device local` with a real agent, real models, real SQLite."""

from __future__ import annotations

import json
import shutil
import sqlite3

import pytest

from tests.support import FIXTURE_MODELS, QUICK, controller, run_json

CELL_KEYS = {
    "device", "model", "model_sha256", "model_size_bytes", "variant", "delegate", "threads",
    "round", "status", "error", "init_ms", "first_inference_us", "warmup", "latency_us",
    "memory_mb", "accuracy", "output_diff", "delegate_coverage", "device_state",
}
LATENCY_KEYS = {"count", "min", "max", "mean", "std", "p50", "p90", "p99"}
FACT_KEYS = {"hostname", "board", "machine", "os", "kernel", "python", "runtime",
             "runtime_version", "cpu", "memory_mb", "temp_c", "throttled"}


def test_full_local_run_holds_the_json_contract(tmp_path, family):
    db = tmp_path / "runs.sqlite"
    doc = run_json("--models", *map(str, family.values()), "--threads", "1,2", db=db)

    assert set(doc) >= {"run_id", "tag", "started_at", "finished_at", "devices", "transfer", "cells"}
    device = doc["devices"]["local"]
    assert device["runtime"] == "ai-edge-litert" and device["runtime_version"]
    assert set(device["facts"]) >= FACT_KEYS
    assert device["facts"]["cpu"]["count"] >= 1
    assert doc["transfer"]["model_bytes_sent"] == sum(p.stat().st_size for p in family.values())

    assert len(doc["cells"]) == 4 * 2 * 2
    by_key = {(c["model"], c["delegate"], c["threads"]): c for c in doc["cells"]}
    assert len(by_key) == 16
    for variant, path in family.items():
        for delegate in ("cpu", "xnnpack"):
            for threads in (1, 2):
                cell = by_key[(path.name, delegate, threads)]
                assert set(cell) >= CELL_KEYS
                assert cell["status"] == "ok", cell["error"]
                assert cell["error"] is None
                assert cell["variant"] == variant
                assert cell["device"] == "local" and cell["round"] == 0
                assert cell["model_size_bytes"] == path.stat().st_size
                assert len(cell["model_sha256"]) == 64
                assert cell["runtime"] == "ai-edge-litert"
                assert cell["init_ms"] > 0 and cell["first_inference_us"] > 0
                assert cell["warmup"]["count"] >= 1 and cell["warmup"]["mean_us"] > 0
                lat = cell["latency_us"]
                assert set(lat) >= LATENCY_KEYS
                assert lat["count"] >= 5
                assert 0 < lat["min"] <= lat["p50"] <= lat["p90"] <= lat["p99"] <= lat["max"]
                assert lat["min"] <= lat["mean"] <= lat["max"] and lat["std"] >= 0
                mem = cell["memory_mb"]
                assert mem["peak_rss"] > 0 and mem["overall"] >= 0
                assert mem["peak_rss"] >= mem["overall"]
                assert cell["accuracy"] is None  # no dataset given
                # Without a dataset, variants are compared with fp32 on seeded random inputs.
                if variant == "fp32":
                    assert cell["output_diff"] is None
                else:
                    assert cell["output_diff"]["reference"] == "digits_cnn_fp32.tflite"
                assert "throttled" in cell["device_state"]

    with sqlite3.connect(db) as conn:
        (runs,) = conn.execute("SELECT count(*) FROM runs WHERE run_id = ?", (doc["run_id"],)).fetchone()
        stored = conn.execute("SELECT cell FROM cells WHERE run_id = ?", (doc["run_id"],)).fetchall()
    assert runs == 1
    assert sorted(json.loads(row[0])["model_sha256"] + json.loads(row[0])["delegate"]
                  for row in stored) == sorted(c["model_sha256"] + c["delegate"] for c in doc["cells"])


def test_second_run_sends_no_model_bytes(tmp_path, family):
    db = tmp_path / "runs.sqlite"
    models = [str(family["fp32"]), str(family["int8"])]
    first = run_json("--models", *models, "--threads", "1", "--delegates", "xnnpack", db=db)
    second = run_json("--models", *models, "--threads", "1", "--delegates", "xnnpack", db=db)
    assert first["transfer"]["model_bytes_sent"] > 0
    assert second["transfer"] == {"model_bytes_sent": 0, "models_cached": 2}
    assert [c["status"] for c in second["cells"]] == ["ok", "ok"]


def test_bad_models_get_one_line_each_and_good_ones_are_measured(tmp_path, family):
    corrupt = tmp_path / "corrupt.tflite"
    corrupt.write_bytes(b"this is not a flatbuffer at all")
    truncated = tmp_path / "truncated.tflite"
    truncated.write_bytes(family["fp32"].read_bytes()[:200])
    missing = tmp_path / "missing.tflite"
    result = controller("run", "--device", "local", *QUICK, "--threads", "1", "--delegates", "xnnpack",
                        "--models", str(corrupt), str(family["fp32"]), str(missing), str(truncated),
                        "--json", db=tmp_path / "runs.sqlite")
    assert result.returncode == 0, result.stderr
    doc = json.loads(result.stdout)
    assert [c["model"] for c in doc["cells"]] == [family["fp32"].name]
    assert doc["cells"][0]["status"] == "ok"
    assert "Traceback" not in result.stderr
    for path, reason in ((corrupt, "not a TFLite flatbuffer"), (missing, "no such file"),
                         (truncated, "truncated or corrupt")):
        lines = [line for line in doc["errors"] if line.startswith(str(path))]
        assert len(lines) == 1 and reason in lines[0]
        assert reason in result.stderr


def test_nothing_readable_exits_2_without_traceback(tmp_path):
    result = controller("run", "--device", "local", "--models", str(tmp_path / "nope.tflite"),
                        db=tmp_path / "runs.sqlite")
    assert result.returncode == 2
    assert "no such file" in result.stderr and "Traceback" not in result.stderr


def test_empty_models_is_a_usage_error(tmp_path):
    result = controller("run", "--device", "local", "--models", db=tmp_path / "runs.sqlite")
    assert result.returncode == 2
    assert "--models" in result.stderr


def test_quoted_glob_is_expanded_and_table_printed(tmp_path, family):
    for path in (family["fp16"], family["dynamic"]):
        shutil.copy(path, tmp_path / path.name)
    result = controller("run", "--device", "local", *QUICK, "--threads", "1", "--delegates", "cpu",
                        "--models", str(tmp_path / "*.tflite"), db=tmp_path / "runs.sqlite")
    assert result.returncode == 0, result.stderr
    for name, variant in ((family["fp16"].name, "fp16"), (family["dynamic"].name, "dynamic")):
        row = next(line for line in result.stdout.splitlines() if name in line)
        assert variant in row and "ok" in row


@pytest.mark.parametrize("fixture", ["uint8_io.tflite", "int8_io.tflite", "multi_input.tflite"])
def test_integer_and_multi_input_models_are_fed_their_own_dtypes(tmp_path, fixture):
    doc = run_json("--models", str(FIXTURE_MODELS / fixture), "--threads", "1", db=tmp_path / "r.sqlite")
    assert doc["cells"] and all(c["status"] == "ok" for c in doc["cells"]), doc["cells"]


def test_model_with_unsupported_op_fails_its_cells_only(tmp_path, family):
    doc = run_json("--models", str(FIXTURE_MODELS / "unsupported_op.tflite"), str(family["int8"]),
                   "--threads", "1", "--delegates", "xnnpack", db=tmp_path / "r.sqlite")
    cells = {c["model"]: c for c in doc["cells"]}
    bad = cells["unsupported_op.tflite"]
    assert bad["status"] == "failed"
    assert "\n" not in bad["error"] and bad["error"].startswith(("loading the model", "allocating"))
    assert cells[family["int8"].name]["status"] == "ok"
