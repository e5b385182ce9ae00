"""Per-op profiles end to end: `controller run --op-profile` on the local agent, the store,
the terminal, the HTML report, `controller profile-diff` and `controller regress`."""

from __future__ import annotations

import json
import os
import shutil

import pytest

from tests.support import EXAMPLE_MODELS, QUICK, controller, run_json

FP32 = EXAMPLE_MODELS / "digits_cnn_fp32.tflite"
INT8 = EXAMPLE_MODELS / "digits_cnn_int8.tflite"
PROFILE = ["--threads", "1", "--delegates", "cpu,xnnpack", "--op-profile"]


@pytest.fixture(scope="module")
def profiled_run(tmp_path_factory):
    """One profiled run of the digits fp32 and int8 variants, stored in its own database."""
    home = tmp_path_factory.mktemp("profiled")
    env = {**os.environ, "XDG_DATA_HOME": str(home / "data")}
    db = home / "runs.sqlite"
    result = controller("run", "--device", "local", *QUICK, *PROFILE, "--models", str(FP32), str(INT8),
                        "--tag", "op", db=db, env=env)
    assert result.returncode == 0, result.stderr
    return db, env, result.stdout


def test_profile_block_in_the_json_and_the_store(profiled_run):
    db, env, _ = profiled_run
    shown = controller("report", "--run", "op", "--csv", "-", db=db, env=env)
    assert shown.returncode == 0, shown.stderr
    assert "op_profile.method" in shown.stdout.splitlines()[0]
    diff = controller("profile-diff", "op", "op", "--json", db=db, env=env)
    assert diff.returncode == 0, diff.stderr
    # A run against itself: every op type and node unchanged.
    for one in json.loads(diff.stdout):
        assert all(c["change_us"] == 0 for c in one["by_type"] + one["nodes"] if c["change_us"] is not None)


def test_run_json_carries_op_profiles(tmp_path):
    doc = run_json(*PROFILE, "--models", str(INT8), db=tmp_path / "r.sqlite")
    cells = {c["delegate"]: c for c in doc["cells"]}
    for cell in cells.values():
        profile = cell["op_profile"]
        assert profile["method"] == "isolated ops"
        assert set(profile) >= {"method", "reconciled", "nodes", "by_type", "warnings"}
        assert [n["index"] for n in profile["nodes"]] == list(range(10))
        assert set(profile["nodes"][0]) >= {"index", "op_type", "name", "ran_on", "times_called", "avg_us",
                                            "p50_us", "share"}
        assert {t["op_type"] for t in profile["by_type"]} == {n["op_type"] for n in profile["nodes"]}
    # The int8 digits model keeps its reshape path and SOFTMAX off XNNPACK.
    left = cells["xnnpack"]["delegate_coverage"]["not_delegated"]
    assert [ref["op_type"] for ref in left] == ["SHAPE", "STRIDED_SLICE", "PACK", "RESHAPE", "SOFTMAX"]
    ran_on = {n["index"]: n["ran_on"] for n in cells["xnnpack"]["op_profile"]["nodes"]}
    assert {ran_on[ref["index"]] for ref in left} == {"cpu"}
    assert cells["cpu"]["delegate_coverage"] is None


def test_terminal_shows_the_slowest_ops_per_cell(profiled_run):
    _, _, stdout = profiled_run
    assert "slowest 5 ops per cell" in stdout
    assert "local digits_cnn_int8.tflite xnnpack x1" in stdout
    assert "fell back" in stdout and "left to the CPU: SHAPE, STRIDED_SLICE, PACK, RESHAPE, SOFTMAX" in stdout


