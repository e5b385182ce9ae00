"""Which rounds were disturbed, and by what: judged from the device state each round records.

A round is disturbed when the device throttled or started hot, when the hypervisor
stole a noticeable share of CPU time, when the clock fell during the round, or when
other work competed with it noticeably more than with the other rounds of the same run:
its measuring threads waited longer for a CPU, or the rest of the machine kept more
cores busy. The last two tests are relative on purpose: a shared machine or a busy Pi
has steady background load that every round carries alike (it cannot bias a median, and
is reported as a fact instead: `busy_note`), while a transient burst hits a few rounds
and is what turns quiet nights into false alarms. The load average is recorded but not
judged: it lags by a minute.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Sequence
from typing import Optional

from agent.wire.records import Cell
from controller.analysis.stats import median_or_none

STEAL_LIMIT = 0.05        # share of all CPU time stolen by the hypervisor during the round
CLOCK_DROP = 0.10         # the clock at the end this much below the start
EXTRA_LOAD_CORES = 0.5    # other work this many cores above the run's typical round
EXTRA_WAIT = 0.15         # waited for a CPU this share of its runnable time more than the typical round
BUSY_WAIT = 0.25          # a typical round waiting this much: the machine was busy (reported)


def other_load(cell: Cell) -> Optional[float]:
    """Cores kept busy by other work during the round: busy share x CPUs - the cell's threads."""
    state = cell.device_state
    if state is None or state.cpu_busy_share is None or not state.cpu_count:
        return None
    return max(0.0, state.cpu_busy_share * state.cpu_count - cell.threads)


def _wait(cell: Cell) -> Optional[float]:
    return cell.device_state.cpu_wait_share if cell.device_state else None


def reasons(cell: Cell, typical_load: Optional[float], typical_wait: Optional[float] = None) -> list[str]:
    """Why a round counts as disturbed (empty when it does not); `typical_load` and
    `typical_wait` are the median `other_load` and wait share of the run's rounds of this cell."""
    state = cell.device_state
    if state is None:
        return []
    found = []
    if state.throttled:
        found.append("throttled")
    if state.cooled is False:
        found.append("started hot")
    if state.cpu_steal_share is not None and state.cpu_steal_share >= STEAL_LIMIT:
        found.append("CPU steal")
    start, end = state.cpu_freq_mhz_start, state.cpu_freq_mhz_end
    if start and end and end < start * (1 - CLOCK_DROP):
        found.append("clock fell")
    load = other_load(cell)
    if load is not None and typical_load is not None and load >= typical_load + EXTRA_LOAD_CORES:
        found.append("other load")
    wait = _wait(cell)
    if wait is not None and typical_wait is not None and wait >= typical_wait + EXTRA_WAIT:
        found.append("waited for a CPU")
    return found


def split(rounds: Sequence[Cell]) -> tuple[list[Cell], Counter[str]]:
    """The undisturbed rounds of one cell in one run, and how many rounds each reason hit."""
    typical = median_or_none([load for c in rounds if (load := other_load(c)) is not None])
    typical_wait = median_or_none([wait for c in rounds if (wait := _wait(c)) is not None])
    usable, counts = [], Counter()
    for cell in rounds:
        found = reasons(cell, typical, typical_wait)
        counts.update(found)
        if found:
            counts["rounds"] += 1
        else:
            usable.append(cell)
    return usable, counts


def describe(counts: Counter[str]) -> str:
    """`3 round(s): 2 other load, 1 CPU steal` for a Counter from `split`."""
    detail = ", ".join(f"{n} {reason}" for reason, n in counts.most_common() if reason != "rounds")
    return f"{counts['rounds']} round(s): {detail}"


def busy_note(rounds: Sequence[Cell]) -> Optional[str]:
    """A line when the typical round of these waited for a CPU much of the time (a busy machine)."""
    typical = median_or_none([wait for c in rounds if (wait := _wait(c)) is not None])
    if typical is None or typical < BUSY_WAIT:
        return None
    return f"busy machine: rounds waited for a CPU {typical:.0%} of the time they could run"
