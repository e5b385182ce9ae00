"""Accuracy, output differences and preprocessing parity for one run.

Before the run it decides, per model, what the agent evaluates after timing (a dataset
with the preprocessing spec, or seeded random inputs); while cells arrive it compares
each cell's outputs with its family reference's outputs on the same inputs
(`output_diff`) and the device's input tensors with the host's (`preprocess_parity`).
"""

from __future__ import annotations

import hashlib
import os
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import Optional

import msgspec
import numpy as np

from agent.formats.dataset import Bundle, DatasetIndex, scan, write_bundle
from agent.formats.preprocess import (
    InputTensor,
    PreprocessError,
    check_fit,
    parity_tolerance,
    preprocess_image,
    summarize,
    summary_difference,
)
from agent.wire.delegates import CPU_DELEGATES
from agent.wire.protocol import CellSpec, Evaluation
from agent.wire.records import Cell, OutputDiff, PreprocessParity, PreprocessSpec, TensorSummary
from controller.families import Family
from controller.models import ModelSource

PARITY_SAMPLES = 8
PARITY_TOLERANCE = 0.01


@dataclass(frozen=True)
class PreparedDataset:
    """A dataset bundled for transfer: the file, its sha256 and its index."""

    path: Path
    sha256: str
    size: int
    index: DatasetIndex
    name: str


def prepare_dataset(directory: Path, cache_dir: Path) -> PreparedDataset:
    """Bundle a class-per-directory dataset into `cache_dir` (reused while unchanged)."""
    index, files = scan(directory)
    cache_dir.mkdir(parents=True, exist_ok=True)
    fd, temp = tempfile.mkstemp(dir=cache_dir, suffix=".part")
    os.close(fd)
    try:
        write_bundle(index, files, Path(temp))
        digest = hashlib.sha256(Path(temp).read_bytes()).hexdigest()
        path = cache_dir / f"{digest}.dataset"
        os.replace(temp, path)
    finally:
        Path(temp).unlink(missing_ok=True)
    return PreparedDataset(path=path, sha256=digest, size=path.stat().st_size, index=index,
                           name=directory.name)


def parity_sample(count: int, wanted: int = PARITY_SAMPLES) -> list[int]:
    """Evenly spread sample indices for the parity check."""
    if count <= wanted:
        return list(range(count))
    return sorted({round(i * (count - 1) / (wanted - 1)) for i in range(wanted)})


def dataset_problem(source: ModelSource, spec: PreprocessSpec, classes: int) -> Optional[str]:
    """Why this model cannot be evaluated on the dataset, or None."""
    if len(source.info.inputs) != 1:
        return f"{source.name}: has {len(source.info.inputs)} inputs; a dataset feeds one image input"
    try:
        check_fit(spec, InputTensor.from_info(source.info.inputs[0]))
    except PreprocessError as exc:
        return f"{source.name}: {exc}"
    outputs = source.info.outputs[0].shape if source.info.outputs else ()
    values = int(np.prod(outputs)) if outputs else 0
    if values != classes:
        return f"{source.name}: outputs {values} values but the dataset has {classes} classes"
    return None


def output_diff(reference: str, ref: Evaluation, other: Evaluation) -> Optional[OutputDiff]:
    """Mean and max absolute difference and top-1 agreement, on the same inputs."""
    if ref.inputs != other.inputs or (ref.samples, ref.values) != (other.samples, other.values):
        return None
    if not ref.samples:
        return None
    a = _matrix(ref)
    b = _matrix(other)
    diff = np.abs(a.astype(np.float64) - b)
    return OutputDiff(reference=reference, mean_abs=float(diff.mean()), max_abs=float(diff.max()),
                      top1_agreement=float(np.mean(a.argmax(axis=1) == b.argmax(axis=1))))


def _matrix(evaluation: Evaluation) -> np.ndarray:
    return np.frombuffer(evaluation.outputs, "<f4").reshape(evaluation.samples, evaluation.values)


def parity(host: list[TensorSummary], device: list[TensorSummary],
           fraction: float = PARITY_TOLERANCE) -> Optional[PreprocessParity]:
    """Compare the host's and the device's tensors for the same samples."""
    by_sample = {s.sample: s for s in host}
    pairs = [(by_sample[d.sample], d) for d in device if d.sample in by_sample]
    if not pairs:
        return None
    tolerance = parity_tolerance(host, fraction)
    worst = max(summary_difference(h, d) for h, d in pairs)
    return PreprocessParity(samples=len(pairs), identical=sum(h.sha256 == d.sha256 for h, d in pairs),
                            max_abs_diff=worst, tolerance=tolerance, ok=worst <= tolerance)


def host_summaries(dataset: PreparedDataset, spec: PreprocessSpec, source: ModelSource,
                   samples: list[int]) -> list[TensorSummary]:
    """The host's own summaries of the parity samples, preprocessed for this model."""
    target = InputTensor.from_info(source.info.inputs[0])
    summaries = []
    with Bundle(str(dataset.path)) as bundle:
        for index, _, data in bundle.images(samples):
            try:
                summaries.append(summarize(index, preprocess_image(data, spec, target)))
            except PreprocessError:
                continue  # the device reports the same image as unusable
    return summaries


