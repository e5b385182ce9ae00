"""Read a .tflite flatbuffer without an interpreter: validate it and classify its variant.

Only the few schema fields edgebench needs are read (tensors, their types, buffers and
quantization; operators and their codes). Every offset is bounds-checked, so a truncated
or corrupt file raises `ModelFormatError` with one clear line instead of crashing.
"""

from __future__ import annotations

import struct
from dataclasses import dataclass
from typing import Optional

IDENTIFIER = b"TFL3"

# TensorType values from the TFLite schema.
TENSOR_TYPES = {
    0: "float32", 1: "float16", 2: "int32", 3: "uint8", 4: "int64", 5: "string",
    6: "bool", 7: "int16", 8: "complex64", 9: "int8", 10: "float64", 11: "complex128",
    12: "uint64", 13: "resource", 14: "variant", 15: "uint32", 16: "uint16", 17: "int4",
    18: "bfloat16",
}
_QUANTIZED = {"int8", "uint8", "int16", "int4"}
_FLOATS = {"float32", "float16", "bfloat16"}

_CUSTOM = 32  # BuiltinOperator.CUSTOM


class ModelFormatError(ValueError):
    """The file is not a readable TFLite model."""


@dataclass(frozen=True)
class TensorInfo:
    """One input or output tensor as the model file declares it."""

    name: str
    dtype: str
    shape: tuple[int, ...]
    constant: bool
    quantized: bool
    # First (per-tensor) quantization parameters; 0 when not quantized.
    scale: float = 0.0
    zero_point: int = 0


@dataclass(frozen=True)
class ModelInfo:
    """What a model file holds, as far as benchmarking needs to know."""

    inputs: tuple[TensorInfo, ...]
    outputs: tuple[TensorInfo, ...]
    tensors: tuple[TensorInfo, ...]
    operator_count: int
    custom_ops: tuple[str, ...]
    variant: Optional[str]


class _Reader:
    """Bounds-checked access to flatbuffer tables, vectors and strings."""

    def __init__(self, data: bytes):
        self.data = data

    def _unpack(self, fmt: str, pos: int):
        size = struct.calcsize(fmt)
        if pos < 0 or pos + size > len(self.data):
            raise ModelFormatError(f"truncated or corrupt flatbuffer (offset {pos} out of range)")
        return struct.unpack_from(fmt, self.data, pos)[0]

    def root(self) -> int:
        return self._unpack("<I", 0)

    def field(self, table: int, index: int) -> Optional[int]:
        """Absolute position of field `index` of `table`, or None when absent."""
        vtable = table - self._unpack("<i", table)
        vtable_size = self._unpack("<H", vtable)
        slot = 4 + 2 * index
        if slot + 2 > vtable_size:
            return None
        offset = self._unpack("<H", vtable + slot)
        return table + offset if offset else None

    def scalar(self, table: int, index: int, fmt: str, default=0):
        pos = self.field(table, index)
        return default if pos is None else self._unpack(fmt, pos)

    def indirect(self, table: int, index: int) -> Optional[int]:
        pos = self.field(table, index)
        return None if pos is None else pos + self._unpack("<I", pos)

    def vector(self, table: int, index: int) -> tuple[int, int]:
        """(start, length) of a vector field; (0, 0) when absent."""
        pos = self.indirect(table, index)
        if pos is None:
            return 0, 0
        length = self._unpack("<I", pos)
        if length > len(self.data):
            raise ModelFormatError("truncated or corrupt flatbuffer (vector out of range)")
        return pos + 4, length

    def tables(self, table: int, index: int) -> list[int]:
        start, length = self.vector(table, index)
        return [start + 4 * i + self._unpack("<I", start + 4 * i) for i in range(length)]

    def ints(self, table: int, index: int, fmt: str = "<i") -> list[int]:
        start, length = self.vector(table, index)
        size = struct.calcsize(fmt)
        return [self._unpack(fmt, start + size * i) for i in range(length)]

    def string(self, table: int, index: int) -> str:
        pos = self.indirect(table, index)
        if pos is None:
            return ""
        length = self._unpack("<I", pos)
        raw = self.data[pos + 4: pos + 4 + length]
        if len(raw) != length:
            raise ModelFormatError("truncated or corrupt flatbuffer (string out of range)")
        return raw.decode("utf-8", "replace")


