"""Market context of a signal from stored bars: latest close, trend and volatility.

A missing series or a failing read never stops processing: the context comes back degraded,
with the problem written down, and the decision records it.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime, timedelta
from decimal import Decimal
from typing import Any

import structlog
from sqlalchemy.orm import Session

from tradeloop.market_context.snapshot import LOOKBACK, market_snapshot
from tradeloop.market_data.calendar import MarketCalendar
from tradeloop.market_data.service import BarArrays, load_bars, utc_datetime
from tradeloop.market_data.timeframes import DAILY_TIMEFRAMES, TIMEFRAME_SECONDS
from tradeloop.schema_types import plain_decimal

log = structlog.get_logger(__name__)

FALLBACK_TIMEFRAME = "1d"
PRICE_STEP = Decimal("1e-8")  # the Numeric(20, 8) price columns
# Past this wall-clock age intraday bars are stale without asking the calendar: no market
# closes for two weeks.
CALENDAR_HORIZON = timedelta(days=14)

Problem = dict[str, str]  # {"kind": …, "message": …}: why a context is degraded


def problem(kind: str, message: str) -> Problem:
    """A degraded reason; `kind` is stable (health counts by it), `message` is for people."""
    return {"kind": kind, "message": message}


@dataclass(frozen=True)
class MarketContext:
    """What the bars say about a symbol at a signal's time."""

    latest_close: Decimal | None = None
    bar_time: datetime | None = None
    timeframe: str | None = None
    trend: str | None = None  # up | down | sideways
    sma20: float | None = None
    sma50: float | None = None
    atr_pct: float | None = None
    problems: list[Problem] = field(default_factory=list)

    @property
    def degraded(self) -> bool:
        return bool(self.problems)

    def as_json(self) -> dict[str, Any]:
        return {"latest_close": None if self.latest_close is None
                else plain_decimal(self.latest_close),
                "bar_time": self.bar_time.isoformat() if self.bar_time else None,
                "timeframe": self.timeframe, "trend": self.trend, "sma20": self.sma20,
                "sma50": self.sma50, "atr_pct": self.atr_pct, "problems": self.problems}


def build_context(*, session: Session, symbol: str, timeframe: str,
                  at: datetime) -> MarketContext:
    """Context from the signal's timeframe, else daily bars, up to `at`."""
    try:
        bars = _recent_bars(session, symbol, timeframe, at)
    except Exception as exc:  # a broken provider degrades, it does not fail the signal
        log.warning("context_failed", symbol=symbol, error=str(exc))
        return MarketContext(problems=[problem("context_failed",
                                               f"context provider failed: {exc}")])
    if bars is None:
        return MarketContext(problems=[problem(
            "bars_missing", f"no {timeframe} or {FALLBACK_TIMEFRAME} bars for {symbol} up to "
            f"{at.isoformat()}")])
    return summarize(bars)


def _recent_bars(session: Session, symbol: str, timeframe: str,
                 at: datetime) -> BarArrays | None:
    for frame in dict.fromkeys((timeframe, FALLBACK_TIMEFRAME)):
        bars = load_bars(session=session, symbol=symbol, timeframe=frame, end=at,
                         limit=LOOKBACK, required=False)
        if len(bars):
            return bars
    return None


def summarize(bars: BarArrays) -> MarketContext:
    """Latest close, trend (close against SMA 20/50) and Wilder's ATR as a percentage of the
    close: the market snapshot the analysis prompt also reads."""
    snapshot = market_snapshot(bars)
    problems = [] if snapshot.sma20 is not None else [
        problem("bars_insufficient", f"only {len(bars)} bars: trend unknown")]
    return MarketContext(
        latest_close=Decimal(str(snapshot.close)).quantize(PRICE_STEP),
        bar_time=utc_datetime(bars.ts[-1]), timeframe=bars.timeframe, trend=snapshot.trend,
        sma20=snapshot.sma20, sma50=snapshot.sma50, atr_pct=snapshot.atr_pct,
        problems=problems)


def stale_bars(context: MarketContext, *, symbol: str, at: datetime,
               calendar: MarketCalendar, after_bars: float) -> Problem | None:
    """A problem when the latest bar ended more than `after_bars` bar lengths before `at`.

    Daily and weekly bars count wall-clock time (five days absorb a weekend and a holiday);
    intraday bars count the minutes the symbol's market was open since the bar ended, so the
    Friday close is not stale at Monday's open but a feed that stopped mid-session is.
    """
    seconds = TIMEFRAME_SECONDS.get(context.timeframe or "")
    if context.bar_time is None or seconds is None:
        return None
    bar_end = context.bar_time + timedelta(seconds=seconds)
    limit = timedelta(seconds=seconds * after_bars)
    age = at - bar_end
    if age <= limit:
        return None
    if context.timeframe not in DAILY_TIMEFRAMES and age <= limit + CALENDAR_HORIZON:
        traded = timedelta(minutes=calendar.open_minutes(symbol, bar_end, at))
        if traded <= limit:
            return None
        age = traded
    return problem("bars_stale", f"latest {context.timeframe} bar of {symbol} "
                   f"({context.bar_time.isoformat()}) is {_hours(age)} old at "
                   f"{at.isoformat()}; stale after {after_bars:g} bars")


def _hours(age: timedelta) -> str:
    return f"{age.total_seconds() / 3600:.1f} h"