class RunEvaluation:
    """Evaluation state of one run: per-model settings, reference outputs, warnings."""

    def __init__(self, sources: list[ModelSource], families: list[Family],
                 dataset: Optional[PreparedDataset], spec: Optional[PreprocessSpec],
                 parity_fraction: float = PARITY_TOLERANCE, accelerators: bool = False):
        self.dataset, self.spec, self.parity_fraction = dataset, spec, parity_fraction
        # With accelerator delegates in the run, every model's CPU outputs are the
        # reference its accelerated outputs are compared with.
        self.accelerators = accelerators
        self.problems: list[str] = []
        self._reference_of = {m.sha256: f.reference for f in families if f.reference for m in f.members}
        self._on_dataset: set[str] = set()
        self._parity = parity_sample(len(dataset.index.samples)) if dataset else []
        self._host: dict[str, list[TensorSummary]] = {}
        self._outputs: dict[tuple, Evaluation] = {}
        for source in sources:
            if dataset is None or spec is None:
                continue
            problem = dataset_problem(source, spec, len(dataset.index.classes))
            if problem:
                self.problems.append(f"accuracy not measured for {problem}")
            else:
                self._on_dataset.add(source.sha256)

    def references_first(self, sources: list[ModelSource]) -> list[ModelSource]:
        """Run order with every family reference before the models compared with it."""
        refs = {r.sha256 for r in self._reference_of.values() if r}
        return [s for s in sources if s.sha256 in refs] + [s for s in sources if s.sha256 not in refs]

    def cell_spec(self, spec: CellSpec, source: ModelSource) -> CellSpec:
        """`spec` with this model's evaluation: outputs wanted, and the dataset to use."""
        on_dataset = source.sha256 in self._on_dataset
        wanted = on_dataset or source.sha256 in self._reference_of or self.accelerators
        return msgspec.structs.replace(
            spec, evaluate=wanted, dataset_sha256=self.dataset.sha256 if on_dataset else None,
            preprocess=self.spec if on_dataset else None, parity_samples=self._parity if on_dataset else [])

    def complete(self, source: ModelSource, cell: Cell,
                 evaluation: Optional[Evaluation]) -> tuple[Cell, list[str]]:
        """The cell with `output_diff` and `preprocess_parity` filled where possible."""
        if evaluation is None:
            return cell, []
        lines: list[str] = []
        key = (cell.device, source.sha256, cell.delegate, cell.threads, cell.round)
        self._outputs[key] = evaluation
        reference = self._reference_of.get(source.sha256)
        diff = None
        if cell.delegate not in CPU_DELEGATES:
            cpu = self._cpu_outputs(cell, source.sha256)
            diff = output_diff(f"{source.name} on {cpu[0]}", cpu[1], evaluation) if cpu else None
        elif reference is not None and reference.sha256 != source.sha256:
            ref_eval = self._reference_outputs(cell, reference.sha256)
            diff = output_diff(reference.name, ref_eval, evaluation) if ref_eval else None
        check = None
        if evaluation.tensors and self.dataset and self.spec:
            host = self._host_for(source)
            check = parity(host, evaluation.tensors, self.parity_fraction)
            if check is not None and not check.ok:
                lines.append(
                    f"PREPROCESSING MISMATCH between this host and device {cell.device} for "
                    f"{source.name}: largest difference {check.max_abs_diff:.4g} exceeds "
                    f"{check.tolerance:.4g} ({check.samples - check.identical} of {check.samples} "
                    "sample tensors differ); accuracy measured on the device may not match training")
        return msgspec.structs.replace(cell, output_diff=diff, preprocess_parity=check), lines

    def _reference_outputs(self, cell: Cell, sha256: str) -> Optional[Evaluation]:
        """The reference's outputs on this device: same setting and round if measured."""
        exact = self._outputs.get((cell.device, sha256, cell.delegate, cell.threads, cell.round))
        if exact is not None:
            return exact
        same_device = [e for k, e in self._outputs.items() if k[0] == cell.device and k[1] == sha256]
        return same_device[0] if same_device else None

    def _cpu_outputs(self, cell: Cell, sha256: str) -> Optional[tuple[str, Evaluation]]:
        """The same model's outputs on a CPU delegate (plain kernels preferred) on this device."""
        for delegate in CPU_DELEGATES:
            for key, evaluation in self._outputs.items():
                if key[:3] == (cell.device, sha256, delegate):
                    return delegate, evaluation
        return None

    def _host_for(self, source: ModelSource) -> list[TensorSummary]:
        if source.sha256 not in self._host:
            self._host[source.sha256] = host_summaries(self.dataset, self.spec, source, self._parity)
        return self._host[source.sha256]
