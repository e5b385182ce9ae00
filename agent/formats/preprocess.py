"""Images to input tensors, exactly as a preprocessing spec says (OpenCV).

The same functions run on the device (accuracy) and on the host (`controller
preprocess`, parity checks), so a difference between the two is a difference between
the machines' decoders and resize code, never between two implementations.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass

import msgspec
import numpy as np

from agent.formats.modelfile import TensorInfo
from agent.formats.tomlfile import TomlFileError, read_toml
from agent.wire.records import PreprocessSpec, TensorSummary

THUMBNAIL = 8


class PreprocessError(ValueError):
    """A spec, image or model input that preprocessing cannot work with."""


@dataclass(frozen=True)
class InputTensor:
    """The model input images are written into: NHWC shape, dtype and quantization."""

    height: int
    width: int
    channels: int
    dtype: np.dtype
    scale: float = 0.0
    zero_point: int = 0

    @classmethod
    def from_details(cls, detail: dict) -> InputTensor:
        """From one entry of the interpreter's `get_input_details()`."""
        shape = [int(d) for d in detail["shape"]]
        scale, zero_point = detail.get("quantization", (0.0, 0))
        return cls.from_shape(detail.get("name", ""), shape, np.dtype(detail["dtype"]), scale, zero_point)

    @classmethod
    def from_info(cls, info: TensorInfo) -> InputTensor:
        """From the model file's own description of the input (no runtime needed)."""
        return cls.from_shape(info.name, list(info.shape), np.dtype(info.dtype), info.scale, info.zero_point)

    @classmethod
    def from_shape(cls, name: str, shape: list[int], dtype: np.dtype, scale: float,
                   zero_point: int) -> InputTensor:
        """A tensor description from a shape, dtype and quantization parameters."""
        if len(shape) != 4 or shape[0] != 1 or shape[3] not in (1, 3):
            raise PreprocessError(f"input {name!r} has shape {shape}; images need [1, H, W, 1 or 3]")
        return cls(shape[1], shape[2], shape[3], dtype, float(scale), int(zero_point))


def parse_spec(data: dict) -> PreprocessSpec:
    """Validate a spec read from TOML; every problem is a one-line PreprocessError."""
    try:
        spec = msgspec.convert(data, PreprocessSpec)
    except msgspec.ValidationError as exc:
        raise PreprocessError(f"preprocessing spec: {exc}") from None
    if spec.size is not None and min(spec.size) < 1:
        raise PreprocessError(f"preprocessing spec: size {list(spec.size)} must be positive")
    if spec.resize == "shorter_side_center_crop":
        if spec.resize_to is None:
            raise PreprocessError("preprocessing spec: shorter_side_center_crop needs resize_to")
        if spec.size is not None and spec.resize_to < min(spec.size):
            raise PreprocessError(
                f"preprocessing spec: resize_to {spec.resize_to} is smaller than size {list(spec.size)}")
    elif spec.resize_to is not None:
        raise PreprocessError('preprocessing spec: resize_to applies only to resize = "shorter_side_center_crop"')
    if any(s == 0 for s in spec.std):
        raise PreprocessError("preprocessing spec: std must not be 0")
    if spec.scale <= 0:
        raise PreprocessError("preprocessing spec: scale must be positive")
    return spec


def load_spec(path: str) -> PreprocessSpec:
    """Read and validate a SPEC.toml file."""
    try:
        return parse_spec(read_toml(path))
    except TomlFileError as exc:
        raise PreprocessError(str(exc)) from None


def check_fit(spec: PreprocessSpec, target: InputTensor) -> None:
    """Raise when the spec cannot produce tensors for this input."""
    for name, values in (("mean", spec.mean), ("std", spec.std)):
        if len(values) not in (1, target.channels):
            raise PreprocessError(
                f"preprocessing spec has {len(values)} {name} values but the model input has "
                f"{target.channels} channel{'s' if target.channels > 1 else ''}")
    if spec.size is not None and tuple(spec.size) != (target.height, target.width):
        raise PreprocessError(
            f"preprocessing spec size {list(spec.size)} does not match the model input "
            f"{target.height}x{target.width}")
    if spec.resize_to is not None and spec.resize_to < min(target.height, target.width):
        raise PreprocessError(
            f"preprocessing spec resize_to {spec.resize_to} is smaller than the model input "
            f"{target.height}x{target.width}")


def _cv2():
    """OpenCV, imported only when images are processed (it is heavy for a small device)."""
    try:
        import cv2
    except ImportError:
        raise PreprocessError(
            "OpenCV is not installed here (pip install 'edgebench[accuracy]')") from None
    return cv2


def decode(data: bytes, channels: int) -> np.ndarray:
    """Decode 8-bit image bytes to HxWx3 BGR (OpenCV's order) or HxWx1 grayscale."""
    cv2 = _cv2()
    flag = cv2.IMREAD_GRAYSCALE if channels == 1 else cv2.IMREAD_COLOR
    image = cv2.imdecode(np.frombuffer(data, np.uint8), flag) if data else None
    if image is None:
        raise PreprocessError("image cannot be decoded")
    return image.reshape(image.shape[0], image.shape[1], channels)


