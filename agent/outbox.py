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
"""

from __future__ import annotations

import contextlib
import hashlib
import logging
import os
import shutil
import time
from pathlib import Path
from typing import Optional, Union

import msgspec

from agent.wire.protocol import CellDone, JobDone, RunJob

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

    def _dir(self, job_id: str) -> Path:
        return self.directory / hashlib.sha256(job_id.encode()).hexdigest()[:32]

    def known(self, job_id: str) -> bool:
        """True while the agent holds an accepted job of this id (running, queued or unacknowledged)."""
        return (self._dir(job_id) / "job.msgpack").exists()

    def accept(self, job: RunJob) -> None:
        """Record an accepted job before it runs."""
        directory = self._dir(job.job_id)
        directory.mkdir(exist_ok=True)
        _write(directory / "job.msgpack", msgspec.msgpack.encode(job))

    def started(self, job_id: str, index: int) -> None:
        """Note the cell being measured, so a restart can say where the job stopped."""
        _write(self._dir(job_id) / "running", str(index).encode(), sync=False)

    def put(self, result: Result) -> Optional[str]:
        """Persist a result before it is sent; returns its file name (None: job gone)."""
        directory = self._dir(result.job_id)
        if not directory.is_dir():
            return None  # acknowledged as done already (a late duplicate)
        name = f"cell-{result.index}.msgpack" if isinstance(result, CellDone) else "done.msgpack"
        _write(directory / name, msgspec.msgpack.encode(result))
        if isinstance(result, JobDone):
            (directory / "running").unlink(missing_ok=True)
        return name

    def pending(self, job_id: str) -> list[Result]:
        """Unacknowledged results of a job, cells in index order, then the JobDone if any."""
        return [result for path in self.pending_paths(job_id) if (result := self.read(path)) is not None]

    def pending_paths(self, job_id: str) -> list[Path]:
        """Files of a job's unacknowledged results, cells in index order, then the JobDone."""
        directory = self._dir(job_id)
        cells = []
        for path in directory.glob("cell-*.msgpack"):
            with contextlib.suppress(ValueError):
                cells.append((int(path.stem.removeprefix("cell-")), path))
        done = directory / "done.msgpack"
        return [path for _, path in sorted(cells)] + ([done] if done.exists() else [])

    def read(self, path: Path) -> Optional[Result]:
        """One stored result; None (and the file dropped) when it is unreadable or gone."""
        try:
            return _result_decoder.decode(path.read_bytes())
        except FileNotFoundError:
            return None  # acknowledged meanwhile
        except (OSError, msgspec.DecodeError, msgspec.ValidationError) as exc:
            log.warning("outbox: dropping unreadable %s: %s", path, exc)
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
        if done:
            shutil.rmtree(directory, ignore_errors=True)
            return
        for index in cells:
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


def _write(path: Path, data: bytes, sync: bool = True) -> None:
    tmp = path.with_name(path.name + ".tmp")
    with open(tmp, "wb") as f:
        f.write(data)
        if sync:
            f.flush()
            os.fsync(f.fileno())
    os.replace(tmp, path)
    if sync:
        fd = os.open(path.parent, os.O_RDONLY)
        try:
            os.fsync(fd)
        finally:
            os.close(fd)
