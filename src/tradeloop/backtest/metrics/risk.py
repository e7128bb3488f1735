"""Risk and risk-adjusted metrics: volatility, downside deviation, tails, moments, ratios."""

from __future__ import annotations

import math
from functools import lru_cache
from typing import TYPE_CHECKING, Any

import numpy as np

from tradeloop.backtest.metrics.numeric import (
    central_moments,
    geometric_mean,
    mean,
    minimum,
    safe_div,
    sample_variance,
    std,
    total,
)

if TYPE_CHECKING:
    from tradeloop.backtest.metrics.curve import Curve


def annualized_volatility(returns: np.ndarray, ppy: int, geo_mean: float | None = None,
                          var: np.float64 | None = None) -> float:
    """Volatility of the compounded annual return (backtesting.py, SSRN 3054517), fraction.

    geo_mean and var: geometric_mean(returns) and returns.var(ddof=1) if already computed."""
    if len(returns) < 2:
        return math.nan
    growth = 1 + (geometric_mean(returns) if geo_mean is None else geo_mean)
    if var is None:
        var = sample_variance(returns)
    try:
        growth_2ppy = growth ** (2 * ppy)
    except OverflowError:   # inf - inf below: undefined
        return math.nan
    # Rounding can make a zero-variance square slightly negative: NaN there, like backtesting.py.
    return float(np.sqrt((var + growth**2) ** ppy - growth_2ppy))


def downside_deviation(returns: np.ndarray, ppy: int) -> float:
    """sqrt(mean(min(r, 0)^2) x periods): empyrical.downside_risk, backtesting.py's Sortino."""
    if not len(returns):
        return math.nan
    return math.sqrt(mean(np.minimum(returns, 0) ** 2)) * math.sqrt(ppy)


def arithmetic_sharpe(returns: np.ndarray, ppy: int,
                      moments: tuple[float, float] | None = None) -> float:
    """mean / sample std x sqrt(periods): empyrical.sharpe_ratio with risk-free 0.

    moments: (mean(returns), std(returns)) if already computed."""
    average, deviation = moments or (mean(returns), std(returns))
    return safe_div(average, deviation) * math.sqrt(ppy)


def skewness(returns: np.ndarray,
             moments: tuple[float, float, float] | None = None) -> float:
    """Adjusted Fisher-Pearson skewness G1 (pandas' Series.skew, scipy's bias=False).

    moments: central_moments(returns) if already computed."""
    n = len(returns)
    m2, m3, _ = moments or central_moments(returns)
    if n < 3 or not m2:
        return math.nan
    return m3 / m2**1.5 * math.sqrt(n * (n - 1)) / (n - 2)


def excess_kurtosis(returns: np.ndarray,
                    moments: tuple[float, float, float] | None = None) -> float:
    """Bias-corrected excess kurtosis G2 (pandas' Series.kurt, scipy's bias=False).

    moments: central_moments(returns) if already computed."""
    n = len(returns)
    m2, _, m4 = moments or central_moments(returns)
    if n < 4 or not m2:
        return math.nan
    g2 = m4 / m2**2 - 3
    return ((n + 1) * g2 + 6) * (n - 1) / ((n - 2) * (n - 3))


def omega_ratio(returns: np.ndarray, gains: np.ndarray | None = None,
                losses: np.ndarray | None = None) -> float:
    """Sum of gains / sum of losses around 0: empyrical.omega_ratio, required return 0.

    gains and losses: the index of the returns > 0 and < 0 if already found."""
    if len(returns) < 2:
        return math.nan
    if gains is None or losses is None:
        gains, losses = (returns > 0).nonzero()[0], (returns < 0).nonzero()[0]
    # take() of an index: the same values as returns[returns > 0] at half the cost.
    return safe_div(total(returns.take(gains)), -total(returns.take(losses)))


def tail_statistics(returns: np.ndarray) -> tuple[float, float, float]:
    """Historical VaR (the 5th percentile, linear interpolation), tail ratio (|95th| / |5th|
    percentile) and CVaR (mean of the int((n - 1) x 0.05) + 1 worst returns) of returns, as
    empyrical defines them, from partitions instead of np.percentile's machinery
    (np.percentile's linear interpolation, operation for operation, on the same order
    statistics: the same numbers)."""
    n = len(returns)
    if not n:
        return math.nan, math.nan, math.nan
    k = int((n - 1) * 0.05)
    part = np.partition(returns, k)
    cvar = mean(part[: k + 1])
    wanted = sorted({i for q in (0.05, 0.95) for i in _neighbours(n, q)} - {k})
    stats = {k: float(part[k])}
    # Every wanted order statistic is above k, so among part[k + 1:].
    found = _order_statistics(part[k + 1:], [i - k - 1 for i in wanted])
    stats.update(zip(wanted, found, strict=True))
    lower, high = (_lerp_percentile(stats, n, q) for q in (0.05, 0.95))
    return lower, safe_div(abs(high), abs(lower)), cvar


