"""Performance metrics of one backtest, computed from the arrays of a BacktestOutput.

backtesting.py 0.6.6's ``compute_stats`` (backtesting/_stats.py) is the reference: every metric
it also reports keeps its definition, sign and scale (percentages x 100, drawdowns negative)
and equals its value to floating-point noise. docs/metrics.md lists every metric.

Conventions:

* Annualisation: the bar equity is resampled to its last value per calendar day (UTC) and
  those day-to-day returns are annualised with 252 periods a year, or 365 when the bars have
  weekends (more than 60 % of a 7-day week's share on Saturday/Sunday, i.e. crypto).
  Weekly, monthly and yearly bars resample to weeks/months/years with 52/12/1 periods instead.
  The bar spacing is the median spacing of the last 100 bars. All of this is backtesting.py's
  rule; "period returns" below means these (daily, for daily and intraday bars).
* Annual return and volatility are geometric (compounded), as in backtesting.py; the
  ``*_arithmetic`` ratios and the benchmark ratios use empyrical's arithmetic mean and sample
  standard deviation.
* Risk-free rate and required return are 0.
* Benchmark: equal-weight buy & hold of every symbol in ``benchmark_close``, each bought at
  its first finite close from its ``benchmark_start`` bar on (the end of the indicators'
  warm-up; cash before it); buy & hold return is the mean of the symbols' returns. The
  market-relative metrics (beta, correlation, tracking error, captures) compare with the same
  portfolio held from each symbol's first finite close; beta uses its log returns per bar.
* Durations are days as float; drawdown and trade durations are ceiled to the resolution of
  the bar spacing (a day for daily bars) like backtesting.py's.
* Trades.return_pct is a fraction like backtesting.py's Trade.pl_pct (0.05 is 5 %).
* Undefined values (no trades, zero variance, a single bar) are None, never NaN or inf.
  The formulas below run inside compute_metrics' ``np.errstate(all="ignore")``: the NaN
  and inf of x / 0, log(0) or an overflow are expected there, and become None.
"""

from __future__ import annotations

import math
import sys
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from functools import lru_cache
from typing import Any

import numpy as np

from tradeloop.backtest import metrics_trades
from tradeloop.backtest.metrics_trades import (
    GrowthLogs,
    geometric_mean,
    maximum,
    mean,
    mean_and_std,
    minimum,
    safe_div,
    sample_variance,
    std,
    total,
)
from tradeloop.backtest.results import BacktestOutput

Value = float | int | datetime | None

_NS_PER_DAY = 86_400_000_000_000
_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)
# pandas' Timedelta.resolution_string as (unit, next unit) in ns: "ns", "us", "ms", "s",
# "min", "h"; the first unit whose next unit does not divide the spacing (else "D").
_RESOLUTIONS = ((1, 1_000), (1_000, 1_000_000), (1_000_000, 1_000_000_000),
                (1_000_000_000, 60_000_000_000), (60_000_000_000, 3_600_000_000_000),
                (3_600_000_000_000, _NS_PER_DAY))


@dataclass(frozen=True)
class MetricSpec:
    name: str            # snake_case, also the DB column name
    category: str        # one of CATEGORIES
    kind: str            # "float" | "int" | "datetime"
    description: str     # one line, with unit


CATEGORIES = ("period", "returns", "risk", "risk_adjusted", "drawdown", "trades", "exposure",
              "benchmark")
KINDS = ("float", "int", "datetime")


def _specs(category: str, *rows: tuple[str, str, str]) -> tuple[MetricSpec, ...]:
    return tuple(MetricSpec(name, category, kind, text) for name, kind, text in rows)