def to_tensor(image: np.ndarray, spec: PreprocessSpec, target: InputTensor) -> np.ndarray:
    """A decoded image (from `decode`) as the model's [1, H, W, C] input tensor."""
    cv2 = _cv2()
    check_fit(spec, target)
    if target.channels == 3 and spec.color == "RGB":
        image = cv2.cvtColor(image, cv2.COLOR_BGR2RGB)
    image = _resize(image, spec, target.height, target.width)
    pixels = image.reshape(target.height, target.width, target.channels).astype(np.float32)
    values = (pixels * np.float32(spec.scale) - np.asarray(spec.mean, np.float32)) / np.asarray(
        spec.std, np.float32)
    return quantize(values[None], target)


def _resize(image: np.ndarray, spec: PreprocessSpec, height: int, width: int) -> np.ndarray:
    cv2 = _cv2()
    interpolation = {"nearest": cv2.INTER_NEAREST, "bilinear": cv2.INTER_LINEAR,
                     "area": cv2.INTER_AREA, "bicubic": cv2.INTER_CUBIC}[spec.interpolation]
    if spec.resize == "direct":
        if image.shape[:2] == (height, width):
            return image
        return cv2.resize(image, (width, height), interpolation=interpolation)
    h, w = image.shape[:2]
    factor = spec.resize_to / min(h, w)
    new_h, new_w = max(height, round(h * factor)), max(width, round(w * factor))
    resized = cv2.resize(image, (new_w, new_h), interpolation=interpolation)
    top, left = (new_h - height) // 2, (new_w - width) // 2
    return resized[top:top + height, left:left + width]


def quantize(values: np.ndarray, target: InputTensor) -> np.ndarray:
    """Float values in the input tensor's dtype: quantized with its scale and zero point."""
    if np.issubdtype(target.dtype, np.floating):
        return values.astype(target.dtype)
    if not target.scale:
        raise PreprocessError(f"integer input of type {target.dtype.name} has no quantization scale")
    info = np.iinfo(target.dtype)
    quantized = np.round(values / target.scale) + target.zero_point
    return np.clip(quantized, info.min, info.max).astype(target.dtype)


def dequantize(values: np.ndarray, scale: float, zero_point: int) -> np.ndarray:
    """Integer tensor values as float32 (unchanged for float tensors)."""
    if np.issubdtype(values.dtype, np.floating) or not scale:
        return values.astype(np.float32)
    return ((values.astype(np.float32) - zero_point) * scale).astype(np.float32)


def summarize(sample: int, tensor: np.ndarray) -> TensorSummary:
    """The tensor's digest, statistics and pooled thumbnail (see TensorSummary)."""
    data = np.ascontiguousarray(tensor)
    values = data.astype(np.float64)
    return TensorSummary(
        sample=sample, sha256=hashlib.sha256(data.tobytes()).hexdigest(),
        mean=float(values.mean()), std=float(values.std()),
        min=float(values.min()), max=float(values.max()),
        thumbnail=[float(v) for v in _pool(values[0]).ravel()],
    )


def _pool(image: np.ndarray) -> np.ndarray:
    """Average-pool HxWxC into at most THUMBNAIL x THUMBNAIL blocks per channel."""
    rows = np.array_split(np.arange(image.shape[0]), min(THUMBNAIL, image.shape[0]))
    cols = np.array_split(np.arange(image.shape[1]), min(THUMBNAIL, image.shape[1]))
    return np.array([[image[r[0]:r[-1] + 1, c[0]:c[-1] + 1].mean(axis=(0, 1)) for c in cols]
                     for r in rows])


def summary_difference(host: TensorSummary, device: TensorSummary) -> float:
    """Largest absolute difference between two summaries of the same image (0 if identical)."""
    if host.sha256 == device.sha256:
        return 0.0
    pairs = [(host.mean, device.mean), (host.std, device.std), (host.min, device.min),
             (host.max, device.max), *zip(host.thumbnail, device.thumbnail)]
    if len(host.thumbnail) != len(device.thumbnail):
        return float("inf")
    return max(abs(a - b) for a, b in pairs)


def preprocess_image(data: bytes, spec: PreprocessSpec, target: InputTensor) -> np.ndarray:
    """Encoded image bytes to the model's input tensor."""
    return to_tensor(decode(data, target.channels), spec, target)


def parity_tolerance(summaries: list[TensorSummary], fraction: float) -> float:
    """Tolerance in tensor units: `fraction` of the value range the host tensors span."""
    if not summaries:
        return 0.0
    span = max(s.max for s in summaries) - min(s.min for s in summaries)
    return fraction * span if span > 0 else fraction
