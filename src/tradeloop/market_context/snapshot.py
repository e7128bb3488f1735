"""What a symbol's recent bars say, computed once for every reader: the decision's market
context (market_context.service) and the analysis prompt's indicators (prompts.context), so
the risk gate and the LLM see the same numbers — `atr_pct` above all.

ATR is Wilder's (TA-Lib's ATR: the first value the mean of the first `period` true ranges,
then smoothed by (previous * (period - 1) + true range) / period). Its smoothing carries the
whole history, so every reader computes it over the same window: the last LOOKBACK bars.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

from tradeloop.market_data.service import BarArrays
from tradeloop.strategies import indicators

LOOKBACK = 260  # SMA 200 in the prompt plus a margin; also the ATR's fixed history
ATR_PERIOD = 14


@dataclass(frozen=True)
class MarketSnapshot:
    """The latest close, its simple moving averages, the trend and the volatility."""

    close: float
    sma20: float | None
    sma50: float | None
    trend: str | None  # up | down | sideways; None with fewer than 20 bars
    atr: float | None  # Wilder's ATR(14); None with 14 bars or fewer
    atr_pct: float | None  # atr as a percentage of the close


def market_snapshot(bars: BarArrays) -> MarketSnapshot:
    """The snapshot of the last LOOKBACK bars (of at least one)."""
    high, low = bars.high[-LOOKBACK:], bars.low[-LOOKBACK:]
    close = bars.close[-LOOKBACK:]
    last = float(close[-1])
    sma20 = float(close[-20:].mean()) if len(close) >= 20 else None
    sma50 = float(close[-50:].mean()) if len(close) >= 50 else None
    atr = wilder_atr(high, low, close, ATR_PERIOD)
    return MarketSnapshot(last, sma20, sma50, _trend(last, sma20, sma50), atr,
                          None if atr is None or last == 0 else atr / last * 100)


def wilder_atr(high: np.ndarray, low: np.ndarray, close: np.ndarray,
               period: int) -> float | None:
    """The latest Wilder ATR, or None when there are `period` bars or fewer (TA-Lib's first
    value needs `period` true ranges, each of which needs a previous close)."""
    if len(close) <= period:
        return None
    value = float(indicators.atr(high, low, close, period)[-1])
    return None if math.isnan(value) else value


def _trend(last: float, sma20: float | None, sma50: float | None) -> str | None:
    if sma20 is None:
        return None
    slow = sma50 if sma50 is not None else sma20
    if last > sma20 and sma20 >= slow:
        return "up"
    if last < sma20 and sma20 <= slow:
        return "down"
    return "sideways"
