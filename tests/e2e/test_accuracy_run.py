"""End to end: accuracy on the device, output differences, parity, variant comparison."""

from __future__ import annotations

import os
import shutil
import textwrap

import pytest

from agent.wire.records import PreprocessSpec
from controller.runner import RunRequest, run
from controller.store import open_store
from tests.support import EXAMPLE_MODELS, FIXTURE_MODELS, QUICK, ROOT, controller, run_json

DIGITS = ROOT / "examples" / "datasets" / "digits"
DIGITS_SPEC = ROOT / "examples" / "digits_preprocess.toml"
COLORS = ROOT / "tests" / "fixtures" / "datasets" / "colors"
COLORS_SPEC = ROOT / "tests" / "fixtures" / "datasets" / "colors_bgr.toml"


def by_model(doc: dict) -> dict:
    return {c["model"]: c for c in doc["cells"]}


def test_family_accuracy_output_diff_and_recommendation(tmp_path, family):
    doc = run_json("--models", *map(str, family.values()), "--threads", "1", "--delegates", "xnnpack",
                   "--dataset", str(DIGITS), "--preprocess", str(DIGITS_SPEC), db=tmp_path / "r.sqlite")
    cells = by_model(doc)
    fp32 = cells["digits_cnn_fp32.tflite"]
    assert fp32["accuracy"]["samples"] == 360 and fp32["accuracy"]["skipped"] == 0
    assert fp32["accuracy"]["top1"] > 0.95 and fp32["accuracy"]["top5"] >= fp32["accuracy"]["top1"]
    assert fp32["output_diff"] is None  # the reference itself
    # The int8 model gets int8 tensors quantized with its own input scale and zero point:
    # a wrong quantization would not keep its accuracy.
    int8 = cells["digits_cnn_int8.tflite"]
    assert abs(int8["accuracy"]["top1"] - fp32["accuracy"]["top1"]) < 0.02
    for name in ("digits_cnn_fp16.tflite", "digits_cnn_dynamic.tflite", "digits_cnn_int8.tflite"):
        diff = cells[name]["output_diff"]
        assert diff["reference"] == "digits_cnn_fp32.tflite"
        assert 0 <= diff["mean_abs"] <= diff["max_abs"] < 0.5 and diff["top1_agreement"] > 0.95
        assert cells[name]["preprocess_parity"]["ok"] is True
    fp16_diff, int8_diff = (cells[f"digits_cnn_{v}.tflite"]["output_diff"]["max_abs"] for v in ("fp16", "int8"))
    assert fp16_diff < int8_diff

    (comparison,) = doc["variants"]
    assert comparison["device"] == "local" and comparison["reference"] == "digits_cnn_fp32.tflite"
    assert {r["variant"] for r in comparison["rows"]} == {"fp32", "fp16", "dynamic", "int8"}
    pick = comparison["recommendation"]
    assert pick["basis"] == "top1" and pick["model"] in cells
    rows = {r["model"]: r for r in comparison["rows"]}
    qualifying = [r for r in rows.values() if r["top1_delta"] >= -0.01]
    assert rows[pick["model"]]["p50_us"] == min(r["p50_us"] for r in qualifying)


def test_channel_order_in_the_spec_decides_accuracy(tmp_path):
    """A BGR model with channel means keeps its accuracy only when the spec says BGR."""
    rgb_spec = tmp_path / "rgb.toml"
    rgb_spec.write_text(COLORS_SPEC.read_text().replace('color = "BGR"', 'color = "RGB"'))
    accuracy = {}
    for name, spec in (("bgr", COLORS_SPEC), ("rgb", rgb_spec)):
        doc = run_json("--models", str(FIXTURE_MODELS / "bgr_mean.tflite"), "--threads", "1",
                       "--delegates", "cpu", "--dataset", str(COLORS), "--preprocess", str(spec),
                       db=tmp_path / "r.sqlite")
        accuracy[name] = doc["cells"][0]["accuracy"]["top1"]
    assert accuracy["bgr"] > 0.9
    assert accuracy["rgb"] < 0.6


def test_parity_catches_a_device_that_resizes_differently(tmp_path, monkeypatch):
    """The agent runs with an OpenCV whose resize ignores the asked-for interpolation."""
    shim = tmp_path / "shim"
    shim.mkdir()
    (shim / "sitecustomize.py").write_text(textwrap.dedent('''
        import cv2
        _resize = cv2.resize
        def resize(src, dsize, *args, **kwargs):
            kwargs["interpolation"] = cv2.INTER_NEAREST
            return _resize(src, dsize, **kwargs)
        cv2.resize = resize
    '''))
    monkeypatch.setenv("PYTHONPATH", os.pathsep.join(filter(None, [str(shim), os.environ.get("PYTHONPATH")])))
    from agent.formats.preprocess import load_spec

    request = RunRequest(devices=["local"], models=[str(FIXTURE_MODELS / "bgr_mean.tflite")],
                         threads=[1], delegates=["cpu"], dataset=str(COLORS),
                         preprocess=load_spec(str(COLORS_SPEC)))
    with open_store(tmp_path / "r.sqlite") as store:
        report = run(request, store)
    (cell,) = report.cells
    assert cell.status == "ok" and cell.preprocess_parity is not None
    assert not cell.preprocess_parity.ok
    assert cell.preprocess_parity.max_abs_diff > cell.preprocess_parity.tolerance
    assert any(line.startswith("PREPROCESSING MISMATCH") for line in report.errors)