METRICS: tuple[MetricSpec, ...] = (
    *_specs(
        "period",
        ("start", "datetime", "first bar's timestamp (UTC)"),
        ("end", "datetime", "last bar's timestamp (UTC)"),
        ("duration_days", "float", "end - start, in days"),
        ("years", "float", "end - start in years of 365.25 days (CAGR's clock)"),
        ("num_bars", "int", "number of bars (timestamps)"),
        ("num_days", "int", "number of calendar days (UTC) with at least one bar"),
        ("periods_per_year", "int", "annualisation factor: 252, 365, 52, 12 or 1"),
    ),
    *_specs(
        "returns",
        ("equity_initial", "float", "equity at the first bar, in cash"),
        ("equity_final", "float", "equity at the last bar, in cash"),
        ("equity_peak", "float", "highest equity, in cash"),
        ("net_profit", "float", "equity_final - equity_initial, in cash"),
        ("return_pct", "float", "total return of the equity, in %"),
        ("return_ann_pct", "float", "geometric annualised period return, in %"),
        ("cagr_pct", "float", "compound annual growth rate over calendar time, in %"),
        ("avg_daily_return_pct", "float", "arithmetic mean period return, in %"),
        ("positive_days_pct", "float", "share of period returns above 0, in %"),
        ("best_day_pct", "float", "best period (day) return, in %"),
        ("worst_day_pct", "float", "worst period (day) return, in %"),
        ("best_month_pct", "float", "best calendar-month return, in %"),
        ("worst_month_pct", "float", "worst calendar-month return, in %"),
        ("best_year_pct", "float", "best calendar-year return, in %"),
        ("worst_year_pct", "float", "worst calendar-year return, in %"),
    ),
    *_specs(
        "risk",
        ("volatility_ann_pct", "float", "annualised volatility of compounded returns, in %"),
        ("volatility_daily_pct", "float", "sample std of period returns, in %"),
        ("downside_deviation_ann_pct", "float", "annualised RMS of negative period returns, in %"),
        ("var_95_pct", "float", "historical 95 % value at risk (5th pct. period return), in %"),
        ("cvar_95_pct", "float", "mean of the worst 5 % of period returns, in %"),
        ("skew", "float", "sample skewness of period returns (bias-corrected), unitless"),
        ("kurtosis", "float", "sample excess kurtosis of period returns (bias-corrected)"),
    ),
    *_specs(
        "risk_adjusted",
        ("sharpe_ratio", "float", "return_ann_pct / volatility_ann_pct, unitless"),
        ("sortino_ratio", "float", "annual return / downside deviation, unitless"),
        ("calmar_ratio", "float", "annual return / max drawdown, unitless"),
        ("sharpe_ratio_arithmetic", "float", "mean / std of period returns x sqrt(periods)"),
        ("sortino_ratio_arithmetic", "float", "mean period return x periods / downside dev."),
        ("omega_ratio", "float", "sum of gains / sum of losses of period returns, unitless"),
        ("tail_ratio", "float", "|95th percentile| / |5th percentile| of period returns"),
        ("stability", "float", "R^2 of cumulative log return against time, 0..1"),
        ("recovery_factor", "float", "net profit / max drawdown in cash, unitless"),
    ),
    *_specs(
        "drawdown",
        ("max_drawdown_pct", "float", "deepest drop below the running peak, in % (<= 0)"),
        ("avg_drawdown_pct", "float", "mean depth of drawdown episodes, in % (<= 0)"),
        ("max_drawdown_duration_days", "float", "longest drawdown episode, in days"),
        ("avg_drawdown_duration_days", "float", "mean drawdown episode length, in days"),
        ("max_drawdown_cash", "float", "largest drop below the running peak, in cash (<= 0)"),
        ("current_drawdown_pct", "float", "drawdown at the last bar, in % (<= 0)"),
        ("num_drawdowns", "int", "number of drawdown episodes"),
        ("time_in_drawdown_pct", "float", "share of bars below the running peak, in %"),
        ("ulcer_index", "float", "root mean square of per-bar drawdown, in %"),
    ),
    *_specs(
        "trades",
        ("num_trades", "int", "number of closed trades"),
        ("win_rate_pct", "float", "share of trades with pnl > 0, in %"),
        ("best_trade_pct", "float", "highest trade return, in %"),
        ("worst_trade_pct", "float", "lowest trade return, in %"),
        ("avg_trade_pct", "float", "geometric mean trade return, in %"),
        ("max_trade_duration_days", "float", "longest trade (exit - entry time), in days"),
        ("avg_trade_duration_days", "float", "mean trade duration, in days"),
        ("profit_factor", "float", "sum of positive / |sum of negative| trade returns"),
        ("expectancy_pct", "float", "arithmetic mean trade return, in %"),
        ("sqn", "float", "system quality number: sqrt(n) x mean pnl / std pnl"),
        ("kelly_criterion", "float", "win rate - loss rate / payoff ratio, fraction"),
        ("commissions", "float", "total commissions paid, in cash"),
        ("num_winning_trades", "int", "trades with pnl > 0"),
        ("num_losing_trades", "int", "trades with pnl < 0"),
        ("num_long_trades", "int", "trades with direction +1"),
        ("num_short_trades", "int", "trades with direction -1"),
        ("long_win_rate_pct", "float", "win rate of long trades, in %"),
        ("short_win_rate_pct", "float", "win rate of short trades, in %"),
        ("long_pnl", "float", "net pnl of long trades, in cash"),
        ("short_pnl", "float", "net pnl of short trades, in cash"),
        ("gross_profit", "float", "sum of winning trades' pnl, in cash (>= 0)"),
        ("gross_loss", "float", "sum of losing trades' pnl, in cash (<= 0)"),
        ("profit_factor_pnl", "float", "gross_profit / |gross_loss|, unitless"),
        ("avg_trade_pnl", "float", "mean trade pnl, in cash"),
        ("largest_win", "float", "largest winning trade's pnl, in cash"),
        ("largest_loss", "float", "largest losing trade's pnl, in cash (< 0)"),
        ("avg_win_pct", "float", "mean return of winning trades, in %"),
        ("avg_loss_pct", "float", "mean return of losing trades, in %"),
        ("payoff_ratio", "float", "mean winning pnl / |mean losing pnl|, unitless"),
        ("max_consecutive_wins", "int", "longest run of winning trades, in entry order"),
        ("max_consecutive_losses", "int", "longest run of losing trades, in entry order"),
        ("avg_bars_in_trade", "float", "mean exit_index - entry_index, in bars"),
        ("max_bars_in_trade", "int", "largest exit_index - entry_index, in bars"),
        ("trades_per_year", "float", "num_trades / years"),
        ("num_stop_loss_exits", "int", "trades closed by a stop loss"),
        ("num_take_profit_exits", "int", "trades closed by a take profit"),
    ),
    *_specs(
        "exposure",
        ("exposure_time_pct", "float", "share of bars from a trade's entry to its exit bar, "
                                       "in %"),
        ("exposure_adjusted_return_pct", "float", "return_pct / exposure share, in %"),
        ("longest_flat_period_days", "float", "longest stretch without a position, in days"),
    ),
    *_specs(
        "benchmark",
        ("buy_hold_return_pct", "float", "equal-weight buy & hold return after the warm-up, "
                                         "in %"),
        ("buy_hold_return_ann_pct", "float", "buy & hold geometric annual return, in %"),
        ("buy_hold_max_drawdown_pct", "float", "buy & hold max drawdown, in % (<= 0)"),
        ("excess_return_pct", "float", "return_pct - buy_hold_return_pct, in % points"),
        ("alpha_pct", "float", "Jensen alpha: return - beta x buy & hold return, in %"),
        ("beta", "float", "cov / var of per-bar log returns against the benchmark"),
        ("correlation", "float", "Pearson correlation of period returns with the benchmark"),
        ("tracking_error_ann_pct", "float", "annualised std of active period returns, in %"),
        ("information_ratio", "float", "mean / std of active period returns x sqrt(periods)"),
        ("up_capture", "float", "annual return ratio over benchmark-up periods, unitless"),
        ("down_capture", "float", "annual return ratio over benchmark-down periods"),
    ),
)


