"""`controller quantize` on a small Keras model, calibrated through the preprocessing spec."""

from __future__ import annotations

import numpy as np
import pytest

from agent.formats.modelfile import read_model_file
from tests.support import ROOT, controller

tf = pytest.importorskip("tensorflow", reason="needs the quantize extra (TensorFlow)")

DIGITS = ROOT / "examples" / "datasets" / "digits"
SPEC = ROOT / "examples" / "digits_preprocess.toml"


def small_keras_model(path):
    tf.keras.utils.set_random_seed(1)
    model = tf.keras.Sequential([
        tf.keras.layers.Input((8, 8, 1)),
        tf.keras.layers.Conv2D(4, 3, activation="relu"),
        tf.keras.layers.Flatten(),
        tf.keras.layers.Dense(10, activation="softmax"),
    ])
    model.save(path)


def test_quantize_writes_four_variants_calibrated_on_preprocessed_images(tmp_path):
    model = tmp_path / "tiny.keras"
    small_keras_model(model)
    result = controller("quantize", str(model), "--representative", str(DIGITS),
                        "--preprocess", str(SPEC), "--out", str(tmp_path / "out"))
    assert result.returncode == 0, result.stderr
    for variant in ("fp32", "fp16", "dynamic", "int8"):
        info = read_model_file(tmp_path / "out" / f"tiny_{variant}.tflite")
        assert info.variant == variant
    (int8_input,) = read_model_file(tmp_path / "out" / "tiny_int8.tflite").inputs
    # Calibration saw pixels scaled to [0, 1] by the spec: the input scale is 1/255.
    assert int8_input.dtype == "int8"
    assert np.isclose(int8_input.scale, 1 / 255, rtol=0.02) and int8_input.zero_point == -128


def test_quantize_rejects_what_it_cannot_read(tmp_path):
    bogus = tmp_path / "model.keras"
    bogus.write_bytes(b"not a model")
    result = controller("quantize", str(bogus), "--representative", str(DIGITS),
                        "--preprocess", str(SPEC), "--out", str(tmp_path / "out"))
    assert result.returncode == 2
    assert "cannot load Keras model" in result.stderr and "Traceback" not in result.stderr