def test_reports_have_the_per_op_charts_and_tables(profiled_run, tmp_path):
    db, env, _ = profiled_run
    out = tmp_path / "report.html"
    result = controller("report", "--run", "op", "--html", str(out), db=db, env=env)
    assert result.returncode == 0, result.stderr
    text = out.read_text()
    assert "<h2>Per-op profiles</h2>" in text
    # The family side by side per op type, for each setting, and one chart per cell.
    assert "digits_cnn on local, xnnpack x1: variants per op type" in text
    assert "digits_cnn on local, cpu x1: variants per op type" in text
    assert text.count('alt="local digits_cnn_') == 4
    assert "5 of 10 nodes fell back to the CPU: SHAPE, STRIDED_SLICE, PACK, RESHAPE, SOFTMAX" in text
    markdown = controller("report", "--run", "op", "--markdown", "-", db=db, env=env)
    assert "## Slowest ops per cell" in markdown.stdout
    assert "| local digits_cnn_int8.tflite xnnpack x1 |" in markdown.stdout


def test_profile_diff_between_two_variants(profiled_run):
    db, env, _ = profiled_run
    result = controller("profile-diff", FP32.name, INT8.name, "--run", "op", "--delegate", "xnnpack", "--json",
                        db=db, env=env)
    assert result.returncode == 0, result.stderr
    (found,) = json.loads(result.stdout)
    assert found["baseline"] == "local digits_cnn_fp32.tflite xnnpack x1"
    assert found["candidate"] == "local digits_cnn_int8.tflite xnnpack x1"
    changes = [abs(c["change_us"]) for c in found["by_type"] if c["change_us"] is not None]
    assert changes == sorted(changes, reverse=True) and changes
    table = controller("profile-diff", FP32.name, INT8.name, "--run", "op", db=db, env=env)
    assert table.returncode == 0 and "by type" in table.stdout and "CONV_2D" in table.stdout


def test_profile_diff_usage_errors(profiled_run):
    db, env, _ = profiled_run
    mixed = controller("profile-diff", "op", INT8.name, db=db, env=env)
    assert mixed.returncode == 2 and "not one of each" in mixed.stderr
    absent = controller("profile-diff", FP32.name, "nothing.tflite", "--run", "op", db=db, env=env)
    assert absent.returncode == 2 and "no cells" in absent.stderr
    unknown = controller("profile-diff", "no-such-run", "op", db=db, env=env)
    assert unknown.returncode == 2


def test_profile_default_turns_profiling_on(tmp_path):
    profiles = tmp_path / "profiles"
    profiles.mkdir()
    (profiles / "board.toml").write_text('transport = "local"\nthreads = [1]\ndelegates = ["xnnpack"]\n'
                                         "op_profile = true\n")
    env = {**os.environ, "EDGEBENCH_PROFILES": str(profiles)}
    result = controller("run", "--device", "board", *QUICK, "--models", str(FP32), "--json",
                        db=tmp_path / "r.sqlite", env=env)
    assert result.returncode == 0, result.stderr
    (cell,) = json.loads(result.stdout)["cells"]
    assert cell["op_profile"]["method"] == "isolated ops"
    (profiles / "board.toml").write_text('transport = "local"\nop_profile = "yes"\n')
    bad = controller("run", "--device", "board", *QUICK, "--models", str(FP32), db=tmp_path / "r.sqlite", env=env)
    assert bad.returncode == 2 and "op_profile must be true or false" in bad.stderr


def test_regress_flags_a_delegate_that_took_fewer_nodes(tmp_path):
    # A flag beside the verdict, which the figures decide.
    # The same file name, first the fp32 model (6 of 10 nodes on XNNPACK), then the int8 one (5 of 10).
    db = tmp_path / "r.sqlite"
    model = tmp_path / "digits.tflite"
    shutil.copy(FP32, model)
    run_json("--threads", "1", "--delegates", "xnnpack", "--models", str(model), "--tag", "base", db=db)
    shutil.copy(INT8, model)
    run_json("--threads", "1", "--delegates", "xnnpack", "--models", str(model), "--tag", "cand", db=db)
    result = controller("regress", "--baseline", "base", "--candidate", "cand", "--json", db=db)
    assert result.returncode in (0, 1), result.stderr
    (cell,) = json.loads(result.stdout)["cells"]
    assert "delegate took 5 of 10 nodes, 6 in the baseline (SHAPE, STRIDED_SLICE, PACK, RESHAPE, SOFTMAX " \
           "on the CPU)" in cell["flags"]
