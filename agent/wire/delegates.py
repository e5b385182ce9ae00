"""Every delegate edgebench knows, defined once: its name, where it runs, and its recipes.

A name in a profile's `delegates` (and in `--delegates`) is looked up here. The Python agent
builds a delegate by its `recipe`; a phone's `benchmark_model` selects it with `benchmark_flags`
and names it in its log with `log_param`. Delegates not listed (a profile's own names) are
external libraries the agent loads from the paths its configuration allows.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal, Optional

# How the Python agent builds a cell's model for a delegate:
# "kernels"  the interpreter's own kernels, XNNPACK off;
# "xnnpack"  the interpreter with XNNPACK applied (the runtime's default);
# "compiled-gpu"  LiteRT's GPU accelerator through its CompiledModel API;
# "library"  an external delegate library loaded with load_delegate.
Recipe = Literal["kernels", "xnnpack", "compiled-gpu", "library"]


@dataclass(frozen=True)
class Delegate:
    """One delegate: how each back end selects it, and whether it computes on the CPU."""

    name: str
    recipe: Recipe
    on_cpu: bool = False
    benchmark_flags: Optional[tuple[str, ...]] = None
    log_param: Optional[str] = None


_ALL = (
    Delegate("cpu", "kernels", on_cpu=True, benchmark_flags=("--use_xnnpack=false",), log_param="use xnnpack"),
    Delegate("xnnpack", "xnnpack", on_cpu=True, benchmark_flags=("--use_xnnpack=true",), log_param="use xnnpack"),
    Delegate("litert-gpu", "compiled-gpu"),
    Delegate("gpu", "library", benchmark_flags=("--use_gpu=true", "--use_xnnpack=false"), log_param="use gpu"),
    Delegate("nnapi", "library", benchmark_flags=("--use_nnapi=true", "--use_xnnpack=false"),
             log_param="use nnapi"),
    Delegate("hexagon", "library", benchmark_flags=("--use_hexagon=true", "--use_xnnpack=false"),
             log_param="use hexagon"),
)
DELEGATES: dict[str, Delegate] = {d.name: d for d in _ALL}

# Delegates whose outputs are computed on the CPU: the reference for accelerated cells,
# measured first in a run.
CPU_DELEGATES: tuple[str, ...] = tuple(d.name for d in _ALL if d.on_cpu)
# LiteRT's own GPU accelerator (ai-edge-litert only).
GPU_DELEGATE = "litert-gpu"
# Delegates `benchmark_model` can select with its own flags.
BENCHMARK_MODEL_DELEGATES: tuple[str, ...] = tuple(d.name for d in _ALL if d.benchmark_flags)


def recipe_of(name: str) -> Recipe:
    """How the Python agent builds `name`: a registered recipe, else an external library."""
    known = DELEGATES.get(name)
    return known.recipe if known else "library"


def is_cpu(name: str) -> bool:
    """True for delegates that compute on the CPU (plain kernels, XNNPACK)."""
    return name in CPU_DELEGATES
