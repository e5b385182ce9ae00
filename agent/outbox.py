"""The agent's on-disk outbox: every result is written here before it is sent.

One directory per accepted job, named by a hash of the job id (a controller's string
never becomes a path):

    job.msgpack         the accepted RunJob: the job exists and is not finished
    running             index of the cell being measured now
    cell-<index>.msgpack  a CellDone not yet acknowledged
    done.msgpack        the JobDone, once the job ended (normally or interrupted)

Files are written to a temporary name, fsynced and renamed, so a power cut leaves either
the old or the new state. A result is deleted only when the controller acknowledges it;
after a restart, a job without `done.msgpack` was interrupted: its completed cells stay.
Finished jobs that no controller acknowledges are dropped after a week, or sooner when the
outbox grows past its size or job limit (`prune`).

A result that cannot be written (a full disk, no file descriptors left) is not lost: it is
kept in memory, sent and replayed like the others, and written by `flush` once the disk
takes it again, unless the controller acknowledged it first.
"""

from __future__ import annotations

import contextlib
import hashlib
import logging
import os
import shutil
import threading
import time
from pathlib import Path
from typing import Optional, Union

import msgspec

from agent.wire.protocol import CellDone, JobDone, RunJob
from agent.wire.text import quote

log = logging.getLogger("edgebench.agent")

Result = Union[CellDone, JobDone]
# Finished jobs nobody acknowledged are kept this long, and the outbox this big, at most.
RETENTION_S = 7 * 86_400.0
MAX_BYTES = 256 << 20
MAX_JOBS = 1000
_result_decoder = msgspec.msgpack.Decoder(Result)
_job_decoder = msgspec.msgpack.Decoder(RunJob)


