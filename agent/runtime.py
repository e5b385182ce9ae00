"""Which LiteRT interpreter this device has, and how to build one for a cell.

Order of preference: `ai-edge-litert` (LiteRT 2.x, numpy 2), then `tflite-runtime`
(older Pi OS images, numpy < 2), then `tensorflow.lite`. Detection only looks at
installed distributions, so the agent's own process never imports a runtime: that
happens in the cell worker.
"""

from __future__ import annotations

import importlib
import importlib.metadata
import importlib.util
from dataclasses import dataclass
from typing import Optional

# The delegates every CPU runtime offers: plain interpreter kernels, and XNNPACK.
CPU_DELEGATES = ("cpu", "xnnpack")


@dataclass(frozen=True)
class Runtime:
    """An installed interpreter: distribution name, version and Python module."""

    name: str
    version: str
    module: str


_CANDIDATES = (
    ("ai-edge-litert", "ai_edge_litert.interpreter"),
    ("tflite-runtime", "tflite_runtime.interpreter"),
    ("tensorflow", "tensorflow.lite.python.interpreter"),
    ("tensorflow-cpu", "tensorflow.lite.python.interpreter"),
)


def detect() -> Optional[Runtime]:
    """The preferred installed runtime, or None when there is none."""
    for dist, module in _CANDIDATES:
        top = module.split(".")[0]
        if importlib.util.find_spec(top) is None:
            continue
        try:
            version = importlib.metadata.version(dist)
        except importlib.metadata.PackageNotFoundError:
            continue
        return Runtime(name=dist, version=version, module=module)
    return None


class RuntimeUnavailable(RuntimeError):
    """No LiteRT interpreter is installed."""


def require() -> Runtime:
    """The preferred runtime; raise RuntimeUnavailable with install advice when none."""
    runtime = detect()
    if runtime is None:
        raise RuntimeUnavailable(
            "no LiteRT interpreter installed: pip install ai-edge-litert "
            "(or tflite-runtime on 32-bit Pi OS)"
        )
    return runtime


def make_interpreter(runtime: Runtime, model_path: str, delegate: str, threads: int):
    """An interpreter for `model_path` with the named CPU delegate and thread count."""
    module = importlib.import_module(runtime.module)
    if delegate == "cpu":
        resolver = module.OpResolverType.BUILTIN_WITHOUT_DEFAULT_DELEGATES
    elif delegate == "xnnpack":
        resolver = module.OpResolverType.AUTO
    else:
        raise ValueError(f"unknown delegate {delegate!r} (this agent offers {', '.join(CPU_DELEGATES)})")
    return module.Interpreter(
        model_path=model_path,
        num_threads=threads,
        experimental_op_resolver_type=resolver,
    )
