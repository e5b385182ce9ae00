"""Produce the four variants of a model with TensorFlow's converter.

fp32; fp16 weights; dynamic-range int8 weights; full integer int8 (int8 input and
output) calibrated on a representative image directory preprocessed with the same spec
as the accuracy runs, so calibration sees exactly what the device will be fed.
TensorFlow is imported only here (the `quantize` extra).
"""

from __future__ import annotations

import os
import tempfile
from pathlib import Path
from typing import Optional

import numpy as np

from agent.formats.dataset import scan
from agent.formats.preprocess import InputTensor, PreprocessError, preprocess_image
from agent.wire.records import PreprocessSpec

VARIANTS = ("fp32", "fp16", "dynamic", "int8")
CALIBRATION_IMAGES = 200


class QuantizeError(ValueError):
    """The model, the representative data or TensorFlow itself is not usable."""


def _tensorflow():
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
    try:
        import tensorflow as tf
    except ImportError:
        raise QuantizeError("TensorFlow is not installed (pip install 'edgebench[quantize]')") from None
    return tf


def representative_tensors(directory: Path, spec: PreprocessSpec, shape: tuple[int, ...],
                           limit: int = CALIBRATION_IMAGES) -> list[np.ndarray]:
    """Float32 input tensors for calibration, preprocessed exactly as on the device."""
    if len(shape) != 4:
        raise QuantizeError(f"model input shape {list(shape)} is not an image batch [1, H, W, C]")
    target = InputTensor(int(shape[1]), int(shape[2]), int(shape[3]), np.dtype(np.float32))
    if directory.is_dir() and any(p.is_dir() for p in directory.iterdir()):
        _, files = scan(directory)
    else:
        files = sorted(p for p in directory.iterdir() if p.is_file())
    tensors = []
    for path in files[:limit]:
        try:
            tensors.append(preprocess_image(path.read_bytes(), spec, target))
        except PreprocessError:
            continue
    if not tensors:
        raise QuantizeError(f"{directory}: no image could be preprocessed for calibration")
    return tensors


def quantize(model: Path, representative: Path, spec: PreprocessSpec, out: Path,
             name: Optional[str] = None) -> dict[str, Path]:
    """Write `NAME_{fp32,fp16,dynamic,int8}.tflite` into `out`; returns them by variant."""
    tf = _tensorflow()
    name = name or model.stem
    out.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory() as workdir:
        saved = _saved_model(tf, model, Path(workdir))
        shape = _input_shape(tf, saved)
        calibration = representative_tensors(representative, spec, shape)

        def converter():
            return tf.lite.TFLiteConverter.from_saved_model(str(saved))

        results = {}
        for variant in VARIANTS:
            conv = converter()
            if variant != "fp32":
                conv.optimizations = [tf.lite.Optimize.DEFAULT]
            if variant == "fp16":
                conv.target_spec.supported_types = [tf.float16]
            if variant == "int8":
                conv.representative_dataset = lambda: ([t] for t in calibration)
                conv.target_spec.supported_ops = [tf.lite.OpsSet.TFLITE_BUILTINS_INT8]
                conv.inference_input_type = tf.int8
                conv.inference_output_type = tf.int8
            try:
                flatbuffer = conv.convert()
            except Exception as exc:  # noqa: BLE001 - the converter raises many unrelated types
                raise QuantizeError(f"{variant} conversion failed: {str(exc).splitlines()[0]}") from None
            path = out / f"{name}_{variant}.tflite"
            path.write_bytes(flatbuffer)
            results[variant] = path
    return results


def _saved_model(tf, model: Path, workdir: Path) -> Path:
    """A SavedModel directory for the converter: as given, or exported from Keras."""
    if model.is_dir() and (model / "saved_model.pb").exists():
        return model
    if model.suffix in (".keras", ".h5"):
        try:
            keras_model = tf.keras.models.load_model(model, compile=False)
        except Exception as exc:  # noqa: BLE001 - Keras raises many types for unreadable files
            raise QuantizeError(f"{model}: cannot load Keras model: {str(exc).splitlines()[0]}") from None
        path = workdir / "saved_model"
        keras_model.export(str(path), verbose=False)
        return path
    raise QuantizeError(f"{model}: expected a SavedModel directory or a .keras / .h5 file")


def _input_shape(tf, saved: Path) -> tuple[int, ...]:
    signature = tf.saved_model.load(str(saved)).signatures["serving_default"]
    (spec,) = signature.structured_input_signature[1].values()
    return tuple(1 if d is None else int(d) for d in spec.shape)
