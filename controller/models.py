"""The models a run measures: paths and globs resolved, files read and classified."""

from __future__ import annotations

import glob
import hashlib
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Optional

from agent.formats.modelfile import ModelFormatError, ModelInfo, read_model

_GLOB_CHARS = set("*?[")


@dataclass(frozen=True)
class ModelSource:
    """A readable model file on the controller's host."""

    path: Path
    name: str
    sha256: str
    size: int
    info: ModelInfo

    @property
    def variant(self) -> Optional[str]:
        """The variant the file name or its tensors reveal, or None."""
        return self.info.variant


def expand(arguments: Sequence[str]) -> tuple[list[Path], list[str]]:
    """Paths named by `--models` arguments (files, directories, quoted globs).

    Returns the paths in order without duplicates, and one error line per argument
    that names nothing.
    """
    paths: list[Path] = []
    errors: list[str] = []
    for argument in arguments:
        path = Path(argument)
        if path.is_dir():
            found = sorted(path.glob("*.tflite"))
            if not found:
                errors.append(f"{argument}: directory holds no .tflite files")
        elif path.exists():
            found = [path]
        elif _GLOB_CHARS & set(argument):
            found = [Path(p) for p in sorted(glob.glob(argument)) if Path(p).is_file()]
            if not found:
                errors.append(f"{argument}: no file matches")
        else:
            found = []
            errors.append(f"{argument}: no such file")
        paths.extend(p for p in found if p not in paths)
    return paths, errors


def load(path: Path) -> ModelSource:
    """Read and classify one model; ModelFormatError or OSError when unreadable."""
    data = path.read_bytes()
    info = read_model(data)
    return ModelSource(path=path, name=path.name, sha256=hashlib.sha256(data).hexdigest(),
                       size=len(data), info=info)


def resolve(arguments: Sequence[str]) -> tuple[list[ModelSource], list[str]]:
    """Readable models for the arguments, and one error line per problem."""
    paths, errors = expand(arguments)
    if not arguments:
        errors.append("no models given")
    models: list[ModelSource] = []
    for path in paths:
        try:
            models.append(load(path))
        except ModelFormatError as exc:
            errors.append(f"{path}: {exc}")
        except OSError as exc:
            errors.append(f"{path}: {exc.strerror or exc}")
    return models, errors
