"""The equity curve of one run and what every metric family derives from it once."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from tradeloop.backtest.metrics.calendar import (
    at_ends,
    data_period,
    period_ends,
    periods_per_year,
    utc_days,
)
from tradeloop.backtest.metrics.drawdown import drawdown
from tradeloop.backtest.metrics.numeric import minimum
from tradeloop.backtest.metrics.returns import Returns, returns_and_sum
from tradeloop.backtest.results import BacktestOutput


@dataclass(frozen=True)
class Curve:
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
    r: Returns              # period returns
    geo_mean: float         # geometric_mean(period returns)

    @classmethod
    def build(cls, output: BacktestOutput) -> Curve:
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
        r = Returns.of(*returns_and_sum(at_ends(equity, ends)))
        return cls(ts, equity, dd, highest, cash, peak, period, ppy, day_ends, ends, r,
                   r.growth.geometric_mean())

    @property
    def returns(self) -> np.ndarray:
        return self.r.values

    @property
    def duration_ns(self) -> int:
        # Python ints: an int64 difference would overflow past 292 years.
        return int(self.ts[-1]) - int(self.ts[0])