# ---------------------------------------------------------------- calendar and resampling


def data_period(ts: np.ndarray) -> int | None:
    """Median spacing of the last 100 bars in ns (None for a single bar), as backtesting.py.

    ts is int64 ns. The same number as pandas' Series(ts).diff().median(): a float64 median
    truncated to whole nanoseconds.
    """
    last = ts[-100:]
    spacing = (last[1:] - last[:-1]).astype(np.float64)   # np.diff without its overhead
    n = len(spacing)
    if not n:
        return None
    # np.median's arithmetic (the middle order statistic, or the mean of the middle two)
    # without its general-purpose machinery: one partition.
    middle = n // 2
    if n % 2:
        return int(np.partition(spacing, middle)[middle])
    part = np.partition(spacing, (middle - 1, middle))
    return int((part[middle - 1] + part[middle]) / 2)


def periods_per_year(ts: np.ndarray, period: int | None,
                     days: tuple[np.ndarray, np.ndarray] | None = None) -> tuple[int, str]:
    """Annualisation factor and resampling frequency, backtesting.py's rule.

    period is data_period(ts); days is utc_days(ts) if already computed.
    """
    spacing_days = None if period is None else period // _NS_PER_DAY
    freq = {7: "W", 31: "ME", 365: "YE"}.get(spacing_days, "D")  # type: ignore[arg-type]
    if freq != "D":
        return {"W": 52, "ME": 12, "YE": 1}[freq], freq
    day_ends, day_numbers = utc_days(ts) if days is None else days
    # True on the Saturdays and Sundays among the days with bars: numpy's business-day
    # calendar with a weekend-only week mask costs half an integer modulo for the weekday.
    weekend = np.is_busday(day_numbers.view("datetime64[D]"), weekmask="0000011")
    if len(day_ends) == len(ts):   # one bar a day
        weekend_bars = np.count_nonzero(weekend)
    else:
        bars_per_day = np.empty(len(day_ends), dtype=day_ends.dtype)   # np.diff(prepend=-1)
        bars_per_day[0] = day_ends[0] + 1
        np.subtract(day_ends[1:], day_ends[:-1], out=bars_per_day[1:])
        weekend_bars = total(bars_per_day[weekend])
    return (365 if weekend_bars / len(ts) > 2 / 7 * 0.6 else 252), freq


