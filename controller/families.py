"""Variant families: the same model in several variants, and the member others compare with.

Models belong together when their names differ only by a variant suffix
(`mobilenet_fp32` / `mobilenet_int8`) and their input and output shapes agree, or when
the user maps them with `--family NAME=GLOB`. A family's reference is its fp32 member,
or the model given with `--reference`.
"""

from __future__ import annotations

import fnmatch
import re
from dataclasses import dataclass
from typing import Optional

from agent.formats.modelfile import ModelInfo
from controller.models import ModelSource

_SUFFIX = re.compile(
    r"[_.-](fp32|float32|float|f32|fp16|float16|f16|dynamic|dynamic_range|dyn|drq|"
    r"full_int8|int8|integer_quant|quant|uint8|i8)$", re.IGNORECASE)


class FamilyError(ValueError):
    """A `--family` mapping that cannot be used."""


@dataclass(frozen=True)
class Family:
    """Variants of one model (fp32, fp16, dynamic, int8) compared side by side."""

    name: str
    members: tuple[ModelSource, ...]
    reference: Optional[ModelSource]


def stem(model_name: str) -> str:
    """The model name without `.tflite` and without a trailing variant suffix."""
    base = model_name[:-len(".tflite")] if model_name.endswith(".tflite") else model_name
    return _SUFFIX.sub("", base)


def signature(info: ModelInfo) -> tuple:
    """Input and output shapes: what variants of one model share (dtypes differ)."""
    return tuple(t.shape for t in info.inputs), tuple(t.shape for t in info.outputs)


def parse_mapping(arguments: list[str]) -> dict[str, list[str]]:
    """`NAME=GLOB[,GLOB...]` arguments as family name -> file name patterns."""
    mapping: dict[str, list[str]] = {}
    for argument in arguments:
        name, sep, patterns = argument.partition("=")
        if not sep or not name.strip() or not patterns.strip():
            raise FamilyError(f"--family {argument!r}: expected NAME=GLOB[,GLOB...]")
        mapping.setdefault(name.strip(), []).extend(p.strip() for p in patterns.split(",") if p.strip())
    return mapping


def group(sources: list[ModelSource], mapping: Optional[dict[str, list[str]]] = None,
          reference: Optional[ModelSource] = None) -> tuple[list[Family], list[str]]:
    """Families of two or more models, and one line for each model that cannot join its family."""
    mapping = mapping or {}
    buckets: dict[str, list[ModelSource]] = {}
    for source in sources:
        name = next((family for family, patterns in mapping.items()
                     if any(fnmatch.fnmatch(source.name, p) for p in patterns)), None)
        if name is None:
            # With an explicit reference, every model is compared with it.
            name = stem(reference.name) if reference else stem(source.name)
        buckets.setdefault(name, []).append(source)
    families, problems = [], []
    for name, members in buckets.items():
        anchor = reference if reference in members else _fp32(members) or members[0]
        kept = [m for m in members if signature(m.info) == signature(anchor.info)]
        problems += [f"{m.name}: input/output shapes differ from {anchor.name}; not compared with it"
                     for m in members if m not in kept]
        if len(kept) >= 2:
            ref = reference if reference in kept else _fp32(kept)
            families.append(Family(name=name, members=tuple(kept), reference=ref))
    return families, problems


def _fp32(members: list[ModelSource]) -> Optional[ModelSource]:
    return next((m for m in members if m.variant == "fp32"), None)
