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
"""

from __future__ import annotations

import contextlib
import hashlib
import logging
import os
import shutil
from pathlib import Path
from typing import Optional, Union

import msgspec

from agent.wire.protocol import CellDone, JobDone, RunJob

log = logging.getLogger("edgebench.agent")

Result = Union[CellDone, JobDone]
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

    def put(self, result: Result) -> None:
        """Persist a result before it is sent."""
        directory = self._dir(result.job_id)
        if not directory.is_dir():
            return  # acknowledged as done already (a late duplicate)
        name = f"cell-{result.index}.msgpack" if isinstance(result, CellDone) else "done.msgpack"
        _write(directory / name, msgspec.msgpack.encode(result))
        if isinstance(result, JobDone):
            (directory / "running").unlink(missing_ok=True)

    def pending(self, job_id: str) -> list[Result]:
        """Unacknowledged results of a job, cells in index order, then the JobDone if any."""
        directory = self._dir(job_id)
        cells: list[CellDone] = []
        done: Optional[JobDone] = None
        for path in directory.glob("*.msgpack"):
            if path.name == "job.msgpack":
                continue
            try:
                result = _result_decoder.decode(path.read_bytes())
            except (OSError, msgspec.DecodeError, msgspec.ValidationError) as exc:
                log.warning("outbox: dropping unreadable %s: %s", path, exc)
                path.unlink(missing_ok=True)
                continue
            if isinstance(result, JobDone):
                done = result
            else:
                cells.append(result)
        cells.sort(key=lambda c: c.index)
        return [*cells, *([done] if done else [])]

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
