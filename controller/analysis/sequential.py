"""The sequential design of more rounds: how many, in which batches, at what confidence.

A cell is looked at after the stored runs and after each batch of extra rounds, at most
`looks` times in all; every look uses the Bonferroni-corrected confidence
(`verdicts.corrected_confidence`), so the chance that any look's interval misses the true
change stays within 5 %. `controller.sessions` measures the batches.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

from controller.analysis.verdicts import corrected_confidence

DEFAULT_BATCH = 5
DEFAULT_MAX_DEVICE_SECONDS = 300.0


@dataclass(frozen=True)
class Plan:
    """How many extra rounds each undecided cell may get, in batches, within a budget."""

    more_rounds: int = 0
    batch: int = DEFAULT_BATCH
    max_device_seconds: float = DEFAULT_MAX_DEVICE_SECONDS

    @property
    def looks(self) -> int:
        """Planned looks: the first (what is stored) and one after each batch."""
        return 1 + math.ceil(self.more_rounds / self.batch) if self.more_rounds > 0 else 1

    @property
    def confidence(self) -> float:
        """The confidence of every look's interval."""
        return corrected_confidence(self.looks)
