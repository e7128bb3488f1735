"""The calendar of a backtest: bar spacing, periods per year, period ends and durations.

Timestamps are int64 ns since the epoch (UTC). The rules are backtesting.py's (through
pandas): the bar spacing is the median spacing of the last 100 bars, the equity is resampled
to the last bar of each day (week, month, year for coarser bars), and durations are ceiled
to the resolution of the bar spacing.
"""

from __future__ import annotations

import math
from datetime import UTC, datetime, timedelta
from functools import lru_cache
from typing import TYPE_CHECKING, Any

import numpy as np

from tradeloop.backtest.metrics.numeric import total

if TYPE_CHECKING:
    from tradeloop.backtest.metrics.curve import Curve

NS_PER_DAY = 86_400_000_000_000
_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)
# pandas' Timedelta.resolution_string as (unit, next unit) in ns: "ns", "us", "ms", "s",
# "min", "h"; the first unit whose next unit does not divide the spacing (else "D").
_RESOLUTIONS = ((1, 1_000), (1_000, 1_000_000), (1_000_000, 1_000_000_000),
                (1_000_000_000, 60_000_000_000), (60_000_000_000, 3_600_000_000_000),
                (3_600_000_000_000, NS_PER_DAY))


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
    spacing_days = None if period is None else period // NS_PER_DAY
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
    return _last_of_each((ts // NS_PER_DAY + 3) // 7)   # weeks end on Sunday (W-SUN)


def utc_days(ts: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Index of the last bar of each UTC day with bars, and the day's number since
    1970-01-01 (the weekday needs it too)."""
    if len(ts) > 1:
        first_day, last_day = int(ts[0]) // NS_PER_DAY, int(ts[-1]) // NS_PER_DAY
        if 0 <= last_day - first_day < len(ts) // 4:
            # Sorted bars: binary search for each midnight instead of dividing every bar.
            starts = np.arange(first_day + 1, last_day + 1, dtype=np.int64) * NS_PER_DAY
            ends = _last_before_each(ts, starts)
            return ends, ts[ends] // NS_PER_DAY
    days = ts // NS_PER_DAY
    ends = _last_of_each(days)
    return ends, at_ends(days, ends)


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


def at_ends(values: np.ndarray, ends: np.ndarray) -> np.ndarray:
    """values[ends], or values itself (not a copy: callers only read it) when every bar ends
    a period, as with daily bars."""
    return values if len(ends) == len(values) else values[ends]


def _last_of_each(key: np.ndarray) -> np.ndarray:
    """Index of the last element of each run of equal keys (keys sorted ascending)."""
    change = np.empty(len(key), dtype=bool)
    np.not_equal(key[1:], key[:-1], out=change[:-1])
    change[-1:] = True
    return change.nonzero()[0]


def span_years(duration_ns: int) -> float:
    """Years of 365.25 days in a span of ns (seconds resolution), backtesting.py's CAGR clock."""
    days, rest = divmod(int(duration_ns), NS_PER_DAY)
    return (days + rest // 1_000_000_000 / 86400) / 365.25


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
    return value / float(NS_PER_DAY)


@lru_cache(maxsize=64)
def _resolution(period: int) -> int:
    """The resolution of a bar spacing in ns (a run rounds several durations with one)."""
    return next((u for u, larger in _RESOLUTIONS if period % larger), NS_PER_DAY)


def duration_stats_ns(durations: np.ndarray) -> tuple[int | None, int | None]:
    """Longest and mean of int64 ns durations as pandas' TimedeltaIndex.max() / .mean() give
    them (the mean: a float64 sum / count truncated to whole ns); None for none."""
    if not len(durations):
        return None, None
    average = np.add.reduce(durations, dtype=np.float64) / float(len(durations))
    return int(np.maximum.reduce(durations)), int(average)


def utc_timestamp(ns: np.int64) -> datetime:
    """pandas' Timestamp(ns).to_pydatetime() in UTC: whole microseconds (floored)."""
    return _EPOCH + timedelta(microseconds=int(ns) // 1000)


def period_metrics(c: Curve) -> dict[str, Any]:
    """The period category: the run's first and last bar, its span, bars and days."""
    return {
        "start": utc_timestamp(c.ts[0]), "end": utc_timestamp(c.ts[-1]),
        "duration_days": c.duration_ns / NS_PER_DAY, "years": span_years(c.duration_ns),
        "num_bars": len(c.ts), "num_days": len(c.day_ends), "periods_per_year": c.ppy,
    }

