"""Random input data for every input tensor, in the tensor's own dtype and range."""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

# Ranges follow benchmark_model's random inputs: small floats, the full range of 8- and
# 16-bit integers, and small non-negative values for wide integers (often indices).
_FLOAT_RANGE = (-1.0, 1.0)
_WIDE_INT_RANGE = (0, 100)


def random_tensor(rng: np.random.Generator, dtype, shape: Sequence[int]) -> np.ndarray:
    """A random array of `dtype` and `shape` with values valid for that dtype."""
    dtype = np.dtype(dtype)
    shape = tuple(int(d) for d in shape)
    if dtype == np.bool_:
        return rng.integers(0, 2, size=shape).astype(np.bool_)
    if np.issubdtype(dtype, np.floating):
        return rng.uniform(*_FLOAT_RANGE, size=shape).astype(dtype)
    if np.issubdtype(dtype, np.integer):
        info = np.iinfo(dtype)
        if info.bits <= 16:
            low, high = int(info.min), int(info.max) + 1
        else:
            low, high = _WIDE_INT_RANGE
        return rng.integers(low, high, size=shape, dtype=dtype)
    raise ValueError(f"cannot make random input of type {dtype.name}")


def random_inputs(input_details: list[dict], seed: int) -> list[np.ndarray]:
    """One random array per input tensor, from the interpreter's input details."""
    rng = np.random.default_rng(seed)
    return [random_tensor(rng, d["dtype"], d["shape"]) for d in input_details]
