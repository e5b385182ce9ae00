"""Regenerate the example models in examples/models/.

Needs TensorFlow and scikit-learn, which edgebench itself never imports:

    python -m venv /tmp/tf && /tmp/tf/bin/pip install tensorflow-cpu scikit-learn
    /tmp/tf/bin/python examples/make_models.py

What it writes (seeded, so a rerun gives equivalent models):

- digits_cnn_{fp32,fp16,dynamic,int8}.tflite: a small CNN trained on scikit-learn's
  bundled 8x8 handwritten digits, in the four variants engineers choose between:
  float32; float16 weights; dynamic-range int8 weights with float activations; and full
  integer int8 (int8 input and output, calibrated on training images).
  Input: [1, 8, 8, 1] grayscale, pixel values 0-255 scaled to [0, 1] (scale = 1/255);
  the int8 model takes the same values quantized with its input scale and zero point.
  Output: [1, 10] class probabilities (softmax), class i = digit i.
- mobilenet_v2_035_96_fp32.tflite: a MobileNetV2 (width 0.35) on 96x96 RGB inputs,
  briefly trained on the digits upscaled to 96x96 so that latencies are in milliseconds.
  Input: [1, 96, 96, 3] float32, pixels scaled to [0, 1]. Output: [1, 10].
- planted/{base,slower_5,slower_10,slower_20,slower_200}/conv_stack.tflite (`--planted` writes only
  these): one network under one file name, a stack of 3x3 convolutions; each slower copy
  adds convolutions worth about 5 %, 10 %, 20 % and 200 % of the base's work. Models whose
  candidate is genuinely slower by a known amount, for the regression power study
  (bench/false_alarms.py) and the nightly tests. Untrained: only their speed matters.
"""

from __future__ import annotations

import argparse
import os
import tempfile
import warnings
from pathlib import Path

import numpy as np

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
import tensorflow as tf
from make_dataset import SEED, digits

OUT = Path(__file__).resolve().parent / "models"
PLANTED_BLOCKS = 20
PLANTED = {"base": 0, "slower_5": 1, "slower_10": 2, "slower_20": 4, "slower_200": 40}  # extra blocks of 20


def small_cnn() -> tf.keras.Model:
    return tf.keras.Sequential([
        tf.keras.layers.Input((8, 8, 1)),
        tf.keras.layers.Conv2D(16, 3, padding="same", activation="relu"),
        tf.keras.layers.Conv2D(32, 3, padding="same", activation="relu"),
        tf.keras.layers.MaxPooling2D(),
        tf.keras.layers.Flatten(),
        tf.keras.layers.Dense(64, activation="relu"),
        tf.keras.layers.Dense(10, activation="softmax"),
    ])


def converter_for(model: tf.keras.Model, workdir: str) -> tf.lite.TFLiteConverter:
    path = os.path.join(workdir, model.name)
    model.export(path, verbose=False)
    return tf.lite.TFLiteConverter.from_saved_model(path)


def variants(model: tf.keras.Model, calibration: np.ndarray) -> dict:
    """The model in the four variants, as flatbuffer bytes keyed by variant."""
    out = {}
    with tempfile.TemporaryDirectory() as workdir:
        out["fp32"] = converter_for(model, workdir).convert()

        conv = converter_for(model, workdir)
        conv.optimizations = [tf.lite.Optimize.DEFAULT]
        conv.target_spec.supported_types = [tf.float16]
        out["fp16"] = conv.convert()

        conv = converter_for(model, workdir)
        conv.optimizations = [tf.lite.Optimize.DEFAULT]
        out["dynamic"] = conv.convert()

        conv = converter_for(model, workdir)
        conv.optimizations = [tf.lite.Optimize.DEFAULT]
        conv.representative_dataset = lambda: ([x[None]] for x in calibration[:200])
        conv.target_spec.supported_ops = [tf.lite.OpsSet.TFLITE_BUILTINS_INT8]
        conv.inference_input_type = tf.int8
        conv.inference_output_type = tf.int8
        out["int8"] = conv.convert()
    return out