class Outbox:
    """Results of accepted jobs, kept until acknowledged."""

    def __init__(self, directory: os.PathLike):
        self.directory = Path(directory)
        self.directory.mkdir(parents=True, exist_ok=True)
        # Results the disk refused, by job directory and file name. The job thread adds,
        # the server's loop reads, acknowledges and flushes: hence the lock.
        self._unwritten: dict[str, dict[str, Result]] = {}
        self._lock = threading.Lock()

    def _dir(self, job_id: str) -> Path:
        return self.directory / hashlib.sha256(job_id.encode()).hexdigest()[:32]

    def known(self, job_id: str) -> bool:
        """True while the agent holds an accepted job of this id (running, queued or unacknowledged)."""
        return (self._dir(job_id) / "job.msgpack").exists()

    def accept(self, job: RunJob) -> None:
        """Record an accepted job before it runs; OSError (and nothing left behind) when the
        disk refuses it."""
        directory = self._dir(job.job_id)
        directory.mkdir(exist_ok=True)
        try:
            _write(directory / "job.msgpack", msgspec.msgpack.encode(job))
        except OSError:
            shutil.rmtree(directory, ignore_errors=True)
            raise

    def started(self, job_id: str, index: int) -> None:
        """Note the cell being measured, so a restart can say where the job stopped (best effort)."""
        try:
            _write(self._dir(job_id) / "running", str(index).encode(), sync=False)
        except OSError as exc:
            log.debug("outbox: cannot note cell %d of job %s as running: %s", index, quote(job_id), exc)

    def put(self, result: Result) -> tuple[Optional[str], Result]:
        """Persist a result before it is sent: (its name, the result as kept).

        The name is None when the job is gone (acknowledged as done: a late duplicate).
        A result the disk refuses is kept in memory instead, and a cell's result then says
        so in its warnings.
        """
        directory = self._dir(result.job_id)
        if not directory.is_dir():
            return None, result
        name = _name(result)
        try:
            _write(directory / name, msgspec.msgpack.encode(result))
        except OSError as exc:
            reason = exc.strerror or str(exc)
            log.warning("outbox: cannot write %s of job %s (%s); kept in memory until written or acknowledged",
                        name, quote(result.job_id), reason)
            if isinstance(result, CellDone):
                result = msgspec.structs.replace(result, cell=msgspec.structs.replace(
                    result.cell, warnings=[*result.cell.warnings,
                                           f"the agent could not write this result to its disk ({reason}); "
                                           "it was kept in memory until acknowledged"]))
            with self._lock:
                self._unwritten.setdefault(directory.name, {})[name] = result
            return name, result
        if isinstance(result, JobDone):
            with contextlib.suppress(OSError):
                (directory / "running").unlink(missing_ok=True)
        return name, result

    def unwritten(self) -> int:
        """Results held in memory because the disk refused them."""
        with self._lock:
            return sum(len(results) for results in self._unwritten.values())

    def flush(self) -> int:
        """Write the results held in memory that the disk takes now; returns how many are left."""
        with self._lock:
            held = [(job, name, result) for job, results in self._unwritten.items()
                    for name, result in results.items()]
        for job, name, result in held:
            directory = self.directory / job
            try:
                if directory.is_dir():
                    _write(directory / name, msgspec.msgpack.encode(result))
            except OSError:
                continue
            with self._lock:
                results = self._unwritten.get(job, {})
                if results.get(name) is result:
                    del results[name]
                if not results:
                    self._unwritten.pop(job, None)
            log.info("outbox: wrote %s of job %s, held in memory until now", name, quote(result.job_id))
        return self.unwritten()

    def pending(self, job_id: str) -> list[Result]:
        """Unacknowledged results of a job, cells in index order, then the JobDone if any."""
        return [result for name in self.pending_names(job_id) if (result := self.read(job_id, name)) is not None]

    def pending_names(self, job_id: str) -> list[str]:
        """Names of a job's unacknowledged results (on disk or held in memory), cells in index
        order, then the JobDone."""
        directory = self._dir(job_id)
        with self._lock:
            names = set(self._unwritten.get(directory.name, {}))
        with contextlib.suppress(OSError):
            names.update(path.name for path in directory.iterdir())
        cells = []
        for name in names:
            if name.startswith("cell-") and name.endswith(".msgpack"):
                with contextlib.suppress(ValueError):
                    cells.append((int(name[len("cell-"):-len(".msgpack")]), name))
        return [name for _, name in sorted(cells)] + (["done.msgpack"] if "done.msgpack" in names else [])

    def read(self, job_id: str, name: str) -> Optional[Result]:
        """One unacknowledged result; None (and the file dropped) when it is unreadable or gone."""
        directory = self._dir(job_id)
        with self._lock:
            held = self._unwritten.get(directory.name, {}).get(name)
        if held is not None:
            return held
        path = directory / name
        try:
            return _result_decoder.decode(path.read_bytes())
        except FileNotFoundError:
            return None  # acknowledged meanwhile
        except (OSError, msgspec.DecodeError, msgspec.ValidationError) as exc:
            log.warning("outbox: dropping unreadable %s: %s", path, exc)
            with contextlib.suppress(OSError):
                path.unlink(missing_ok=True)
            return None

    def prune(self, max_age_s: float = RETENTION_S, max_bytes: int = MAX_BYTES, max_jobs: int = MAX_JOBS,
              now: Optional[float] = None) -> int:
        """Drop finished, unacknowledged jobs older than `max_age_s`, then the oldest ones until
        the outbox holds at most `max_jobs` jobs and `max_bytes`. Unfinished jobs stay.

        Returns the number of jobs dropped.
        """
        now = time.time() if now is None else now
        finished, total_bytes, count = [], 0, 0
        for directory in self.directory.iterdir():
            count += 1
            size = sum(f.stat().st_size for f in directory.iterdir() if f.is_file()) if directory.is_dir() else 0
            total_bytes += size
            done = directory / "done.msgpack"
            with contextlib.suppress(FileNotFoundError):
                finished.append((done.stat().st_mtime, size, directory))
        dropped = 0
        for mtime, size, directory in sorted(finished, key=lambda entry: entry[0]):
            if now - mtime <= max_age_s and total_bytes <= max_bytes and count <= max_jobs:
                break
            shutil.rmtree(directory, ignore_errors=True)
            total_bytes -= size
            count -= 1
            dropped += 1
        if dropped:
            log.info("outbox: dropped %d finished job(s) never acknowledged", dropped)
        return dropped

    def size_bytes(self) -> int:
        """Bytes held by the outbox."""
        total = 0
        for directory, _, files in os.walk(self.directory):
            for name in files:
                with contextlib.suppress(FileNotFoundError):  # acknowledged meanwhile
                    total += os.stat(os.path.join(directory, name)).st_size
        return total

    def ack(self, job_id: str, cells: list[int], done: bool) -> None:
        """Forget acknowledged results; the whole job once its end is acknowledged."""
        directory = self._dir(job_id)
        with self._lock:
            held = self._unwritten.get(directory.name, {})
            for name in list(held) if done else [f"cell-{int(index)}.msgpack" for index in cells]:
                held.pop(name, None)
            if not held:
                self._unwritten.pop(directory.name, None)
        if done:
            shutil.rmtree(directory, ignore_errors=True)
            return
        for index in cells:
            with contextlib.suppress(OSError):
                (directory / f"cell-{int(index)}.msgpack").unlink(missing_ok=True)

    def recover(self) -> list[str]:
        """After a restart: end every unfinished job as interrupted; returns their ids."""
        interrupted = []
        for directory in sorted(self.directory.iterdir()):
            job_file = directory / "job.msgpack"
            if not job_file.exists() or (directory / "done.msgpack").exists():
                continue
            try:
                job = _job_decoder.decode(job_file.read_bytes())
            except (OSError, msgspec.DecodeError, msgspec.ValidationError) as exc:
                log.warning("outbox: dropping unreadable job %s: %s", directory.name, exc)
                shutil.rmtree(directory, ignore_errors=True)
                continue
            running = None
            with contextlib.suppress(OSError, ValueError):
                running = int((directory / "running").read_text())
            reason = (f"agent restarted while cell {running} was running" if running is not None
                      else "agent restarted before the job finished")
            self.put(JobDone(job_id=job.job_id, interrupted=reason))
            log.info("job %s: interrupted (%s); completed cells kept", job.job_id, reason)
            interrupted.append(job.job_id)
        return interrupted


def _name(result: Result) -> str:
    return f"cell-{result.index}.msgpack" if isinstance(result, CellDone) else "done.msgpack"


def _write(path: Path, data: bytes, sync: bool = True) -> None:
    tmp = path.with_name(path.name + ".tmp")
    try:
        with open(tmp, "wb") as f:
            f.write(data)
            if sync:
                f.flush()
                os.fsync(f.fileno())
        os.replace(tmp, path)
    except OSError:
        with contextlib.suppress(OSError):  # a full disk leaves no half-written file behind
            tmp.unlink(missing_ok=True)
        raise
    if sync:
        fd = os.open(path.parent, os.O_RDONLY)
        try:
            os.fsync(fd)
        finally:
            os.close(fd)