def check_identifier(head: bytes) -> None:
    """Raise unless `head` (the first 8+ bytes of a file) starts a TFLite flatbuffer."""
    if len(head) < 8 or head[4:8] != IDENTIFIER:
        raise ModelFormatError("not a TFLite flatbuffer (file identifier TFL3 missing)")


def read_model(data: bytes) -> ModelInfo:
    """Parse the model bytes; raise ModelFormatError on anything unreadable."""
    check_identifier(data)
    reader = _Reader(data)
    model = reader.root()
    buffers = [_buffer_has_data(reader, b) for b in reader.tables(model, 4)]
    subgraphs = reader.tables(model, 2)
    if not subgraphs:
        raise ModelFormatError("model has no subgraphs")
    opcodes = reader.tables(model, 1)
    custom_ops = tuple(sorted({
        reader.string(code, 1) for code in opcodes if _builtin_code(reader, code) == _CUSTOM
    }))

    main = subgraphs[0]
    tensors = tuple(_tensor(reader, t, buffers) for t in reader.tables(main, 0))

    def pick(indices: list[int]) -> tuple[TensorInfo, ...]:
        if any(i < 0 or i >= len(tensors) for i in indices):
            raise ModelFormatError("corrupt flatbuffer (tensor index out of range)")
        return tuple(tensors[i] for i in indices)

    operator_count = sum(len(reader.tables(sg, 3)) for sg in subgraphs)
    return ModelInfo(
        inputs=pick(reader.ints(main, 1)),
        outputs=pick(reader.ints(main, 2)),
        tensors=tensors,
        operator_count=operator_count,
        custom_ops=custom_ops,
        variant=classify(tensors),
    )


def read_model_file(path) -> ModelInfo:
    """Read and parse a model file; raise ModelFormatError or OSError."""
    with open(path, "rb") as f:
        return read_model(f.read())


def classify(tensors: tuple[TensorInfo, ...]) -> Optional[str]:
    """fp32 / fp16 / dynamic / int8 from tensor types, or None when it is none of them.

    Full integer models compute on quantized activations (even when their interface is
    float); dynamic-range models keep float activations with int8 weights; fp16 models
    store float16 weights that are dequantized at load.
    """
    activations = [t for t in tensors if not t.constant]
    quantized_act = sum(1 for t in activations if t.dtype in _QUANTIZED and t.quantized)
    float_act = sum(1 for t in activations if t.dtype in _FLOATS)
    weights = {t.dtype for t in tensors if t.constant}
    if quantized_act and quantized_act >= float_act:
        return "int8"
    if weights & {"int8", "int4"}:
        return "dynamic"
    if "float16" in weights:
        return "fp16"
    if float_act:
        return "fp32"
    return None


def _builtin_code(reader: _Reader, opcode: int) -> int:
    # Newer files carry the full code in field 3; older ones only the deprecated byte.
    deprecated = reader.scalar(opcode, 0, "<b")
    return max(deprecated, reader.scalar(opcode, 3, "<i"))


def _buffer_has_data(reader: _Reader, buffer: int) -> bool:
    _, length = reader.vector(buffer, 0)
    external_size = reader.scalar(buffer, 2, "<Q")
    return length > 0 or external_size > 0


def _tensor(reader: _Reader, table: int, buffers: list[bool]) -> TensorInfo:
    type_code = reader.scalar(table, 1, "<b")
    buffer = reader.scalar(table, 2, "<I")
    quant = reader.indirect(table, 4)
    scales = reader.ints(quant, 2, "<f") if quant is not None else []
    zero_points = reader.ints(quant, 3, "<q") if quant is not None else []
    return TensorInfo(
        name=reader.string(table, 3),
        dtype=TENSOR_TYPES.get(type_code, f"type{type_code}"),
        shape=tuple(reader.ints(table, 0)),
        constant=0 < buffer < len(buffers) and buffers[buffer],
        quantized=bool(scales),
        scale=float(scales[0]) if scales else 0.0,
        zero_point=int(zero_points[0]) if zero_points else 0,
    )
