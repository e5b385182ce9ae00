"""LiteRT's own GPU accelerator (the CompiledModel API), as the `litert-gpu` delegate.

`CompiledModelRunner` offers the small interpreter surface the measurement engine uses
(input/output details, set_tensor, invoke, get_tensor), so GPU cells are timed by the
same loop as CPU ones. On a GPU, `run` returns before the work is done; `invoke` here
therefore ends only when every output has been read back, so a figure is the time to a
readable result, not the time to enqueue.
"""

from __future__ import annotations

import os
import sys
import tempfile
from typing import Optional

import numpy as np

from agent.formats.modelfile import read_model_file

PRECISIONS = ("fp16", "fp32")


class GpuUnavailable(RuntimeError):
    """No GPU adapter, or the accelerator refused the model."""


class CompiledModelRunner:
    """A CompiledModel on the GPU, driven like an interpreter."""

    def __init__(self, model_path: str, precision: str = "fp16"):
        from ai_edge_litert.compiled_model import CompiledModel
        from ai_edge_litert.gpu_options import GpuOptions
        from ai_edge_litert.hardware_accelerator import HardwareAccelerator
        from ai_edge_litert.options import Options

        if precision not in PRECISIONS:
            raise GpuUnavailable(f"precision {precision!r}: expected one of {', '.join(PRECISIONS)}")
        options = Options(hardware_accelerators=HardwareAccelerator.GPU,
                          gpu_options=GpuOptions(enforce_f32=precision == "fp32"))
        with _NativeLog() as native:
            try:
                self._model = CompiledModel.from_file(model_path, options=options)
            except RuntimeError as exc:
                failure = exc
            else:
                failure = None
        if failure is not None:
            reason = native.reason() or str(failure).splitlines()[0]
            raise GpuUnavailable(f"LiteRT GPU accelerator unavailable: {reason}")
        self.operator_count = read_model_file(model_path).operator_count
        signature = next(iter(self._model.get_signature_list()))
        self._inputs = _details(self._model.get_input_tensor_details(signature))
        self._outputs = _details(self._model.get_output_tensor_details(signature))
        self._in_buffers = self._model.create_input_buffers(0)
        self._out_buffers = self._model.create_output_buffers(0)
        self._results: list[Optional[np.ndarray]] = [None] * len(self._outputs)

    def fully_accelerated(self) -> bool:
        """True when the accelerator took the whole graph."""
        return bool(self._model.is_fully_accelerated())

    def allocate_tensors(self) -> None:
        """Buffers are created with the model; nothing left to allocate."""

    def get_input_details(self) -> list[dict]:
        """Input tensors in the Interpreter's `get_input_details` shape."""
        return self._inputs

    def get_output_details(self) -> list[dict]:
        """Output tensors in the Interpreter's `get_output_details` shape."""
        return self._outputs

    def set_tensor(self, index: int, value: np.ndarray) -> None:
        """Copy `value` into input buffer `index`."""
        self._in_buffers[_position(self._inputs, index)].write(np.ascontiguousarray(value))

    def invoke(self) -> None:
        """Run the model on the accelerator (returns before the GPU has finished)."""
        self._model.run_by_index(0, self._in_buffers, self._out_buffers)
        for i, (detail, buffer) in enumerate(zip(self._outputs, self._out_buffers)):
            self._results[i] = buffer.read(int(np.prod(detail["shape"])), detail["dtype"])

    def get_tensor(self, index: int) -> np.ndarray:
        """Output `index`, read back from the GPU (waits for the work to finish)."""
        position = _position(self._outputs, index)
        result = self._results[position]
        if result is None:
            raise RuntimeError("output read before the first invoke")
        return result.reshape(self._outputs[position]["shape"])


def _details(by_name: dict) -> list[dict]:
    """Interpreter-style details, in the model's tensor order."""
    return [{"name": d["name"], "index": int(d["index"]), "dtype": np.dtype(d["dtype"]).type,
             "shape": np.array(d["shape"], dtype=np.int32), "quantization": (0.0, 0)}
            for d in by_name.values()]


def _position(details: list[dict], index: int) -> int:
    for position, detail in enumerate(details):
        if detail["index"] == index:
            return position
    raise ValueError(f"no tensor with index {index}")


class _NativeLog:
    """Captures what native code writes to stderr while active, and passes it on.

    LiteRT's exception for a missing GPU says only where it failed; the reason ("No
    adapters found") goes to the native log. The cell runs in its own process, so
    redirecting file descriptor 2 for a moment disturbs nothing else.
    """

    def __enter__(self) -> _NativeLog:
        sys.stderr.flush()
        self._saved = os.dup(2)
        self._file = tempfile.TemporaryFile()
        os.dup2(self._file.fileno(), 2)
        return self

    def __exit__(self, *exc) -> None:
        os.dup2(self._saved, 2)
        os.close(self._saved)
        self._file.seek(0)
        self.text = self._file.read().decode("utf-8", "replace")
        self._file.close()
        sys.stderr.write(self.text)

    def reason(self) -> Optional[str]:
        """The most telling line of the captured log (vendor plugin noise left out)."""
        lines = [line.strip() for line in self.text.splitlines()
                 if ("rror" in line or "delegate" in line)
                 and not any(noise in line for noise in _NOISE)]
        for line in lines:
            if "No adapters found" in line:
                return "no GPU adapter found (no Vulkan/OpenCL driver for a GPU)"
        for line in lines:
            if "dynamic-sized" in line:
                return ("the GPU takes only static tensor shapes and this model has a dynamic one "
                        "(e.g. a batch dimension of -1)")
        return lines[-1] if lines else None


# Native log lines about optional vendor plugins that are not there: never the reason.
_NOISE = ("plugin", "shared library", "NPU", "libOpenCL")
