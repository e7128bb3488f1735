"""Return metrics: period returns, annual and calendar-time growth, best and worst periods."""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import numpy as np

from tradeloop.backtest.metrics.calendar import month_and_year_ends, span_years
from tradeloop.backtest.metrics.numeric import (
    GrowthLogs,
    geometric_mean,
    maximum,
    minimum,
    moments_of,
)

if TYPE_CHECKING:
    from tradeloop.backtest.metrics.curve import Curve


def returns_and_sum(values: np.ndarray) -> tuple[np.ndarray, np.float64]:
    """simple_returns(values) and their np.add.reduce, which also tells whether there is a
    NaN to drop (a sum is NaN if any term is; inf - inf too, then a NaN scan decides)."""
    returns = values[1:] / values[:-1] - 1
    returns_sum = np.add.reduce(returns)
    if math.isnan(returns_sum):
        returns = simple_returns(values)
        returns_sum = np.add.reduce(returns)
    return returns, returns_sum


def simple_returns(values: np.ndarray) -> np.ndarray:
    """values[i] / values[i - 1] - 1, NaN (0 / 0) dropped like pandas' pct_change().dropna()."""
    returns = values[1:] / values[:-1] - 1
    missing = np.isnan(returns)
    return returns[~missing] if np.logical_or.reduce(missing) else returns


def annualized_return(returns: np.ndarray, ppy: int, geo_mean: float | None = None) -> float:
    """(1 + geometric mean) ** periods - 1: equals empyrical.annual_return.

    NaN (undefined) when it overflows a float, which only extreme synthetic curves reach.
    geo_mean: geometric_mean(returns) if already computed.
    """
    if geo_mean is None:
        geo_mean = geometric_mean(returns)
    try:
        return (1 + geo_mean) ** ppy - 1
    except OverflowError:
        return math.nan


def annualized_growth(values: np.ndarray, ppy: int) -> float:
    """annualized_return(simple_returns(values), ppy) of a curve's values per period.

    For a positive, finite curve the geometric mean return telescopes to (last / first) **
    (1 / periods) - 1, empyrical.annual_return's own formula: a few scalar operations where
    the returns would cost a dozen passes over the curve. Any other curve takes the returns.
    """
    periods = len(values) - 1
    if periods > 0 and np.minimum.reduce(values) > 0 and math.isfinite(np.add.reduce(values)):
        return float((values[-1] / values[0]) ** (ppy / periods)) - 1   # inf: undefined
    return annualized_return(simple_returns(values), ppy)


def cagr(equity_initial: float, equity_final: float, duration_ns: int) -> float:
    """Calendar-time growth rate; years = (days + seconds / 86400) / 365.25 (backtesting.py)."""
    years = span_years(duration_ns)
    if not years or equity_initial == 0:
        return math.nan
    # inf (undefined: None) past the float range; the caller silences numpy's warning.
    return float(np.power(equity_final / equity_initial, 1 / years)) - 1


@dataclass(frozen=True)
class Returns:
    """Period returns and the reductions several metrics share, each computed once: mean,
    sample_variance and central_moments subtract the same mean and square the same
    deviations, so they share them (the same operations on the same values)."""

    values: np.ndarray       # NaN-free
    mean: float              # mean(values)
    high: float              # max(values), NaN without values
    low: float               # min(values)
    deviations: np.ndarray   # values - mean
    squares: np.ndarray      # deviations ** 2
    sum_squares: np.float64  # np.add.reduce(squares); a NumPy float: powers overflow to inf
    gains: np.ndarray        # index of the values > 0
    losses: np.ndarray       # index of the values < 0
    growth: GrowthLogs       # log(1 + values), for geometric means

    @classmethod
    def of(cls, values: np.ndarray, values_sum: np.float64 | None = None) -> Returns:
        """values_sum: np.add.reduce(values) if already computed."""
        n = len(values)
        if values_sum is None:
            values_sum = np.add.reduce(values)
        average = float(values_sum / n) if n else math.nan   # mean(values)
        deviations = values - average
        squares = deviations * deviations
        return cls(values, average, maximum(values), minimum(values), deviations, squares,
                   np.add.reduce(squares), (values > 0).nonzero()[0],
                   (values < 0).nonzero()[0], GrowthLogs(values))

    @property
    def variance(self) -> np.float64:
        """values.var(ddof=1), sample_variance's value (n >= 2)."""
        return self.sum_squares / (len(self.values) - 1)

    @property
    def std(self) -> float:
        """std(values): NaN below two values, exactly 0 for identical ones."""
        if len(self.values) < 2:
            return math.nan
        if self.high == self.low:
            return 0.0
        return float(np.sqrt(self.variance))

    def moments(self) -> tuple[float, float, float]:
        """central_moments(values, mean)."""
        n = len(self.values)
        if not n:
            return 0.0, 0.0, 0.0
        largest = max(abs(self.high), abs(self.low))   # max |value|: NaN-free values
        return moments_of(self.deviations, self.squares, float(self.sum_squares / n),
                           largest)


def return_metrics(c: Curve) -> dict[str, Any]:
    """Equity at the ends and peak, total, annual and calendar-time (CAGR) returns."""
    first, last = c.equity[0], c.equity[-1]
    return {
        "equity_initial": first, "equity_final": last, "equity_peak": c.equity_peak,
        "net_profit": last - first, "return_pct": (last - first) / first * 100,
        "return_ann_pct": annualized_return(c.returns, c.ppy, c.geo_mean) * 100,
        "cagr_pct": cagr(first, last, c.duration_ns) * 100,
    }


def calendar_return_metrics(c: Curve) -> dict[str, Any]:
    """Best/worst day from the period returns; months and years chain from the first bar."""
    r = c.r
    # The last bar of a month or year is the last bar of its last day.
    month, year = month_and_year_ends(c.ts)
    best_month, worst_month = _best_and_worst_return(c.equity, month)
    best_year, worst_year = _best_and_worst_return(c.equity, year)
    n = len(r.values)
    return {
        "avg_daily_return_pct": r.mean * 100,
        "positive_days_pct": (len(r.gains) / n if n else math.nan) * 100,   # mean(r > 0)
        "best_day_pct": r.high * 100, "worst_day_pct": r.low * 100,
        "best_month_pct": best_month * 100, "worst_month_pct": worst_month * 100,
        "best_year_pct": best_year * 100, "worst_year_pct": worst_year * 100,
    }


def _best_and_worst_return(equity: np.ndarray, ends: np.ndarray) -> tuple[float, float]:
    """Highest and lowest of simple_returns(equity at the first bar and at ends).

    np.fmax / np.fmin skip the NaN returns (0 / 0) that simple_returns would drop: the same
    extremes without finding and dropping them (NaN only when every return is NaN)."""
    values = np.concatenate((equity[:1], equity.take(ends)))
    returns = values[1:] / values[:-1] - 1
    if not len(returns):
        return math.nan, math.nan
    return float(np.fmax.reduce(returns)), float(np.fmin.reduce(returns))


