"""The agent's content-addressed cache of models and datasets, and the transfers filling it.

Models live as `<sha256>.tflite`, dataset bundles as `<sha256>.dataset`. A transfer
writes `<sha256>.part`, hashing the bytes as they arrive in order; a partial file left
by a dropped connection is resumed from its last whole chunk. Only a file whose size and
sha256 match is fsynced and renamed into place, so the cache never holds a model that
is not what its name says.
"""

from __future__ import annotations

import contextlib
import functools
import hashlib
import logging
import os
import re
import threading
from collections.abc import Iterable
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Optional

from agent.formats.binary import BinaryFormatError, check_program
from agent.formats.dataset import DatasetError, check_bundle
from agent.formats.modelfile import ModelFormatError, check_identifier
from agent.wire.protocol import CHANGED_ON_DISK

log = logging.getLogger("edgebench.agent")

_SHA256 = re.compile(r"[0-9a-f]{64}")
# Each kind of blob: its file suffix, and the check its first chunk must pass.
KINDS = {"model": (".tflite", check_identifier), "dataset": (".dataset", check_bundle),
         "binary": (".bin", check_program)}


# Free bytes a transfer must leave on the agent's disk (for the outbox and logs).
RESERVE_BYTES = 256 << 10


class TransferError(ValueError):
    """A transfer that cannot go on: bad name, bad bytes, wrong size or hash."""


def check_sha256(sha256: str) -> str:
    """`sha256` if it is 64 lowercase hex digits; names never become paths otherwise."""
    if not _SHA256.fullmatch(sha256):
        raise TransferError(f"invalid model id {sha256[:80]!r}: expected a sha256 hex digest")
    return sha256


def changed_on_disk(sha256: str) -> str:
    """The one line of a cell whose cached model no longer matched its name."""
    return f"cached model {sha256[:12]} {CHANGED_ON_DISK} (hash mismatch); evicted, send it again"


class ModelCache:
    """Models by sha256 in one directory."""

    def __init__(self, directory: Path, quota_bytes: Optional[int] = None):
        self.directory = Path(directory)
        self.directory.mkdir(parents=True, exist_ok=True)
        self.quota_bytes = quota_bytes
        # sha256 -> number of accepted jobs that use it; the job thread releases, so lock.
        self._pins: dict[str, int] = {}
        self._pins_lock = threading.Lock()
        # path -> (size, mtime, ctime, inode) when its content last hashed to its name.
        self._verified: dict[Path, tuple[int, int, int, int]] = {}
        # Blobs evicted because their bytes changed, until they arrive again.
        self.evicted: set[str] = set()
        # Partial files of transfers the agent no longer tracks (a crash, a restart).
        for stale in self.directory.glob("*.part"):
            stale.unlink(missing_ok=True)

    def pin(self, sha256s: Iterable[str]) -> None:
        """Keep these blobs from eviction until `unpin` (a job that will use them)."""
        with self._pins_lock:
            for sha256 in sha256s:
                self._pins[sha256] = self._pins.get(sha256, 0) + 1

    def unpin(self, sha256s: Iterable[str]) -> None:
        """Release models pinned for a job so that the quota may evict them again."""
        with self._pins_lock:
            for sha256 in sha256s:
                count = self._pins.get(sha256, 0) - 1
                if count > 0:
                    self._pins[sha256] = count
                else:
                    self._pins.pop(sha256, None)

    def make_room(self, size: int, keep: Iterable[str] = ()) -> list[str]:
        """Evict least-recently-used blobs until `size` more bytes fit in the quota.

        Pinned blobs and those in `keep` (transfers under way) are never evicted.
        Returns the evicted file names; raises TransferError when the room cannot be made.
        """
        if self.quota_bytes is None:
            return []
        if size > self.quota_bytes:
            raise TransferError(f"{size} bytes exceed the agent's cache quota")
        with self._pins_lock:
            protected = set(self._pins) | set(keep)
        entries = []
        for path in self.directory.iterdir():
            try:
                stat = path.stat()
            except FileNotFoundError:
                continue
            entries.append((stat.st_mtime, path, stat.st_size))
        used = sum(size_ for _, _, size_ in entries)
        evicted = []
        for _, path, size_ in sorted(entries, key=lambda entry: entry[0]):
            if used + size <= self.quota_bytes:
                break
            if path.stem in protected:
                continue
            path.unlink(missing_ok=True)
            used -= size_
            evicted.append(path.name)
        if used + size > self.quota_bytes:
            log.warning("cache quota of %d bytes is full: %d bytes in use by models a job needs, %d more requested",
                        self.quota_bytes, used, size)
            raise TransferError("the agent's cache quota is full of models its jobs need; try again when they end")
        return evicted

    def path(self, sha256: str, kind: str = "model") -> Path:
        """Where a blob of `kind` with this sha256 is (or would be) kept."""
        return self.directory / f"{check_sha256(sha256)}{KINDS[kind][0]}"

    def has(self, sha256: str, kind: str = "model") -> bool:
        """True when the blob is cached and its bytes still hash to its name.

        Re-hashed on every offer (once per run): a file changed on disk is evicted, so the
        controller sends it again instead of a run measuring something else.
        """
        path = self.path(sha256, kind)
        try:
            os.utime(path)  # recency, for eviction by least recent use
        except FileNotFoundError:
            return False
        return self._check(path, sha256, force=True) is None

    def verify(self, sha256: str, kind: str = "model") -> Optional[str]:
        """None when the cached blob is what its name says (re-hashed only if its stat changed);
        else evicts it and returns one line saying so."""
        path = self.path(sha256, kind)
        return self._check(path, sha256, force=False) if path.exists() else None

    def _check(self, path: Path, sha256: str, force: bool) -> Optional[str]:
        try:
            stat = path.stat()
            key = (stat.st_size, stat.st_mtime_ns, stat.st_ctime_ns, stat.st_ino)
            if not force and self._verified.get(path) == key:
                return None
            digest = _file_sha256(path)
        except FileNotFoundError:
            return f"{path.name} vanished from the agent's cache"
        if digest == sha256:
            self._verified[path] = key
            return None
        self._verified.pop(path, None)
        path.unlink(missing_ok=True)
        self.evicted.add(sha256)
        log.warning("cache: %s %s (hash %s); evicted", path.name, CHANGED_ON_DISK, digest)
        return changed_on_disk(sha256)

    def committed(self, path: Path) -> None:
        """Note a blob just verified and renamed into place."""
        self.evicted.discard(path.stem)
        stat = path.stat()
        self._verified[path] = (stat.st_size, stat.st_mtime_ns, stat.st_ctime_ns, stat.st_ino)

    def free_bytes(self) -> int:
        """Bytes the agent may still write on the cache's file system."""
        stat = os.statvfs(self.directory)
        return stat.f_bavail * stat.f_frsize

    def receive(self, sha256: str, size: int, chunk_size: int, kind: str = "model", reserved: int = 0) -> Incoming:
        """Start (or resume) receiving a blob of `size` bytes; `reserved` bytes of the disk are
        promised to other transfers already."""
        return Incoming(self, check_sha256(sha256), size, chunk_size, kind, reserved)


