"""Checks on a run's flags, profiles and database before any device is contacted.

Each problem is one line that names the flag or profile key at fault; the command turns it
into exit status 2. An agent would refuse most of these too, but only after models were
sent, and with its own field names rather than the flag the user typed.
"""

from __future__ import annotations

import math
import os
from collections.abc import Iterable
from pathlib import Path
from typing import Optional

from agent.wire.protocol import MAX_THREADS
from agent.wire.records import MAX_RUNS, MAX_SECONDS, Settings
from controller import profiles
from controller.profiles import Profile, ProfileError

# A thread count above this many per core is a typo, not an experiment.
THREADS_PER_CORE = 4
# The wire's own bounds (MAX_THREADS, MAX_RUNS, MAX_SECONDS) apply where a device's cores are
# not known yet; a run repeats its matrix at most this often.
MAX_ROUNDS = 10_000
SQLITE_MAGIC = b"SQLite format 3\x00"

# Settings field -> the flag that sets it.
FLAGS = {"warmup_runs": "--warmup-runs", "warmup_min_secs": "--warmup-min-secs", "num_runs": "--num-runs",
         "min_secs": "--min-secs", "max_secs": "--max-secs", "run_delay": "--run-delay"}


class UsageError(ValueError):
    """A flag, key or path the run cannot start with; the message names it."""


def check_settings(settings: Settings) -> None:
    """Finite, non-negative windows and counts; a timed phase that can take a sample."""
    for name in ("warmup_min_secs", "min_secs", "run_delay", "max_secs"):
        value = getattr(settings, name)
        if not math.isfinite(value) or not 0 <= value <= MAX_SECONDS:
            raise UsageError(f"{FLAGS[name]} must be a number of seconds from 0 to {MAX_SECONDS:.0f}, not {value}")
    if settings.max_secs <= 0:
        raise UsageError(f"--max-secs must be above 0 (it bounds the timed phase), not {settings.max_secs}")
    if settings.min_secs > settings.max_secs:
        raise UsageError(f"--min-secs {settings.min_secs} is above --max-secs {settings.max_secs}")
    if not 0 <= settings.warmup_runs <= MAX_RUNS:
        raise UsageError(f"--warmup-runs must be a count from 0 to {MAX_RUNS}, not {settings.warmup_runs}")
    if not 1 <= settings.num_runs <= MAX_RUNS:
        raise UsageError(f"--num-runs must be a count from 1 to {MAX_RUNS}, not {settings.num_runs}")


def check_threads(threads: Iterable[int], flag: str, cores: Optional[int]) -> None:
    """Thread counts from 1 to the device's cores times THREADS_PER_CORE (or MAX_THREADS)."""
    limit = cores * THREADS_PER_CORE if cores else MAX_THREADS
    for count in threads:
        if not 1 <= count <= limit:
            where = f"{cores} cores x {THREADS_PER_CORE}" if cores else "the largest device"
            raise UsageError(f"{flag}: {count} threads is outside 1 to {limit} ({where})")


def check_db(db: Optional[str]) -> None:
    """`--db` names a SQLite file (or where to create one), never a directory or another file."""
    if db is None or "://" in db:
        return  # database URLs are checked by the store that opens them
    path = Path(db)
    if path.is_dir():
        raise UsageError(f"--db {db} is a directory, not a database file")
    if path.exists():
        try:
            with open(path, "rb") as f:
                head = f.read(len(SQLITE_MAGIC))
        except OSError as exc:
            raise UsageError(f"--db {db}: {exc.strerror or exc}") from None
        if head and head != SQLITE_MAGIC:
            raise UsageError(f"--db {db} is not a SQLite database")
    elif not path.parent.is_dir() and str(path.parent) not in ("", "."):
        raise UsageError(f"--db {db}: directory {path.parent} does not exist")


def check_rounds(rounds: int) -> None:
    """`--rounds` from 1 to MAX_ROUNDS."""
    if not 1 <= rounds <= MAX_ROUNDS:
        raise UsageError(f"--rounds must be from 1 to {MAX_ROUNDS}, not {rounds}")


def check_job_timeout(seconds: Optional[float]) -> None:
    """`--job-timeout` a finite number of seconds above 0 (None: derived from the cells)."""
    if seconds is not None and (not math.isfinite(seconds) or not 0 < seconds <= MAX_SECONDS):
        raise UsageError(f"--job-timeout must be a number of seconds above 0 and at most {MAX_SECONDS:.0f}, "
                         f"not {seconds}")


def check_tolerance(points: float) -> None:
    """`--accuracy-tolerance` a finite number of top-1 points from 0 to 100."""
    if not math.isfinite(points) or not 0 <= points <= 100:
        raise UsageError(f"--accuracy-tolerance must be from 0 to 100 points, not {points}")


def load_profiles(devices: Iterable[str]) -> list[Profile]:
    """Every named profile, read and checked now: a broken one stops the run before it starts."""
    loaded = []
    for name in devices:
        try:
            profile = profiles.load(name)
            if profile.android is not None and profile.android.via != "local":
                profiles.load(profile.android.via)
        except ProfileError as exc:
            raise UsageError(str(exc)) from None
        loaded.append(profile)
    return loaded


def local_cores() -> Optional[int]:
    """Cores this process may use: the local agent measures on them."""
    try:
        return len(os.sched_getaffinity(0))
    except (AttributeError, OSError):
        return os.cpu_count()


def check_run(devices: list[str], threads: Optional[list[int]], settings: Settings, rounds: int,
              tolerance_points: Optional[float], db: Optional[str]) -> list[Profile]:
    """Everything a run's flags and profiles say, checked; returns the loaded profiles.

    `tolerance_points` None: the command has no accuracy tolerance to check.
    """
    check_settings(settings)
    check_rounds(rounds)
    if tolerance_points is not None:
        check_tolerance(tolerance_points)
    check_db(db)
    loaded = load_profiles(devices)
    for profile in loaded:
        cores = local_cores() if profile.transport == "local" else None
        if threads:
            check_threads(threads, "--threads", cores)
        else:
            check_threads(profile.threads, f"{profile.path}: threads", cores)
    return loaded
