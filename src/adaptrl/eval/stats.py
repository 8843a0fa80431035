"""Confidence intervals for reported means."""

from __future__ import annotations

import math
from collections.abc import Sequence

import numpy as np
from scipy import stats


def mean_ci(values: Sequence[float] | np.ndarray, confidence: float = 0.95) -> tuple[float, float]:
    """Mean and the half-width of its Student-t confidence interval.

    With fewer than two values the half-width is ``inf``: one number has no interval.
    """
    x = np.asarray(values, dtype=np.float64).ravel()
    if x.size == 0:
        raise ValueError("mean_ci needs at least one value")
    mean = float(x.mean())
    if x.size < 2:
        return mean, math.inf
    sem = float(x.std(ddof=1)) / math.sqrt(x.size)
    return mean, float(stats.t.ppf(0.5 + confidence / 2, df=x.size - 1)) * sem


def within(ours: float, half_width: float, reference: float, rel_tol: float = 0.01) -> bool:
    """Whether ``reference`` lies inside our CI or within ``rel_tol`` of our mean."""
    return abs(ours - reference) <= max(half_width, rel_tol * abs(reference))