def tflite_accuracy(flatbuffer: bytes, images: np.ndarray, labels: np.ndarray) -> float:
    interpreter = tf.lite.Interpreter(model_content=flatbuffer)
    interpreter.allocate_tensors()
    inp, outp = interpreter.get_input_details()[0], interpreter.get_output_details()[0]
    correct = 0
    for image, label in zip(images, labels):
        x = image[None]
        if inp["dtype"] != np.float32:
            scale, zero = inp["quantization"]
            x = np.clip(np.round(x / scale + zero), -128, 127).astype(inp["dtype"])
        interpreter.set_tensor(inp["index"], x)
        interpreter.invoke()
        correct += int(np.argmax(interpreter.get_tensor(outp["index"])[0]) == label)
    return correct / len(labels)


def conv_stack(blocks: int) -> tf.keras.Model:
    """`blocks` identical 3x3 convolutions on a 32x32x16 tensor: work grows by one block each."""
    layers = [tf.keras.layers.Input((32, 32, 16))]
    layers += [tf.keras.layers.Conv2D(16, 3, padding="same", activation="relu") for _ in range(blocks)]
    layers += [tf.keras.layers.GlobalAveragePooling2D(), tf.keras.layers.Dense(10)]
    return tf.keras.Sequential(layers, name=f"conv_stack_{blocks}")


def planted() -> None:
    """The conv_stack pair family: same name, each copy slower than the base by a known share."""
    for folder, extra in PLANTED.items():
        tf.keras.utils.set_random_seed(SEED)
        model = conv_stack(PLANTED_BLOCKS + extra)
        with tempfile.TemporaryDirectory() as workdir:
            flatbuffer = converter_for(model, workdir).convert()
        path = OUT / "planted" / folder / "conv_stack.tflite"
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(flatbuffer)
        print(f"{path.relative_to(OUT)}: {PLANTED_BLOCKS + extra} blocks, {len(flatbuffer)} bytes")


def main() -> None:
    parser = argparse.ArgumentParser(description="regenerate the example models")
    parser.add_argument("--planted", action="store_true", help="write only the planted-regression models")
    warnings.filterwarnings("ignore")
    if parser.parse_args().planted:
        planted()
        return
    tf.keras.utils.set_random_seed(SEED)
    OUT.mkdir(parents=True, exist_ok=True)
    x_train, x_test, y_train, y_test = digits()

    cnn = small_cnn()
    cnn.compile("adam", "sparse_categorical_crossentropy", metrics=["accuracy"])
    cnn.fit(x_train, y_train, epochs=30, batch_size=32, verbose=0)
    for variant, flatbuffer in variants(cnn, x_train).items():
        path = OUT / f"digits_cnn_{variant}.tflite"
        path.write_bytes(flatbuffer)
        print(f"{path.name}: {len(flatbuffer)} bytes, "
              f"test accuracy {tflite_accuracy(flatbuffer, x_test, y_test):.3f}")

    rgb = lambda x: tf.image.resize(tf.repeat(x, 3, axis=-1), (96, 96)).numpy()  # noqa: E731
    mobilenet = tf.keras.applications.MobileNetV2(
        input_shape=(96, 96, 3), alpha=0.35, weights=None, classes=10)
    # Batch-norm statistics must settle within a short training run.
    for layer in mobilenet.layers:
        if isinstance(layer, tf.keras.layers.BatchNormalization):
            layer.momentum = 0.9
    mobilenet.compile("adam", "sparse_categorical_crossentropy", metrics=["accuracy"])
    mobilenet.fit(rgb(x_train), y_train, epochs=8, batch_size=32, verbose=0)
    with tempfile.TemporaryDirectory() as workdir:
        flatbuffer = converter_for(mobilenet, workdir).convert()
    path = OUT / "mobilenet_v2_035_96_fp32.tflite"
    path.write_bytes(flatbuffer)
    print(f"{path.name}: {len(flatbuffer)} bytes, "
          f"test accuracy {tflite_accuracy(flatbuffer, rgb(x_test), y_test):.3f}")
    planted()


if __name__ == "__main__":
    main()