def test_without_a_dataset_variants_compare_on_identical_random_inputs(tmp_path, family):
    doc = run_json("--models", str(family["fp32"]), str(family["int8"]), "--threads", "1",
                   "--delegates", "cpu", db=tmp_path / "r.sqlite")
    cells = by_model(doc)
    assert cells["digits_cnn_int8.tflite"]["accuracy"] is None
    diff = cells["digits_cnn_int8.tflite"]["output_diff"]
    assert diff["reference"] == "digits_cnn_fp32.tflite" and 0 < diff["max_abs"] < 0.5
    assert doc["variants"][0]["recommendation"]["basis"] == "top1_agreement"


def test_explicit_reference_is_measured_and_compared(tmp_path, family):
    doc = run_json("--models", str(family["fp16"]), "--reference", str(family["fp32"]),
                   "--threads", "1", "--delegates", "cpu", db=tmp_path / "r.sqlite")
    cells = by_model(doc)
    assert set(cells) == {"digits_cnn_fp16.tflite", "digits_cnn_fp32.tflite"}
    assert cells["digits_cnn_fp16.tflite"]["output_diff"]["top1_agreement"] == 1.0


def test_bad_dataset_inputs_cost_one_line_each_and_the_run_goes_on(tmp_path, family):
    dataset = tmp_path / "digits"
    for label in ("0", "1", "2", "3", "4", "5", "6", "7", "8", "9"):
        shutil.copytree(DIGITS / label, dataset / label)
    (dataset / "4" / "broken.png").write_bytes(b"\x89PNG\r\n\x1a\n truncated")
    doc = run_json("--models", str(family["fp32"]), str(FIXTURE_MODELS / "bgr_mean.tflite"),
                   "--threads", "1", "--delegates", "cpu", "--dataset", str(dataset),
                   "--preprocess", str(DIGITS_SPEC), db=tmp_path / "r.sqlite")
    cells = by_model(doc)
    fp32 = cells["digits_cnn_fp32.tflite"]
    assert fp32["accuracy"]["skipped"] == 1 and fp32["accuracy"]["samples"] == 360
    assert any("could not be used (first: 4/broken.png" in w for w in fp32["warnings"])
    # The colour model has 3 outputs, the dataset 10 classes: timed, not evaluated.
    assert cells["bgr_mean.tflite"]["status"] == "ok" and cells["bgr_mean.tflite"]["accuracy"] is None
    assert "accuracy not measured for bgr_mean.tflite: outputs 3 values but the dataset has 10 classes" in doc["errors"]


@pytest.mark.parametrize("spec_text, message", [
    ("size = [8, 8]\ncolour = 'RGB'\n", "unknown field `colour`"),
    ("size = [0, 8]\n", "must be positive"),
])
def test_bad_spec_is_a_usage_error(tmp_path, family, spec_text, message):
    spec = tmp_path / "spec.toml"
    spec.write_text(spec_text)
    result = controller("run", "--device", "local", *QUICK, "--models", str(family["fp32"]),
                        "--dataset", str(DIGITS), "--preprocess", str(spec), db=tmp_path / "r.sqlite")
    assert result.returncode == 2
    assert message in result.stderr and "Traceback" not in result.stderr


def test_preprocess_command_writes_the_tensor_the_device_uses(tmp_path):
    import numpy as np

    from agent.formats.modelfile import read_model_file
    from agent.formats.preprocess import InputTensor, load_spec, preprocess_image

    image = next((DIGITS / "7").glob("*.png"))
    model = EXAMPLE_MODELS / "digits_cnn_int8.tflite"
    out = tmp_path / "t.npy"
    result = controller("preprocess", "--spec", str(DIGITS_SPEC), "--image", str(image), "--out", str(out),
                        "--model", str(model))
    assert result.returncode == 0, result.stderr
    expected = preprocess_image(image.read_bytes(), load_spec(str(DIGITS_SPEC)),
                                InputTensor.from_info(read_model_file(model).inputs[0]))
    tensor = np.load(out)
    assert tensor.dtype == np.int8 and tensor.shape == (1, 8, 8, 1)
    np.testing.assert_array_equal(tensor, expected)


def test_spec_without_size_needs_a_model_for_preprocess(tmp_path):
    image = next((DIGITS / "7").glob("*.png"))
    result = controller("preprocess", "--spec", str(DIGITS_SPEC), "--image", str(image),
                        "--out", str(tmp_path / "t.npy"))
    assert result.returncode == 2 and "no size" in result.stderr


def test_spec_type_is_the_one_schema_definition():
    assert set(PreprocessSpec.__struct_fields__) == {
        "size", "resize", "resize_to", "interpolation", "color", "mean", "std", "scale"}
