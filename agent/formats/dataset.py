"""Labelled image datasets as one content-addressed bundle the agent can cache.

A dataset on the host is a directory with one sub-directory per class (class index =
sorted order of the sub-directory names, unless `labels.txt` lists them one per line).
It travels as a deterministic, uncompressed tar: `index.json` first (class names and
each sample's member name and label), then the encoded image files, byte for byte. The
same directory always gives the same bundle and sha256, so a dataset is sent once.
"""

from __future__ import annotations

import io
import json
import tarfile
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Optional

IMAGE_SUFFIXES = {".png", ".jpg", ".jpeg", ".bmp", ".webp", ".ppm", ".pgm", ".tif", ".tiff"}
INDEX = "index.json"


class DatasetError(ValueError):
    """A dataset directory or bundle that cannot be used."""


@dataclass(frozen=True)
class Sample:
    """One image of the dataset and its class index."""

    member: str
    label: int


@dataclass(frozen=True)
class DatasetIndex:
    """The images of a dataset directory, by class, in a stable order."""

    classes: tuple[str, ...]
    samples: tuple[Sample, ...]


def scan(directory: Path) -> tuple[DatasetIndex, list[Path]]:
    """The index of a class-per-directory dataset and the image file of each sample."""
    if not directory.is_dir():
        raise DatasetError(f"{directory}: not a directory")
    subdirs = sorted(p.name for p in directory.iterdir() if p.is_dir())
    labels_file = directory / "labels.txt"
    if labels_file.exists():
        classes = [line.strip() for line in labels_file.read_text().splitlines() if line.strip()]
        unknown = sorted(set(subdirs) - set(classes))
        if unknown:
            raise DatasetError(f"{directory}: directories not in labels.txt: {', '.join(unknown)}")
    else:
        classes = subdirs
    if not classes:
        raise DatasetError(f"{directory}: no class sub-directories")
    samples, files = [], []
    for label, name in enumerate(classes):
        class_dir = directory / name
        if not class_dir.is_dir():
            continue
        for path in sorted(class_dir.iterdir()):
            if path.is_file() and path.suffix.lower() in IMAGE_SUFFIXES:
                samples.append(Sample(member=f"{label}/{path.name}", label=label))
                files.append(path)
    if not samples:
        raise DatasetError(f"{directory}: no images ({', '.join(sorted(IMAGE_SUFFIXES))})")
    return DatasetIndex(classes=tuple(classes), samples=tuple(samples)), files


def write_bundle(index: DatasetIndex, files: list[Path], out: Path) -> None:
    """Write the bundle for `index` to `out`; identical inputs give identical bytes."""
    document = json.dumps({
        "classes": list(index.classes),
        "samples": [[s.member, s.label] for s in index.samples],
    }, separators=(",", ":")).encode()
    with tarfile.open(out, "w", format=tarfile.USTAR_FORMAT) as tar:
        _add(tar, INDEX, document)
        for sample, path in zip(index.samples, files):
            _add(tar, sample.member, path.read_bytes())


def _add(tar: tarfile.TarFile, name: str, data: bytes) -> None:
    info = tarfile.TarInfo(name)
    info.size = len(data)
    info.mode = 0o644
    tar.addfile(info, io.BytesIO(data))


def check_bundle(head: bytes) -> None:
    """Raise unless `head` (the first 512+ bytes of a file) starts a dataset bundle."""
    if len(head) < 512 or head[257:262] != b"ustar" or head[:len(INDEX) + 1] != INDEX.encode() + b"\0":
        raise DatasetError("not an edgebench dataset bundle")


class Bundle:
    """Read access to a dataset bundle file: its index and each sample's image bytes."""

    def __init__(self, path: str):
        try:
            self._tar = tarfile.open(path, "r:")  # noqa: SIM115 - closed by close()
            raw = json.loads(self._read(INDEX))
            self.index = DatasetIndex(
                classes=tuple(str(c) for c in raw["classes"]),
                samples=tuple(Sample(member=str(m), label=int(label)) for m, label in raw["samples"]))
        except (tarfile.TarError, OSError, KeyError, TypeError, ValueError) as exc:
            raise DatasetError(f"unreadable dataset bundle: {exc}") from None

    def _read(self, member: str) -> bytes:
        handle = self._tar.extractfile(member)
        if handle is None:
            raise DatasetError(f"dataset bundle lacks {member}")
        return handle.read()

    def images(self, indices: Optional[Iterable[int]] = None) -> Iterator[tuple[int, Sample, bytes]]:
        """(index, sample, encoded image bytes) for the given sample indices, or all."""
        chosen = range(len(self.index.samples)) if indices is None else indices
        for i in chosen:
            sample = self.index.samples[i]
            yield i, sample, self._read(sample.member)

    def close(self) -> None:
        """Close the bundle file."""
        self._tar.close()

    def __enter__(self) -> Bundle:
        return self

    def __exit__(self, *exc) -> None:
        self.close()
