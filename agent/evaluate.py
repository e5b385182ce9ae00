"""Accuracy and reference outputs: a cell's model run over fixed inputs after timing.

With a dataset, every image is preprocessed on the device and classified (top-1 and
top-5 accuracy); the outputs go back so the controller can compare variants on the same
images, and the tensors of a few chosen images are summarised for the parity check.
Without a dataset, the outputs on a few seeded random inputs serve the comparison;
every variant gets the same values (drawn as floats in [0, 1), then quantized with each
model's own input parameters).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Optional

import numpy as np

from agent.formats.dataset import Bundle, DatasetError
from agent.formats.preprocess import InputTensor, PreprocessError, dequantize, preprocess_image, quantize, summarize
from agent.inputs import random_tensor
from agent.wire.protocol import CellSpec, Evaluation
from agent.wire.records import Accuracy

RANDOM_SAMPLES = 16


@dataclass
class Outcome:
    """What evaluating a cell produced, and what went wrong without failing the cell."""

    evaluation: Optional[Evaluation] = None
    accuracy: Optional[Accuracy] = None
    warnings: list[str] = field(default_factory=list)


def evaluate(interpreter, spec: CellSpec, dataset_path: Optional[str]) -> Outcome:
    """Run the model over the cell's evaluation inputs; problems become warnings."""
    try:
        if spec.dataset_sha256 and spec.preprocess is not None:
            return _on_dataset(interpreter, spec, dataset_path or "")
        return Outcome(evaluation=_on_random(interpreter, spec.seed))
    except (DatasetError, PreprocessError) as exc:
        return Outcome(warnings=[f"accuracy not measured: {exc}"])


def _output(interpreter) -> np.ndarray:
    detail = interpreter.get_output_details()[0]
    scale, zero_point = detail.get("quantization", (0.0, 0))
    return dequantize(interpreter.get_tensor(detail["index"]), scale, zero_point).ravel()


def _on_random(interpreter, seed: int) -> Evaluation:
    details = interpreter.get_input_details()
    rng = np.random.default_rng(seed)
    rows = []
    for _ in range(RANDOM_SAMPLES):
        for detail in details:
            dtype = np.dtype(detail["dtype"])
            scale, zero_point = detail.get("quantization", (0.0, 0))
            if np.issubdtype(dtype, np.floating) or scale:
                values = rng.uniform(0.0, 1.0, size=tuple(detail["shape"])).astype(np.float32)
                target = InputTensor(1, 1, 1, dtype, float(scale), int(zero_point))
                interpreter.set_tensor(detail["index"], quantize(values, target))
            else:
                interpreter.set_tensor(detail["index"], random_tensor(rng, dtype, detail["shape"]))
        interpreter.invoke()
        rows.append(_output(interpreter))
    return _evaluation(f"random:{seed}:{RANDOM_SAMPLES}", rows, [])


def _on_dataset(interpreter, spec: CellSpec, dataset_path: str) -> Outcome:
    details = interpreter.get_input_details()
    if len(details) != 1:
        raise PreprocessError(f"the model has {len(details)} inputs; a dataset feeds models with one image input")
    target = InputTensor.from_details(details[0])
    parity = set(spec.parity_samples)
    rows, labels, summaries, failures = [], [], [], []
    with Bundle(dataset_path) as bundle:
        classes = len(bundle.index.classes)
        for index, sample, data in bundle.images():
            try:
                tensor = preprocess_image(data, spec.preprocess, target)
            except PreprocessError as exc:
                failures.append(f"{sample.member}: {exc}")
                continue
            if index in parity:
                summaries.append(summarize(index, tensor))
            interpreter.set_tensor(details[0]["index"], tensor)
            interpreter.invoke()
            rows.append(_output(interpreter))
            labels.append(sample.label)
    outcome = Outcome(evaluation=_evaluation(f"dataset:{spec.dataset_sha256}", rows, summaries))
    if failures:
        outcome.warnings.append(f"{len(failures)} image(s) could not be used (first: {failures[0]})")
    if not rows:
        return outcome
    if len(rows[0]) != classes:
        outcome.warnings.append(
            f"accuracy not measured: the model outputs {len(rows[0])} values but the dataset has {classes} classes")
        return outcome
    outcome.accuracy = top_k_accuracy(np.stack(rows), np.asarray(labels), len(failures))
    return outcome


def top_k_accuracy(scores: np.ndarray, labels: np.ndarray, skipped: int = 0) -> Accuracy:
    """Top-1 and top-5 accuracy of score rows against integer labels."""
    k = min(5, scores.shape[1])
    top = np.argsort(-scores, axis=1, kind="stable")[:, :k]
    return Accuracy(samples=len(labels), top1=float(np.mean(top[:, 0] == labels)),
                    top5=float(np.mean((top == labels[:, None]).any(axis=1))), skipped=skipped)


def _evaluation(inputs: str, rows: list[np.ndarray], summaries: list) -> Evaluation:
    matrix = np.stack(rows).astype("<f4") if rows else np.zeros((0, 0), "<f4")
    return Evaluation(inputs=inputs, outputs=matrix.tobytes(), samples=matrix.shape[0],
                      values=matrix.shape[1], tensors=summaries)
