"""Delegates end to end: cpu vs xnnpack, coverage, external libraries, LiteRT's GPU on lavapipe."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from tests.support import EXAMPLE_MODELS, FIXTURE_MODELS, QUICK, controller

MOBILENET = EXAMPLE_MODELS / "mobilenet_v2_035_96_fp32.tflite"
LAVAPIPE = Path("/usr/share/vulkan/icd.d/lvp_icd.json")


def run_on(profile_dir: Path, db: Path, *args: str, env: dict | None = None, status: int = 0) -> dict:
    environment = {**os.environ, "EDGEBENCH_PROFILES": str(profile_dir), **(env or {})}
    result = controller("run", "--device", "board", *QUICK, "--threads", "1", *args, "--json", db=db,
                        env=environment)
    assert result.returncode == status, result.stderr
    return json.loads(result.stdout)


@pytest.fixture
def profiles(tmp_path):
    """A local profile with external delegates and GPU precision options."""
    directory = tmp_path / "profiles"
    directory.mkdir()
    (directory / "board.toml").write_text(
        'transport = "local"\nthreads = [1]\ndelegates = ["cpu", "xnnpack"]\n'
        '[delegate_options.edgetpu]\nlibrary = "/nonexistent/libedgetpu.so.1"\n'
        '[delegate_options.notadelegate]\nlibrary = "libm.so.6"\n'
        '[delegate_options.litert-gpu]\nprecision = "fp32"\n')
    return directory


def by_delegate(doc: dict, model: str) -> dict:
    return {c["delegate"]: c for c in doc["cells"] if c["model"] == model}


def test_cpu_and_xnnpack_say_which_ran(tmp_path, profiles):
    doc = run_on(profiles, tmp_path / "r.sqlite", "--models", str(MOBILENET), "--delegates", "cpu,xnnpack")
    cells = by_delegate(doc, MOBILENET.name)
    assert cells["cpu"]["status"] == cells["xnnpack"]["status"] == "ok"
    assert cells["cpu"]["delegate_coverage"] is None  # plain interpreter kernels
    assert cells["xnnpack"]["delegate_coverage"] == {"delegated_nodes": 65, "total_nodes": 65, "full": True,
                                                     "not_delegated": []}


def test_partial_delegation_is_reported_and_can_be_refused(tmp_path, profiles):
    model = FIXTURE_MODELS / "multi_input.tflite"
    doc = run_on(profiles, tmp_path / "r.sqlite", "--models", str(model), "--delegates", "xnnpack")
    coverage = doc["cells"][0]["delegate_coverage"]
    assert coverage["full"] is False and 0 < coverage["delegated_nodes"] < coverage["total_nodes"]
    left = coverage["not_delegated"]
    assert len(left) == coverage["total_nodes"] - coverage["delegated_nodes"]
    assert all(isinstance(node["index"], int) and node["op_type"] for node in left)
    strict = run_on(profiles, tmp_path / "r.sqlite", "--models", str(model), "--delegates", "xnnpack",
                    "--require-full-delegation", status=2)  # no cell finished ok
    (cell,) = strict["cells"]
    assert cell["status"] == "failed"
    assert cell["error"].startswith("delegation incomplete: xnnpack took")


def test_external_delegates_that_cannot_load_fail_their_cells_only(tmp_path, profiles):
    doc = run_on(profiles, tmp_path / "r.sqlite", "--models", str(EXAMPLE_MODELS / "digits_cnn_int8.tflite"),
                 "--delegates", "xnnpack,edgetpu,notadelegate")
    cells = by_delegate(doc, "digits_cnn_int8.tflite")
    assert cells["xnnpack"]["status"] == "ok"
    missing, wrong = cells["edgetpu"], cells["notadelegate"]
    assert missing["status"] == wrong["status"] == "failed"
    assert "cannot load delegate edgetpu from /nonexistent/libedgetpu.so.1" in missing["error"]
    assert "No such file" in missing["error"]
    assert "cannot load delegate notadelegate from libm.so.6" in wrong["error"]
    assert "\n" not in missing["error"] + wrong["error"]


def test_litert_gpu_fails_cleanly_without_a_gpu_adapter(tmp_path, profiles):
    doc = run_on(profiles, tmp_path / "r.sqlite", "--models", str(MOBILENET), "--delegates", "xnnpack,litert-gpu",
                 env={"VK_ICD_FILENAMES": str(tmp_path / "no-such-icd.json")})
    cells = by_delegate(doc, MOBILENET.name)
    assert cells["xnnpack"]["status"] == "ok"
    assert cells["litert-gpu"]["status"] == "failed"
    assert cells["litert-gpu"]["error"] == (
        "LiteRT GPU accelerator unavailable: no GPU adapter found (no Vulkan/OpenCL driver for a GPU)")


@pytest.mark.skipif(not LAVAPIPE.exists(), reason="needs Mesa's lavapipe Vulkan driver (mesa-vulkan-drivers 25)")
@pytest.mark.parametrize("precision, tolerance", [("fp16", 0.1), ("fp32", 1e-4)])
def test_litert_gpu_on_lavapipe_agrees_with_the_cpu(tmp_path, profiles, precision, tolerance):
    board = profiles / "board.toml"
    board.write_text(board.read_text().replace('precision = "fp32"', f'precision = "{precision}"'))
    doc = run_on(profiles, tmp_path / "r.sqlite", "--models", str(MOBILENET), "--delegates", "cpu,litert-gpu",
                 env={"VK_ICD_FILENAMES": str(LAVAPIPE)})
    gpu = by_delegate(doc, MOBILENET.name)["litert-gpu"]
    assert gpu["status"] == "ok", gpu["error"]
    assert gpu["latency_us"]["count"] >= 5 and gpu["delegate_init_ms"] > 0
    assert gpu["delegate_coverage"]["full"] is True
    diff = gpu["output_diff"]
    assert diff["reference"] == f"{MOBILENET.name} on cpu"
    assert diff["max_abs"] < tolerance


_READ_BACK = """
import sys
import numpy as np
from agent.gpu import CompiledModelRunner

runner = CompiledModelRunner(sys.argv[1], "fp32")
(detail,) = runner.get_input_details()
runner.set_tensor(detail["index"], np.full(detail["shape"], 0.5, np.float32))
runner.invoke()
(output,) = runner.get_output_details()
probabilities = runner.get_tensor(output["index"])
print(probabilities.shape, float(probabilities.sum()))
"""


@pytest.mark.skipif(not LAVAPIPE.exists(), reason="needs Mesa's lavapipe Vulkan driver (mesa-vulkan-drivers 25)")
def test_gpu_invoke_returns_readable_outputs():
    """Each timed invoke ends with the outputs read back, never at the enqueue.

    In a process of its own, as the agent runs GPU cells: the GPU runtime must not share a
    process with TensorFlow, which other tests load.
    """
    result = subprocess.run([sys.executable, "-c", _READ_BACK, str(MOBILENET)], capture_output=True, text=True,
                            timeout=300, check=False, env={**os.environ, "VK_ICD_FILENAMES": str(LAVAPIPE)})
    assert result.returncode == 0, result.stderr[-2000:]
    shape, total = result.stdout.strip().splitlines()[-1].rsplit(" ", 1)  # LiteRT logs to stdout too
    assert shape == "(1, 10)" and abs(float(total) - 1.0) < 1e-3
