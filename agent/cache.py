"""The agent's content-addressed model cache and the incoming transfers that fill it.

Models live as `<sha256>.tflite`. A transfer writes `<sha256>.part`, hashing the bytes
as they arrive in order; a partial file left by a dropped connection is resumed from
its last whole chunk. Only a file whose size and sha256 match is fsynced and renamed
into place, so the cache never holds a model that is not what its name says.
"""

from __future__ import annotations

import hashlib
import os
import re
from pathlib import Path
from typing import Optional

from agent.modelfile import ModelFormatError, check_identifier

_SHA256 = re.compile(r"^[0-9a-f]{64}$")


class TransferError(ValueError):
    """A transfer that cannot go on: bad name, bad bytes, wrong size or hash."""


def check_sha256(sha256: str) -> str:
    """`sha256` if it is 64 lowercase hex digits; names never become paths otherwise."""
    if not _SHA256.match(sha256):
        raise TransferError(f"invalid model id {sha256[:80]!r}: expected a sha256 hex digest")
    return sha256


class ModelCache:
    """Models by sha256 in one directory."""

    def __init__(self, directory: Path):
        self.directory = Path(directory)
        self.directory.mkdir(parents=True, exist_ok=True)

    def path(self, sha256: str) -> Path:
        return self.directory / f"{check_sha256(sha256)}.tflite"

    def has(self, sha256: str) -> bool:
        path = self.path(sha256)
        if path.exists():
            os.utime(path)  # recency, for eviction by least recent use
            return True
        return False

    def receive(self, sha256: str, size: int, chunk_size: int) -> Incoming:
        """Start (or resume) receiving a model of `size` bytes."""
        return Incoming(self, check_sha256(sha256), size, chunk_size)


class Incoming:
    """One model arriving chunk by chunk, in order."""

    def __init__(self, cache: ModelCache, sha256: str, size: int, chunk_size: int):
        if size <= 0:
            raise TransferError(f"invalid model size {size}")
        self.cache, self.sha256, self.size, self.chunk_size = cache, sha256, size, chunk_size
        self.part = cache.directory / f"{sha256}.part"
        self.hasher = hashlib.sha256()
        self.received = self._resume()
        self.requested = self.received
        # Held open across chunk messages; closed on completion or by abort().
        self.file = open(self.part, "r+b" if self.received else "wb")  # noqa: SIM115
        self.file.seek(self.received)
        self.file.truncate()

    def _resume(self) -> int:
        """Bytes of a previous partial file to keep: whole chunks only, hashed again."""
        try:
            existing = self.part.stat().st_size
        except FileNotFoundError:
            return 0
        keep = min(existing, self.size) // self.chunk_size * self.chunk_size
        with open(self.part, "rb") as f:
            remaining = keep
            while remaining:
                block = f.read(min(remaining, 1 << 20))
                self.hasher.update(block)
                remaining -= len(block)
        return keep

    def next_request(self) -> Optional[tuple]:
        """(offset, length) of the next chunk to ask for, or None when all are asked."""
        if self.requested >= self.size:
            return None
        offset = self.requested
        length = min(self.chunk_size, self.size - offset)
        self.requested += length
        return offset, length

    def write(self, offset: int, data: bytes) -> bool:
        """Store the chunk at `offset`; True when the model is complete and verified."""
        if offset != self.received:
            raise TransferError(f"chunk at offset {offset} out of order (expected {self.received})")
        if offset + len(data) > self.size or not data:
            raise TransferError(f"chunk of {len(data)} bytes at {offset} exceeds size {self.size}")
        if offset == 0:
            try:
                check_identifier(data)
            except ModelFormatError as exc:
                raise TransferError(str(exc)) from None
        self.file.write(data)
        self.hasher.update(data)
        self.received += len(data)
        if self.received < self.size:
            return False
        self._commit()
        return True

    def _commit(self) -> None:
        self.file.flush()
        os.fsync(self.file.fileno())
        self.file.close()
        digest = self.hasher.hexdigest()
        if digest != self.sha256:
            self.part.unlink(missing_ok=True)
            raise TransferError(f"model hash mismatch: received {digest}, expected {self.sha256}")
        os.replace(self.part, self.cache.path(self.sha256))
        _fsync_dir(self.cache.directory)

    def abort(self) -> None:
        """Close the partial file, keeping it for a later resume."""
        if not self.file.closed:
            self.file.close()


def _fsync_dir(directory: Path) -> None:
    fd = os.open(directory, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)