def _order_statistics(values: np.ndarray, positions: list[int]) -> list[float]:
    """The values at the ascending positions of sorted(values), as np.partition(values,
    positions) would place them: one partition per gap between positions (numpy's
    multi-kth partition costs three single ones), and the minimum of what lies above for a
    position that directly follows the last one found."""
    found: list[float] = []
    rest, offset = values, 0     # rest holds the order statistics offset, offset + 1, ...
    for position in positions:
        if position == offset:
            found.append(float(np.minimum.reduce(rest)))
            continue
        part = np.partition(rest, position - offset)
        found.append(float(part[position - offset]))
        rest, offset = part[position - offset + 1:], position + 1
    return found


def _neighbours(n: int, q: float) -> tuple[int, int]:
    """The order statistics np.percentile interpolates between for quantile q of n values."""
    virtual = (n - 1) * q
    if virtual >= n - 1:
        return n - 1, n - 1
    below = math.floor(virtual)
    return below, below + 1


def _lerp_percentile(stats: dict[int, float], n: int, q: float) -> float:
    """numpy's _lerp(a, b, gamma) for quantile q, from the order statistics in stats."""
    virtual = (n - 1) * q
    below, above = _neighbours(n, q)
    a, b = stats[below], stats[above]
    gamma = virtual - (-1 if virtual >= n - 1 else below)
    diff = b - a
    return b - diff * (1 - gamma) if gamma >= 0.5 else a + diff * gamma


def stability(returns: np.ndarray, lowest: float | None = None) -> float:
    """R^2 of cumulative log returns regressed on time: empyrical.stability_of_timeseries.

    lowest: min(returns) if already known (returns are NaN-free)."""
    if len(returns) < 2:
        return math.nan
    if (minimum(returns) if lowest is None else lowest) <= -1:
        return math.nan
    y = np.log1p(returns).cumsum()
    x_dev, ss_x = _time_deviations(len(y))
    y_dev = y - mean(y)
    ss_y = float(y_dev @ y_dev)
    return safe_div(float(x_dev @ y_dev) ** 2, ss_x * ss_y) if ss_y else math.nan


@lru_cache(maxsize=8)
def _time_deviations(n: int) -> tuple[np.ndarray, float]:
    """x - mean(x) and its sum of squares for x = 0, 1, ..., n - 1, stability's regressor.

    The same for every run of a length (a sweep's runs share theirs), so kept; read-only."""
    x = np.arange(n, dtype=float)
    x_dev = x - mean(x)
    x_dev.flags.writeable = False
    return x_dev, float(x_dev @ x_dev)

def risk_metrics(c: Curve) -> dict[str, Any]:
    """The risk category (and the tail ratio) from the period returns."""
    r = c.returns
    var_95, tail, cvar_95 = tail_statistics(r)
    moments = c.r.moments()
    return {
        "tail_ratio": tail,   # a risk-adjusted metric, from the same percentiles as the VaR
        "volatility_ann_pct": annualized_volatility(
            r, c.ppy, c.geo_mean, c.r.variance if len(r) > 1 else None) * 100,
        "volatility_daily_pct": c.r.std * 100,
        "downside_deviation_ann_pct": downside_deviation(r, c.ppy) * 100,
        "var_95_pct": var_95 * 100, "cvar_95_pct": cvar_95 * 100,
        "skew": skewness(r, moments), "kurtosis": excess_kurtosis(r, moments),
    }


def risk_adjusted_metrics(c: Curve, m: dict[str, Any]) -> dict[str, Any]:
    """Ratios over the already computed returns, risk and drawdown values in m."""
    r = c.r
    annual = m["return_ann_pct"] / 100
    arithmetic_annual = r.mean * c.ppy
    return {
        # backtesting.py: `x / (y or nan)`; a zero denominator is undefined.
        "sharpe_ratio": safe_div(m["return_ann_pct"], m["volatility_ann_pct"]),
        "sortino_ratio": safe_div(annual, m["downside_deviation_ann_pct"] / 100),
        "calmar_ratio": safe_div(annual, -m["max_drawdown_pct"] / 100),
        "sharpe_ratio_arithmetic": arithmetic_sharpe(r.values, c.ppy, (r.mean, r.std)),
        "sortino_ratio_arithmetic": safe_div(arithmetic_annual,
                                              m["downside_deviation_ann_pct"] / 100),
        "omega_ratio": omega_ratio(r.values, r.gains, r.losses),
        "stability": stability(r.values, r.low),
        "recovery_factor": safe_div(m["net_profit"], -m["max_drawdown_cash"]),
    }


