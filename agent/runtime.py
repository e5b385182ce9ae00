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
import struct
import time
from dataclasses import dataclass
from typing import Optional

from agent.wire.delegates import CPU_DELEGATES, GPU_DELEGATE, recipe_of


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


def agent_extra() -> str:
    """The package extra that brings this interpreter a runtime: chosen by its pointer size,
    because 32-bit Pi OS on a 64-bit kernel reports machine `aarch64` (no ai-edge-litert
    wheel fits its interpreter; tflite-runtime does)."""
    return "agent" if struct.calcsize("P") == 8 else "agent-32bit"


def require() -> Runtime:
    """The preferred runtime; raise RuntimeUnavailable with install advice when none."""
    runtime = detect()
    if runtime is None:
        package = "ai-edge-litert" if agent_extra() == "agent" else "tflite-runtime 'numpy<2'"
        raise RuntimeUnavailable(
            f"no LiteRT interpreter installed: pip install 'edgebench[{agent_extra()}]' (or {package})")
    return runtime


class DelegateError(RuntimeError):
    """A delegate that cannot be loaded or applied; the message is the library's own."""


def builtin_delegates(runtime: Optional[Runtime]) -> list[str]:
    """Delegate names this runtime offers without an external library."""
    if runtime is None:
        return []
    return [*CPU_DELEGATES, *([GPU_DELEGATE] if runtime.name == "ai-edge-litert" else [])]


def make_interpreter(runtime: Runtime, model_path: str, delegate: str, threads: int,
                     library: Optional[str] = None,
                     options: Optional[dict[str, str]] = None,
                     model_content: Optional[bytes] = None) -> tuple[object, Optional[float]]:
    """A model ready to run with the named delegate, and the delegate's own init time in ms.

    `cpu` and `xnnpack` are interpreters with XNNPACK off and on; `litert-gpu` is LiteRT's
    GPU accelerator; any other name needs `library`, loaded with `load_delegate`.
    `model_content`, when given, is run instead of the file (interpreters only).
    """
    recipe = recipe_of(delegate)
    if recipe == "compiled-gpu":
        if runtime.name != "ai-edge-litert":
            raise DelegateError(f"{GPU_DELEGATE} needs ai-edge-litert, this agent has {runtime.name}")
        from agent.gpu import CompiledModelRunner, GpuUnavailable

        start = time.perf_counter_ns()
        try:
            model = CompiledModelRunner(model_path, (options or {}).get("precision", "fp16"))
        except GpuUnavailable as exc:
            raise DelegateError(str(exc)) from None
        return model, (time.perf_counter_ns() - start) / 1e6
    module = importlib.import_module(runtime.module)
    delegates, delegate_ms = [], None
    if recipe == "kernels":
        resolver = module.OpResolverType.BUILTIN_WITHOUT_DEFAULT_DELEGATES
    elif recipe == "xnnpack":
        resolver = module.OpResolverType.AUTO
    elif library:
        # Only the named delegate: XNNPACK would otherwise take nodes first.
        resolver = module.OpResolverType.BUILTIN_WITHOUT_DEFAULT_DELEGATES
        start = time.perf_counter_ns()
        try:
            delegates = [module.load_delegate(library, options or None)]
        except (ValueError, OSError, RuntimeError, AttributeError) as exc:  # AttributeError: not a delegate
            raise DelegateError(f"cannot load delegate {delegate} from {library}: {first_line(exc)}") from None
        delegate_ms = (time.perf_counter_ns() - start) / 1e6
    else:
        raise DelegateError(f"unknown delegate {delegate!r}: not built in and no library given")
    try:
        source = {"model_content": model_content} if model_content is not None else {"model_path": model_path}
        interpreter = module.Interpreter(**source, num_threads=threads,
                                         experimental_delegates=delegates or None,
                                         experimental_op_resolver_type=resolver)
    except (ValueError, RuntimeError) as exc:
        if delegates:
            raise DelegateError(f"delegate {delegate} could not be applied: {first_line(exc)}") from None
        raise
    return interpreter, delegate_ms


def first_line(exc: BaseException) -> str:
    """The first meaningful line of an exception message."""
    return next((line.strip() for line in str(exc).splitlines() if line.strip()), type(exc).__name__)
