"""The variables an analysis prompt is rendered with (SPEC §7): symbol, timeframe, as_of,
recent bars, indicators, support/resistance, strategy, market context and GEX.

Indicators come from `tradeloop.strategies.indicators` (the functions strategies and backtests
use, so a prompt and a backtest see the same numbers) on bars from the market data service.
Market context and GEX are computed by the caller (the signals package) and passed in as
plain dicts; this module never imports signals.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from datetime import datetime
from typing import Any

import numpy as np
from sqlalchemy.orm import Session

from tradeloop.market_context.snapshot import market_snapshot
from tradeloop.market_data.service import BarArrays, load_bars, utc_datetime
from tradeloop.strategies import indicators as ind

LOOKBACK = 260  # SMA 200 plus a margin; also covers the 52-week range on daily bars
RECENT_BARS = 20
SWING_WINDOW = 3  # a swing high/low is the extreme of the 3 bars on each side
LEVELS_PER_SIDE = 3

# The declared variables of every analysis template (see prompts.variables).
ANALYSIS_VARIABLES: tuple[dict[str, Any], ...] = (
    {"name": "symbol", "type": "string", "description": "ticker, e.g. AAPL"},
    {"name": "timeframe", "type": "string", "description": "bar timeframe, e.g. 1d"},
    {"name": "as_of", "type": "string", "description": "time of the last bar (ISO 8601)"},
    {"name": "bars", "type": "list",
     "description": f"last {RECENT_BARS} bars: {{date, open, high, low, close, volume}}"},
    {"name": "bars_table", "type": "string", "description": "the same bars as a text table"},
    {"name": "indicators", "type": "object",
     "description": "latest close, change_pct, sma_20/50/200, ema_12/26, rsi_14, macd, "
                    "macd_signal, macd_histogram, bb_upper/middle/lower, bb_width_pct, atr_14, "
                    "atr_pct, volume, volume_avg_20, volume_ratio (null when too few bars)"},
    {"name": "levels", "type": "object",
     "description": "support and resistance: {support: [...], resistance: [...], "
                    "high_20, low_20, high_52w, low_52w}"},
    {"name": "strategy", "type": "object", "nullable": True,
     "description": "{name, params} of the strategy asking, or null"},
    {"name": "market_context", "type": "object", "nullable": True,
     "description": "market context from the caller, or null"},
    {"name": "gex", "type": "object", "nullable": True,
     "description": "gamma exposure levels from the caller, or null"},
)


def analysis_variables(session: Session, *, symbol: str, timeframe: str,
                     strategy: tuple[str, Mapping[str, Any]] | None = None,
                     as_of: datetime | None = None,
                     market_context: dict[str, Any] | None = None,
                     gex: dict[str, Any] | None = None) -> dict[str, Any]:
    """The variables of an analysis prompt for `symbol` on `timeframe` bars up to `as_of`
    (default: the latest stored bar).

    `strategy` is (name, params). Raises market_data's NoBarsError when no bars are stored.
    Every value is plain JSON (str, float, int, None, lists, dicts), so it renders in the
    sandbox and can be logged or stored as is.
    """
    bars = load_bars(session=session, symbol=symbol, timeframe=timeframe, end=as_of,
                     limit=LOOKBACK)
    recent = recent_bars(bars)
    return {
        "symbol": bars.symbol,
        "timeframe": timeframe,
        "as_of": utc_datetime(bars.ts[-1]).isoformat(),
        "bars": recent,
        "bars_table": bars_table(recent),
        "indicators": indicator_snapshot(bars),
        "levels": support_resistance(bars),
        "strategy": None if strategy is None else {"name": strategy[0],
                                                   "params": dict(strategy[1])},
        "market_context": market_context,
        "gex": gex,
    }


def recent_bars(bars: BarArrays, count: int = RECENT_BARS) -> list[dict[str, Any]]:
    """The last `count` bars, oldest first, as plain dicts."""
    start = max(len(bars) - count, 0)
    return [{"date": _bar_time(bars.ts[i]),
             "open": _num(bars.open[i]), "high": _num(bars.high[i]),
             "low": _num(bars.low[i]), "close": _num(bars.close[i]),
             "volume": _num(bars.volume[i], 0)} for i in range(start, len(bars))]


def _bar_time(ts: np.datetime64) -> str:
    at = utc_datetime(ts)
    return at.strftime("%Y-%m-%d" if (at.hour, at.minute) == (0, 0) else "%Y-%m-%d %H:%M")


def bars_table(recent: list[dict[str, Any]]) -> str:
    """The bars as an aligned text table, the form models read most reliably."""
    header = f"{'date':16} {'open':>12} {'high':>12} {'low':>12} {'close':>12} {'volume':>14}"
    rows = [f"{b['date']:16} {b['open']:>12} {b['high']:>12} {b['low']:>12} {b['close']:>12} "
            f"{b['volume']:>14}" for b in recent]
    return "\n".join([header, *rows])


def indicator_snapshot(bars: BarArrays) -> dict[str, Any]:
    """The latest value of each indicator (None when there are too few bars for it)."""
    close, volume = bars.close, bars.volume
    last_close = float(close[-1])
    macd_line = _last(_safe(lambda: ind.macd(close, 12, 26)))
    macd_signal = _last(_safe(lambda: ind.macd_signal(close, 12, 26, 9)))
    bb_upper = _last(_safe(lambda: ind.bbands_upper(close, 20, 2.0)))
    bb_lower = _last(_safe(lambda: ind.bbands_lower(close, 20, 2.0)))
    bb_middle = _last(_safe(lambda: ind.sma(close, 20)))
    # ATR from the market snapshot the decision's context also reads: one atr_pct for both.
    snapshot = market_snapshot(bars)
    volume_avg = _last(_safe(lambda: ind.sma(volume, 20)))
    return {
        "close": _num(last_close),
        "change_pct": _pct(last_close, float(close[-2])) if len(close) > 1 else None,
        "sma_20": bb_middle,
        "sma_50": _last(_safe(lambda: ind.sma(close, 50))),
        "sma_200": _last(_safe(lambda: ind.sma(close, 200))),
        "ema_12": _last(_safe(lambda: ind.ema(close, 12))),
        "ema_26": _last(_safe(lambda: ind.ema(close, 26))),
        "rsi_14": _last(_safe(lambda: ind.rsi(close, 14)), 2),
        "macd": macd_line,
        "macd_signal": macd_signal,
        "macd_histogram": _diff(macd_line, macd_signal),
        "bb_upper": bb_upper,
        "bb_middle": bb_middle,
        "bb_lower": bb_lower,
        "bb_width_pct": None if None in (bb_upper, bb_lower, bb_middle) or not bb_middle
        else _num(100 * (bb_upper - bb_lower) / bb_middle, 2),  # type: ignore[operator]
        "atr_14": None if snapshot.atr is None else _num(snapshot.atr),
        "atr_pct": None if snapshot.atr_pct is None else _num(snapshot.atr_pct, 2),
        "volume": _num(volume[-1], 0),
        "volume_avg_20": None if volume_avg is None else _num(volume_avg, 0),
        "volume_ratio": None if not volume_avg else _num(float(volume[-1]) / volume_avg, 2),
    }


def support_resistance(bars: BarArrays) -> dict[str, Any]:
    """Support below and resistance above the last close from swing lows/highs (a bar whose
    low/high is the extreme of the SWING_WINDOW bars on each side), nearest first, plus the
    20-bar and 52-week (252-bar) ranges."""
    close = float(bars.close[-1])
    swing_lows = _swings(bars.low, np.less_equal)
    swing_highs = _swings(bars.high, np.greater_equal)
    return {
        "support": sorted({_num(v) for v in swing_lows if v < close},
                          reverse=True)[:LEVELS_PER_SIDE],
        "resistance": sorted({_num(v) for v in swing_highs if v > close})[:LEVELS_PER_SIDE],
        "high_20": _num(bars.high[-20:].max()),
        "low_20": _num(bars.low[-20:].min()),
        "high_52w": _num(bars.high[-252:].max()),
        "low_52w": _num(bars.low[-252:].min()),
    }


def _swings(values: np.ndarray, compare: Any) -> list[float]:
    n, w = len(values), SWING_WINDOW
    found = []
    for i in range(w, n - w):
        window = values[i - w:i + w + 1]
        if bool(np.all(compare(values[i], window))):
            found.append(float(values[i]))
    return found


def _safe(compute: Any) -> np.ndarray | None:
    try:
        return compute()  # type: ignore[no-any-return]
    except ValueError:  # fewer bars than the period
        return None


def _last(values: np.ndarray | None, digits: int = 4) -> float | None:
    if values is None or len(values) == 0:
        return None
    return _num(values[-1], digits)


def _num(value: Any, digits: int = 4) -> Any:
    number = float(value)
    if math.isnan(number) or math.isinf(number):
        return None
    return round(number) if digits == 0 else round(number, digits)


def _pct(now: float, before: float) -> float | None:
    return None if before == 0 else _num(100 * (now - before) / before, 2)


def _diff(a: float | None, b: float | None) -> float | None:
    return None if a is None or b is None else _num(a - b)