def period_ends(ts: np.ndarray, freq: str) -> np.ndarray:
    """Index of the last bar of each calendar period: pandas' resample(freq).last() bins."""
    if freq in ("ME", "YE"):
        return month_and_year_ends(ts)[0 if freq == "ME" else 1]
    if freq == "D":
        return utc_days(ts)[0]
    return _last_of_each((ts // _NS_PER_DAY + 3) // 7)   # weeks end on Sunday (W-SUN)


def utc_days(ts: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Index of the last bar of each UTC day with bars, and the day's number since
    1970-01-01 (the weekday needs it too)."""
    if len(ts) > 1:
        first_day, last_day = int(ts[0]) // _NS_PER_DAY, int(ts[-1]) // _NS_PER_DAY
        if 0 <= last_day - first_day < len(ts) // 4:
            # Sorted bars: binary search for each midnight instead of dividing every bar.
            starts = np.arange(first_day + 1, last_day + 1, dtype=np.int64) * _NS_PER_DAY
            ends = _last_before_each(ts, starts)
            return ends, ts[ends] // _NS_PER_DAY
    days = ts // _NS_PER_DAY
    ends = _last_of_each(days)
    return ends, _at(days, ends)


def month_and_year_ends(ts: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Index of the last bar of each calendar month, and of each calendar year, with bars.

    A binary search for the first instant of each month of the span: converting every
    day's date to its month costs more than twice as much on daily bars.
    """
    first, last = ts[[0, -1]].view("datetime64[ns]").astype("datetime64[M]").view(np.int64)
    months = np.arange(first + 1, last + 1, dtype=np.int64)   # after the first, to the last
    starts = months.view("datetime64[M]").astype("datetime64[ns]").view(np.int64)
    january = -(int(first) + 1) % 12   # month 0 is 1970-01: the first January among them
    return _last_before_each(ts, starts), _last_before_each(ts, starts[january::12])


def _last_before_each(ts: np.ndarray, starts: np.ndarray) -> np.ndarray:
    """Index of the last bar before each of starts (ascending) and of the very last bar,
    each once: the last bar of every period that starts[i] begin, and that has bars."""
    ends = np.empty(len(starts) + 1, dtype=np.intp)
    np.subtract(np.searchsorted(ts, starts), 1, out=ends[:-1])
    ends[-1] = len(ts) - 1
    keep = np.empty(len(ends), dtype=bool)
    keep[0] = True
    np.not_equal(ends[1:], ends[:-1], out=keep[1:])
    return ends[keep]


def _at(values: np.ndarray, ends: np.ndarray) -> np.ndarray:
    """values[ends], or values itself (not a copy: callers only read it) when every bar ends
    a period, as with daily bars."""
    return values if len(ends) == len(values) else values[ends]


def _last_of_each(key: np.ndarray) -> np.ndarray:
    """Index of the last element of each run of equal keys (keys sorted ascending)."""
    change = np.empty(len(key), dtype=bool)
    np.not_equal(key[1:], key[:-1], out=change[:-1])
    change[-1:] = True
    return change.nonzero()[0]


def _returns_and_sum(values: np.ndarray) -> tuple[np.ndarray, np.float64]:
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


# ---------------------------------------------------------------- return and risk formulas


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


def cagr(equity_initial: float, equity_final: float, duration_ns: int) -> float:
    """Calendar-time growth rate; years = (days + seconds / 86400) / 365.25 (backtesting.py)."""
    years = _years(duration_ns)
    if not years or equity_initial == 0:
        return math.nan
    # inf (undefined: None) past the float range; the caller silences numpy's warning.
    return float(np.power(equity_final / equity_initial, 1 / years)) - 1


def _years(duration_ns: int) -> float:
    days, rest = divmod(int(duration_ns), _NS_PER_DAY)
    return (days + rest // 1_000_000_000 / 86400) / 365.25


def arithmetic_sharpe(returns: np.ndarray, ppy: int,
                      moments: tuple[float, float] | None = None) -> float:
    """mean / sample std x sqrt(periods): empyrical.sharpe_ratio with risk-free 0.

    moments: (mean(returns), std(returns)) if already computed."""
    average, deviation = moments or (mean(returns), std(returns))
    return safe_div(average, deviation) * math.sqrt(ppy)


def skewness(returns: np.ndarray,
             moments: tuple[float, float, float] | None = None) -> float:
    """Adjusted Fisher-Pearson skewness G1 (pandas' Series.skew, scipy's bias=False).

    moments: _central_moments(returns) if already computed."""
    n = len(returns)
    m2, m3, _ = moments or _central_moments(returns)
    if n < 3 or not m2:
        return math.nan
    return m3 / m2**1.5 * math.sqrt(n * (n - 1)) / (n - 2)


def excess_kurtosis(returns: np.ndarray,
                    moments: tuple[float, float, float] | None = None) -> float:
    """Bias-corrected excess kurtosis G2 (pandas' Series.kurt, scipy's bias=False).

    moments: _central_moments(returns) if already computed."""
    n = len(returns)
    m2, _, m4 = moments or _central_moments(returns)
    if n < 4 or not m2:
        return math.nan
    g2 = m4 / m2**2 - 3
    return ((n + 1) * g2 + 6) * (n - 1) / ((n - 2) * (n - 3))


def _central_moments(returns: np.ndarray, average: float | None = None
                     ) -> tuple[float, float, float]:
    """average: mean(returns) if already computed."""
    if not len(returns):
        return 0.0, 0.0, 0.0
    d = returns - (mean(returns) if average is None else average)
    d2 = d * d
    return _moments_of(d, d2, mean(d2), maximum(np.abs(returns)))


def _moments_of(d: np.ndarray, d2: np.ndarray, m2: float, largest: float
                ) -> tuple[float, float, float]:
    """m2, m3, m4 from the deviations d, their squares d2, mean(d2) and max |return|."""
    # Constant returns leave rounding noise (std ~1e-18) that would blow up m3 / m2^1.5.
    if m2 <= (1e-15 * largest) ** 2:
        return 0.0, 0.0, 0.0
    return m2, mean(d2 * d), mean(d2 * d2)


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


# ---------------------------------------------------------------- drawdowns


def drawdown(values: np.ndarray, peak: np.ndarray | None = None) -> np.ndarray:
    """Fraction below the running peak per bar (>= 0), backtesting.py's 1 - equity / peak."""
    if peak is None:
        peak = np.maximum.accumulate(values)
    dd = np.divide(values, peak)
    return np.subtract(1, dd, out=dd)   # in place: one 8 MB array less per million bars


def max_drawdown(values: np.ndarray, out: np.ndarray | None = None) -> float:
    """Deepest drawdown fraction, max(drawdown(values)) with one temporary array less.

    out: a float array of len(values) to work in (overwritten), instead of a new one."""
    ratio = np.maximum.accumulate(values, out=out)
    np.divide(values, ratio, out=ratio)
    return 1 - minimum(ratio) if len(ratio) else math.nan


def drawdown_episodes(dd: np.ndarray, ts: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Duration (ns) and depth of each episode, as backtesting.py's drawdown peaks.

    An episode spans two consecutive bars at a peak (dd == 0) with at least one bar between
    them, or the last peak and the final bar; its depth is the deepest dd in between.
    """
    at_peak = (dd == 0).nonzero()[0]
    if not len(at_peak) or at_peak[-1] != len(dd) - 1:
        at_peak = np.concatenate((at_peak, (len(dd) - 1,)))
    if len(at_peak) < 2:
        return np.array([], dtype=np.int64), np.array([])
    start, end = at_peak[:-1], at_peak[1:]
    # reduceat gives max over [p_j, p_j+1); the episode also includes its end bar.
    depth = np.maximum(np.maximum.reduceat(dd, at_peak)[:-1], dd.take(end))
    keep = (end - start) > 1
    return (ts.take(end) - ts.take(start))[keep], depth[keep]


def round_duration(value: int | None, period: int | None) -> float:
    """Days, ceiled to the resolution of the bar spacing like backtesting.py's durations.

    value and period are ns (None: undefined / no spacing). The resolution is the unit of
    the period's smallest nonzero component (pandas' Timedelta.resolution_string: a day for
    daily bars, an hour for hourly ones), and the division is pandas' Timedelta / Timedelta.
    """
    if value is None:
        return math.nan
    if period is not None:
        unit = _resolution(period)
        value = -(-value // unit) * unit
    return value / float(_NS_PER_DAY)


@lru_cache(maxsize=64)
def _resolution(period: int) -> int:
    """The resolution of a bar spacing in ns (a run rounds several durations with one)."""
    return next((u for u, larger in _RESOLUTIONS if period % larger), _NS_PER_DAY)


def duration_stats_ns(durations: np.ndarray) -> tuple[int | None, int | None]:
    """Longest and mean of int64 ns durations as pandas' TimedeltaIndex.max() / .mean() give
    them (the mean: a float64 sum / count truncated to whole ns); None for none."""
    if not len(durations):
        return None, None
    average = np.add.reduce(durations, dtype=np.float64) / float(len(durations))
    return int(np.maximum.reduce(durations)), int(average)


# ---------------------------------------------------------------- benchmark


def benchmark_value(closes: dict[str, np.ndarray], n: int,
                    starts: dict[str, int] | None = None) -> np.ndarray | None:
    """Equal-weight buy & hold value of one unit of cash per bar.

    Each symbol gets 1 / len(closes), bought at its first finite close at or after its bar
    in starts (default 0) and held; before that its share waits in cash (value 1); gaps
    keep the last close.
    """
    if not closes:
        return None
    starts = starts or {}
    values = [_relative_to_first(np.asarray(close, dtype=float), starts.get(symbol, 0))
              for symbol, close in closes.items()]
    if len(values) == 1:
        return values[0]
    total = np.add.reduce(values, axis=0)
    return np.divide(total, len(values), out=total)


def _relative_to_first(close: np.ndarray, start: int = 0) -> np.ndarray:
    if len(close) and start < len(close) and math.isfinite(np.add.reduce(close[start:])):
        # Every close from start on is finite (a sum is finite only then): bought there.
        value = close / close[start]
        value[:start] = 1.0
        return value
    finite = np.isfinite(close)
    finite[:start] = False
    if not finite.any():
        return np.ones(len(close))
    first = int(np.argmax(finite))
    if not finite[first:].all():
        # Forward-fill gaps: the index of the last finite close at or before each bar.
        close = close[np.maximum.accumulate(np.where(finite, np.arange(len(close)), first))]
    value = close / close[first]
    value[:first] = 1.0
    return value


def buy_hold_return(closes: dict[str, np.ndarray],
                    starts: dict[str, int] | None = None) -> float:
    """Mean over symbols of (last close - first close) / first close, fraction; a symbol's
    first close is its first finite one at or after its bar in starts (default 0)."""
    returns = []
    for symbol, all_closes in closes.items():
        close = all_closes[(starts or {}).get(symbol, 0):]
        if len(close) and math.isfinite(close[0]) and math.isfinite(close[-1]):
            returns.append((close[-1] - close[0]) / close[0])   # the usual case, no scan
            continue
        finite = np.isfinite(close)
        if finite.any():
            first = close[np.argmax(finite)]
            last = close[len(close) - 1 - np.argmax(finite[::-1])]
            returns.append((last - first) / first)
    if len(returns) == 1:   # np.mean of one value is that value
        return float(returns[0])
    return float(np.mean(returns)) if returns else math.nan


def beta(equity: np.ndarray, market: np.ndarray, out: np.ndarray | None = None,
         market_is_scratch: bool = False, spare: np.ndarray | None = None) -> float:
    """cov / var of per-bar log returns (backtesting.py, with the benchmark as market).

    out and spare: float arrays of len(equity) to work in (overwritten), instead of new ones;
    market_is_scratch: market may be overwritten too (one new array less)."""
    if len(equity) < 3:
        return math.nan
    # diff(log(v)) is log(v[1:] / v[:-1]) to ~1e-15 at half the cost of log on 1M bars.
    # np.diff's subtraction, with one log buffer for both curves (8 MB per 1M bars).
    logs = np.log(equity, out=out)
    x = np.subtract(logs[1:], logs[:-1], out=None if spare is None else spare[:-1])
    np.log(market, out=logs)
    y = np.subtract(logs[1:], logs[:-1], out=market[:-1] if market_is_scratch else None)
    del logs
    x -= mean(x)
    y_mean = mean(y)
    y -= y_mean
    # einsum stays on one core; BLAS dot spins extra threads for no gain at this size.
    ss_y = float(np.einsum("i,i->", y, y))
    if ss_y <= len(y) * (1e-12 * y_mean) ** 2:
        # A constant benchmark return leaves only rounding noise as variance.
        return math.nan
    return safe_div(float(np.einsum("i,i->", x, y)), ss_y)


def _capture(returns: GrowthLogs, bench: GrowthLogs, select: np.ndarray, ppy: int) -> float:
    """Annual return ratio over the selected periods (empyrical.capture) on logs already
    taken; select is an index array."""
    if not len(select):
        return math.nan
    return safe_div(annualized_return(returns.returns, ppy, returns.geometric_mean(select)),
                    annualized_return(bench.returns, ppy, bench.geometric_mean(select)))


# ---------------------------------------------------------------- groups


@dataclass(frozen=True)
class _Returns:
    """Period returns and the reductions several metrics share, each computed once: mean,
    sample_variance and _central_moments subtract the same mean and square the same
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
    def of(cls, values: np.ndarray, values_sum: np.float64 | None = None) -> _Returns:
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
        """_central_moments(values, mean)."""
        n = len(self.values)
        if not n:
            return 0.0, 0.0, 0.0
        largest = max(abs(self.high), abs(self.low))   # max |value|: NaN-free values
        return _moments_of(self.deviations, self.squares, float(self.sum_squares / n),
                           largest)


@dataclass(frozen=True)
class _Curve:
    """The equity curve and what every group derives from it once."""

    ts: np.ndarray          # int64 ns since the epoch (UTC)
    equity: np.ndarray
    dd: np.ndarray          # fraction below the running peak, per bar
    equity_peak: float      # highest equity (the running peak's last value)
    max_drawdown_cash: float  # min(equity - running peak), cash (<= 0)
    scratch: np.ndarray     # a spare float array of len(ts) that any group may overwrite
    period: int | None      # bar spacing in ns (None for one bar)
    ppy: int                # periods per year
    day_ends: np.ndarray    # last bar of each UTC day
    ends: np.ndarray        # last bar of each annualisation period
    r: _Returns             # period returns
    geo_mean: float         # geometric_mean(period returns)

    @classmethod
    def build(cls, output: BacktestOutput) -> _Curve:
        ts = np.asarray(output.ts).astype("datetime64[ns]", copy=False).view(np.int64)
        equity = np.asarray(output.equity, dtype=float)
        period = data_period(ts)
        days = utc_days(ts)
        day_ends = days[0]
        ppy, freq = periods_per_year(ts, period, days)
        ends = day_ends if freq == "D" else period_ends(ts, freq)
        peak = np.maximum.accumulate(equity)
        dd = drawdown(equity, peak)
        # The peak is not needed afterwards: its memory becomes the scratch array (fresh
        # arrays of a million bars cost more in page faults than the arithmetic on them).
        highest = peak[-1]
        cash = minimum(np.subtract(equity, peak, out=peak))
        r = _Returns.of(*_returns_and_sum(_at(equity, ends)))
        return cls(ts, equity, dd, highest, cash, peak, period, ppy, day_ends, ends, r,
                   r.growth.geometric_mean())

    @property
    def returns(self) -> np.ndarray:
        return self.r.values

    @property
    def duration_ns(self) -> int:
        # Python ints: an int64 difference would overflow past 292 years.
        return int(self.ts[-1]) - int(self.ts[0])


def period_metrics(c: _Curve) -> dict[str, Any]:
    return {
        "start": _utc(c.ts[0]), "end": _utc(c.ts[-1]),
        "duration_days": c.duration_ns / _NS_PER_DAY, "years": _years(c.duration_ns),
        "num_bars": len(c.ts), "num_days": len(c.day_ends), "periods_per_year": c.ppy,
    }


def return_metrics(c: _Curve) -> dict[str, Any]:
    first, last = c.equity[0], c.equity[-1]
    return {
        "equity_initial": first, "equity_final": last, "equity_peak": c.equity_peak,
        "net_profit": last - first, "return_pct": (last - first) / first * 100,
        "return_ann_pct": annualized_return(c.returns, c.ppy, c.geo_mean) * 100,
        "cagr_pct": cagr(first, last, c.duration_ns) * 100,
    }


def calendar_return_metrics(c: _Curve) -> dict[str, Any]:
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


def risk_metrics(c: _Curve) -> dict[str, Any]:
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


def risk_adjusted_metrics(c: _Curve, m: dict[str, Any]) -> dict[str, Any]:
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


def drawdown_metrics(c: _Curve) -> dict[str, Any]:
    durations, depths = drawdown_episodes(c.dd, c.ts)
    longest, average = duration_stats_ns(durations)
    return {
        "max_drawdown_pct": -_nan_to_num(maximum(c.dd)) * 100,
        "avg_drawdown_pct": -mean(depths) * 100,
        "max_drawdown_duration_days": round_duration(longest, c.period),
        "avg_drawdown_duration_days": round_duration(average, c.period),
        "max_drawdown_cash": c.max_drawdown_cash,
        "current_drawdown_pct": -c.dd[-1] * 100,
        "num_drawdowns": len(depths),
        "time_in_drawdown_pct": np.count_nonzero(c.dd > 0) / len(c.dd) * 100,
        "ulcer_index": math.sqrt(np.einsum("i,i->", c.dd, c.dd) / len(c.dd)) * 100,
    }


def benchmark_metrics(c: _Curve, output: BacktestOutput, return_pct: float,
                      spare: np.ndarray | None = None) -> dict[str, Any]:
    """Buy & hold (bought at each symbol's benchmark_start, the end of the warm-up) and the
    equity against the market (the same symbols from their first close: beta, correlation,
    captures), as backtesting.py measures Buy & Hold after the warm-up and Beta on every bar.

    spare: a float array of len(c.ts) beta may overwrite, instead of a new one."""
    bench = benchmark_value(output.benchmark_close, len(c.ts))
    if bench is None:
        return {}
    r, b = _paired_returns(c, _at(bench, c.ends))
    starts = output.benchmark_start
    bh_pct = buy_hold_return(output.benchmark_close, starts) * 100
    if any(starts.values()):
        held = benchmark_value(output.benchmark_close, len(c.ts), starts)
        bh_annual = annualized_growth(_at(held, c.ends), c.ppy)
    else:   # bought at the first close: buy & hold is the market itself
        held, bh_annual = bench, annualized_return(b.values, c.ppy, b.growth.geometric_mean())
    bh_max_drawdown = max_drawdown(held, c.scratch)
    # bench is this function's own array (benchmark_value's): beta may overwrite it.
    b_beta = beta(c.equity, bench, c.scratch, market_is_scratch=True, spare=spare)
    active = r.values - b.values
    active_mean, active_std = mean_and_std(active)
    return {
        "buy_hold_return_pct": bh_pct,
        "buy_hold_return_ann_pct": bh_annual * 100,
        "buy_hold_max_drawdown_pct": -_nan_to_num(bh_max_drawdown) * 100,
        "excess_return_pct": return_pct - bh_pct,
        # Jensen's alpha on total returns, backtesting.py's definition.
        "alpha_pct": return_pct - b_beta * bh_pct, "beta": b_beta,
        "correlation": _correlation(r, b),
        "tracking_error_ann_pct": active_std * math.sqrt(c.ppy) * 100,
        "information_ratio": arithmetic_sharpe(active, c.ppy, (active_mean, active_std)),
        # Periods where the benchmark rose (b > 0) or fell (b < 0).
        "up_capture": _capture(r.growth, b.growth, b.gains, c.ppy),
        "down_capture": _capture(r.growth, b.growth, b.losses, c.ppy),
    }


def _nan_to_num(value: float) -> float:
    """np.nan_to_num of one float (NaN -> 0, ±inf -> ±the largest float), minus its overhead."""
    value = float(value)
    if math.isnan(value):
        return 0.0
    if math.isinf(value):
        return math.copysign(sys.float_info.max, value)
    return value


def _paired_returns(c: _Curve, bench: np.ndarray) -> tuple[_Returns, _Returns]:
    """Period returns of the equity and of the benchmark (its value at c.ends), on the
    periods where both are defined."""
    b = bench[1:] / bench[:-1] - 1
    if len(b) == len(c.returns):
        b_returns = _Returns.of(b)
        # A mean is finite only when every value is: nothing to drop, and c.returns, which
        # then dropped nothing either, are the equity's returns.
        if math.isfinite(b_returns.mean) and math.isfinite(c.r.mean):
            return c.r, b_returns
    at_ends = _at(c.equity, c.ends)
    r = at_ends[1:] / at_ends[:-1] - 1
    paired = np.isfinite(r) & np.isfinite(b)
    r, b = r[paired], b[paired]
    # The same division on the same values as c.returns when no period was dropped.
    return (c.r if len(r) == len(c.returns) else _Returns.of(r)), _Returns.of(b)


def _correlation(x: _Returns, y: _Returns) -> float:
    if len(x.values) < 2 or not x.std or not y.std:
        return math.nan
    x_dev, y_dev = x.deviations, y.deviations   # x - mean(x), y - mean(y)
    return safe_div(float(x_dev @ y_dev), math.sqrt(float(x_dev @ x_dev) * float(y_dev @ y_dev)))


# ---------------------------------------------------------------- entry point


def compute_metrics(output: BacktestOutput) -> dict[str, dict[str, Value]]:
    """Every metric of METRICS, grouped by category; None where undefined."""
    # Undefined values (x / 0, log of 0, overflow) are NaN or inf until _clean turns them
    # into None, so numpy's warnings about them are noise: silenced once here rather than
    # around each operation (an errstate costs ~2 µs, a dozen of them a run).
    with np.errstate(all="ignore"):
        return _compute(output)


def _compute(output: BacktestOutput) -> dict[str, dict[str, Value]]:
    values: dict[str, Any] = {"commissions": output.commissions}
    period: int | None = None
    years = math.nan
    if len(output.ts):
        curve = _Curve.build(output)
        values.update(_curve_metrics(curve, output))
        period, years = curve.period, values["years"]
    # Trade durations are rounded to the bar resolution, like the drawdown durations.
    values.update(metrics_trades.trade_metrics(
        output.trades, lambda ns: round_duration(ns, period), years))
    return {category: {name: _clean(values.get(name), kind) for name, kind in fields}
            for category, fields in _LAYOUT}


# (category, ((name, kind), ...)) in the order of CATEGORIES and METRICS.
_LAYOUT = tuple((category, tuple((spec.name, spec.kind) for spec in METRICS
                                 if spec.category == category))
                for category in CATEGORIES)


def _curve_metrics(c: _Curve, output: BacktestOutput) -> dict[str, Any]:
    m: dict[str, Any] = {}
    for group in (period_metrics, return_metrics, calendar_return_metrics, risk_metrics,
                  drawdown_metrics):
        m.update(group(c))
    # The ratios reuse the values above instead of recomputing them.
    m.update(risk_adjusted_metrics(c, m))
    # drawdown_metrics, the only reader of c.dd, has run: its memory can serve beta (a fresh
    # array costs a million bars more in page faults than the arithmetic done in it).
    m.update(benchmark_metrics(c, output, m["return_pct"], spare=c.dd))
    m.update(metrics_trades.exposure_metrics(c.ts, np.asarray(output.in_market, dtype=bool),
                                             m["return_pct"]))
    return m


def _clean(value: Any, kind: str) -> Value:
    """Plain Python values for the database: NaN / inf / missing become None."""
    if value is None:
        return None
    if kind == "datetime":
        return value
    number = float(value)
    if not math.isfinite(number):
        return None
    return int(number) if kind == "int" else number


def _utc(ns: np.int64) -> datetime:
    """pandas' Timestamp(ns).to_pydatetime() in UTC: whole microseconds (floored)."""
    return _EPOCH + timedelta(microseconds=int(ns) // 1000)
