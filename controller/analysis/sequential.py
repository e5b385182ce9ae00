"""The sequential design of more rounds: when to look, at what confidence, within a budget.

A cell is looked at after the stored runs and then after each batch of extra rounds. The
looks come at doubling sample sizes (`batch`, 2 x `batch`, 4 x `batch`, ... extra rounds
per side, the last at `more_rounds`), so a cell that needs many rounds gets them in few
looks while a clear one is decided after the first batch. Every look uses the
Bonferroni-corrected confidence over all planned looks (`verdicts.corrected_confidence`):
the chance that any look's interval misses the true change stays within 5 %, whichever
looks are taken, skipped or cut short by the budget. `controller.sessions` measures them.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

from controller.analysis.verdicts import corrected_confidence

DEFAULT_BATCH = 5
DEFAULT_MAX_DEVICE_SECONDS = 300.0


@dataclass(frozen=True)
class Plan:
    """How many extra rounds each undecided cell may get, at which looks, within a budget."""

    more_rounds: int = 0
    batch: int = DEFAULT_BATCH  # extra rounds per side before the first look at them
    max_device_seconds: float = DEFAULT_MAX_DEVICE_SECONDS

    def __post_init__(self) -> None:
        if self.more_rounds < 0 or self.batch < 1:
            raise ValueError(f"more rounds must be >= 0 and the first batch >= 1, got {self.more_rounds} "
                             f"and {self.batch}")

    @property
    def schedule(self) -> tuple[int, ...]:
        """Extra rounds per side measured by each look after the first, cumulative: `batch`,
        then twice the rounds so far at each look, the last one capped at `more_rounds`."""
        marks: list[int] = []
        while (marks[-1] if marks else 0) < self.more_rounds:
            marks.append(min(2 * marks[-1] if marks else self.batch, self.more_rounds))
        return tuple(marks)

    @property
    def looks(self) -> int:
        """Planned looks: the first (what is stored) and one at each mark of the schedule."""
        return 1 + len(self.schedule)

    @property
    def confidence(self) -> float:
        """The confidence of every look's interval."""
        return corrected_confidence(self.looks)


def rounds_within(budget_seconds: float, seconds_per_round: float, sides: int, wanted: int) -> int:
    """How many of `wanted` rounds per side fit in what is left of the budget, when one round
    of one side of one cell costs `seconds_per_round` and `sides` cell-sides are open."""
    if sides <= 0 or seconds_per_round <= 0:
        return wanted
    return max(0, min(wanted, math.floor(budget_seconds / (seconds_per_round * sides))))


def out_of_reach(estimate: float, low: float, high: float, threshold: float, pairs: int, more: int) -> bool:
    """Whether `more` rounds beyond the `pairs` measured cannot be expected to decide a change.

    The interval is projected to narrow as one over the square root of the rounds; a change
    whose estimate stays within half that projected half-width of +-`threshold` would still
    straddle it after every remaining round, so measuring it further only spends the budget
    the other cells need. Giving up leaves the cell INCONCLUSIVE: it never makes a verdict.
    """
    if pairs <= 0:
        return False
    projected = (high - low) / 2 * math.sqrt(pairs / (pairs + more))
    return min(abs(estimate - threshold), abs(estimate + threshold)) < projected / 2
