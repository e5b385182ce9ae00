"""How much a cell's value moves from run to run on its device, read from its own history.

The rounds of one run are fresh processes, but of one session: they cannot show what changes
between sessions (page cache, CPU frequency, neighbours, a reboot). A comparison of two
separately measured runs must include that noise, and only a cell's history shows it.

The estimate is robust: the median absolute deviation of the run-to-run changes of the run
values (log scale), so that a step or one odd night is not taken for noise. It is reported
with an upper confidence bound, which is what comparisons use: a short history that agrees by
chance must not pass for a quiet device.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Optional

import msgspec
import numpy as np

# Fewer runs than this cannot say how a cell moves between runs.
MIN_RUNS = 5
# The newest runs the estimate reads: the device as it is now.
WINDOW = 30
# The confidence of the upper bound comparisons use.
BOUND_CONFIDENCE = 0.90
# The MAD of normal data times this is its standard deviation.
_MAD_TO_SD = 1.4826


class RunNoise(msgspec.Struct, frozen=True, kw_only=True):
    """A cell's run-to-run noise: the standard deviation of one run's value (log scale, so
    0.05 is about 5 %) as estimated, and its upper bound (what comparisons of two runs use),
    from `runs` runs. `controller history --json` shows it as is."""

    estimate: float
    upper: float
    runs: int


def run_noise(values: Sequence[float]) -> Optional[RunNoise]:
    """The run-to-run noise of a cell's run values (oldest first; the newest WINDOW count),
    or None with fewer than MIN_RUNS positive values."""
    series = np.asarray([v for v in values if v and v > 0][-WINDOW:], dtype=float)
    if series.size < MIN_RUNS:
        return None
    changes = np.diff(np.log(series))
    # A change between two runs has twice the variance of one run's value.
    estimate = float(_MAD_TO_SD * np.median(np.abs(changes - np.median(changes))) / math.sqrt(2))
    from scipy import stats  # a heavy import: only for the commands that judge

    freedom = changes.size
    upper = estimate * math.sqrt(freedom / stats.chi2.ppf(1 - BOUND_CONFIDENCE, freedom))
    return RunNoise(estimate=round(estimate, 4), upper=round(upper, 4), runs=int(series.size))
