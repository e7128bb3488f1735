"""Numeric helpers every metric family shares: means, deviations, sums, runs, safe division.

Most are NumPy's own reductions (np.add.reduce, np.maximum.reduce) called directly: the
wrappers of np.mean / np.max cost more than the work on a few hundred values, and the
results are the same bit for bit, which the exactness tests against backtesting.py and
empyrical rely on.
"""

from __future__ import annotations

import math
import sys

import numpy as np


def geometric_mean(returns: np.ndarray) -> float:
    """Per-period compounded mean; 0 when any return is <= -100 % (backtesting.py)."""
    growth = returns + 1
    if len(growth) and np.minimum.reduce(growth) > 0:   # the usual case: NaN fails this too
        total = np.add.reduce(np.log(growth))
        if math.isfinite(total):           # so every return was finite: the same sum
            return math.exp(total / len(growth)) - 1
    # nan_to_num (NaN -> 0, inf -> the largest float) only when needed: it is the slow part.
    growth = (returns if np.isfinite(returns).all() else np.nan_to_num(returns, nan=0.0)) + 1
    if np.any(growth <= 0):
        return 0.0
    return math.exp(np.log(growth).sum() / (len(growth) or np.nan)) - 1


class GrowthLogs:
    """log(1 + returns) computed once, for the geometric mean of the returns and of subsets
    of them (benchmark captures): the same sums as geometric_mean, with one log in all."""

    def __init__(self, returns: np.ndarray):
        self.returns = returns
        self.logs = returns + 1
        np.log(self.logs, out=self.logs)   # (under compute_metrics' np.errstate)

    def geometric_mean(self, select: np.ndarray | None = None) -> float:
        """geometric_mean(returns[select]) (all of them without select); select is an
        index array (take() costs less than fancy indexing)."""
        logs = self.logs if select is None else self.logs.take(select)
        if len(logs):
            total = np.add.reduce(logs)
            # Finite only when every 1 + return was positive and finite: geometric_mean's
            # own fast path, on the same values in the same order.
            if math.isfinite(total):
                return math.exp(total / len(logs)) - 1
        return geometric_mean(self.returns if select is None else self.returns.take(select))


def safe_div(numerator: float, denominator: float) -> float:
    """numerator / denominator; NaN when the denominator is 0 or NaN (never inf).

    backtesting.py writes this `x / (y or np.nan)`.
    """
    if not denominator or math.isnan(denominator):
        return math.nan
    return float(numerator / denominator)


def mean(values: np.ndarray) -> float:
    """np.mean (a float64 sum / count, bit for bit) without its Python overhead."""
    n = len(values)
    return float(np.add.reduce(values, dtype=np.float64) / n) if n else math.nan


def std(values: np.ndarray) -> float:
    """Sample standard deviation (ddof 1), pandas' default; NaN below two values.

    Exactly 0 for identical values (as empyrical): the mean's rounding would leave ~1e-18
    and turn a ratio over it into a huge number instead of undefined.
    """
    n = len(values)
    if n < 2:
        return math.nan
    if np.maximum.reduce(values) == np.minimum.reduce(values):
        return 0.0
    return float(np.sqrt(sample_variance(values)))


def mean_and_std(values: np.ndarray) -> tuple[float, float]:
    """(mean(values), std(values)), the variance's deviations taken from mean's own sum."""
    n = len(values)
    if n < 2:
        return mean(values), math.nan
    values_sum = np.add.reduce(values)
    if np.maximum.reduce(values) == np.minimum.reduce(values):
        return float(values_sum / n), 0.0
    dev = values - values_sum / n   # sample_variance's steps
    np.multiply(dev, dev, out=dev)
    return float(values_sum / n), float(np.sqrt(np.add.reduce(dev) / (n - 1)))


def sample_variance(values: np.ndarray) -> np.float64:
    """values.var(ddof=1) step for step (sum / n, squared deviations, sum / (n - 1)), without
    the method's wrapper; n >= 2."""
    dev = values - np.add.reduce(values, dtype=np.float64) / len(values)
    np.multiply(dev, dev, out=dev)
    return np.add.reduce(dev) / (len(values) - 1)


# The ufuncs' reduce directly: np.max / np.min's wrappers cost more than the work on a few
# hundred values (the same result).
def maximum(values: np.ndarray) -> float:
    """Largest value; NaN for none."""
    return float(np.maximum.reduce(values)) if len(values) else math.nan


def minimum(values: np.ndarray) -> float:
    """Smallest value; NaN for none."""
    return float(np.minimum.reduce(values)) if len(values) else math.nan


def total(values: np.ndarray) -> float:
    """values.sum() (the same pairwise float64 sum) without the method's wrapper."""
    return np.add.reduce(values)


def runs(mask: np.ndarray, negate: bool = False) -> tuple[np.ndarray, np.ndarray]:
    """Start and end (exclusive) index of every run of True in mask (of False if negate)."""
    padded = np.zeros(len(mask) + 2, dtype=bool)
    if negate:
        np.logical_not(mask, out=padded[1:-1])
    else:
        padded[1:-1] = mask
    # Edges alternate, a start first: False -> True at a start, True -> False at an end.
    edges = (padded[1:] != padded[:-1]).nonzero()[0]
    return edges[::2], edges[1::2]


def longest_run(mask: np.ndarray) -> int:
    """Length of the longest run of True in mask (0 for none)."""
    starts, ends = runs(mask)
    return int(np.maximum.reduce(ends - starts)) if len(starts) else 0



def nan_to_num(value: float) -> float:
    """np.nan_to_num of one float (NaN -> 0, ±inf -> ±the largest float), minus its overhead."""
    value = float(value)
    if math.isnan(value):
        return 0.0
    if math.isinf(value):
        return math.copysign(sys.float_info.max, value)
    return value



def central_moments(returns: np.ndarray, average: float | None = None
                    ) -> tuple[float, float, float]:
    """m2, m3, m4 of returns around their mean; average: mean(returns) if already computed."""
    if not len(returns):
        return 0.0, 0.0, 0.0
    d = returns - (mean(returns) if average is None else average)
    d2 = d * d
    return moments_of(d, d2, mean(d2), maximum(np.abs(returns)))


def moments_of(d: np.ndarray, d2: np.ndarray, m2: float, largest: float
               ) -> tuple[float, float, float]:
    """m2, m3, m4 from the deviations d, their squares d2, mean(d2) and max |return|."""
    # Constant returns leave rounding noise (std ~1e-18) that would blow up m3 / m2^1.5.
    if m2 <= (1e-15 * largest) ** 2:
        return 0.0, 0.0, 0.0
    return m2, mean(d2 * d), mean(d2 * d2)