class Incoming:
    """One model arriving chunk by chunk, in order."""

    def __init__(self, cache: ModelCache, sha256: str, size: int, chunk_size: int, kind: str = "model",
                 reserved: int = 0):
        if size <= 0:
            raise TransferError(f"invalid {kind} size {size}")
        self.cache, self.sha256, self.size, self.chunk_size = cache, sha256, size, chunk_size
        self.kind = kind
        self.part = cache.directory / f"{sha256}.part"
        self.hasher = hashlib.sha256()
        self.received = self._resume()
        self.requested = self.received
        needed, free = size - self.received, cache.free_bytes() - reserved
        if free < needed + RESERVE_BYTES:
            # The figures stay in the agent's log: a peer learns no more than that it does not fit.
            log.warning("refused %s %s: %d bytes free in %s after %d promised to open transfers, %d needed",
                        kind, sha256[:12], free + reserved, cache.directory, reserved, needed + RESERVE_BYTES)
            raise TransferError(f"not enough free space on the agent's disk for {kind} {sha256[:12]}")
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

    def write(self, offset: int, data: bytes | memoryview) -> bool:
        """Store the chunk at `offset`; True when the model is complete and verified."""
        if offset != self.received:
            raise TransferError(f"chunk at offset {offset} out of order (expected {self.received})")
        if offset + len(data) > self.size or not data:
            raise TransferError(f"chunk of {len(data)} bytes at {offset} exceeds size {self.size}")
        if offset == 0:
            try:
                KINDS[self.kind][1](bytes(data))
            except (ModelFormatError, DatasetError, BinaryFormatError) as exc:
                raise TransferError(str(exc)) from None
        # Hashing and writing both release the GIL: overlapped, a chunk costs the slower of the two.
        hashed = _hashing().submit(self.hasher.update, data)
        self.file.write(data)
        hashed.result()
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
        final = self.cache.path(self.sha256, self.kind)
        os.replace(self.part, final)
        _fsync_dir(self.cache.directory)
        self.cache.committed(final)

    def abort(self) -> None:
        """Close the partial file, keeping it for a later resume."""
        if not self.file.closed:
            self.file.close()

    def fail(self) -> None:
        """Close and delete the partial file: a transfer that went wrong leaves nothing."""
        with contextlib.suppress(OSError):  # closing flushes, which fails again on a full disk
            self.file.close()
        self.part.unlink(missing_ok=True)


@functools.lru_cache(maxsize=1)
def _hashing() -> ThreadPoolExecutor:
    """The one thread that hashes incoming chunks, started with the first transfer."""
    return ThreadPoolExecutor(max_workers=1, thread_name_prefix="hash")


def _file_sha256(path: Path) -> str:
    hasher = hashlib.sha256()
    with open(path, "rb") as f:
        while block := f.read(1 << 20):
            hasher.update(block)
    return hasher.hexdigest()


def _fsync_dir(directory: Path) -> None:
    fd = os.open(directory, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)
