"""The demo market feed: the synthetic demo series grow as time passes, so a demo installation
is alive from its first start (issue 15) — an active demo strategy gets new bars, produces
signals, decisions and positions.

Every few minutes (market_data.tasks) each stored synthetic series receives the bars of the
generator (`demo.py`) that have *completed* by now: a five-minute bar once its five minutes
are over (equities inside NYSE sessions, BTCUSD around the clock), an equity's daily bar at
its session's close, BTCUSD's daily bar at midnight UTC. The generator only appends when its
end moves on, so a bar the feed wrote today is the very bar the daily extension (and any later
load) computes for it: nothing is ever rewritten. Series holding real (imported) bars are
never touched, nor are demo series that were never loaded.
"""

from __future__ import annotations

import functools
from dataclasses import dataclass, field
from datetime import UTC, date, datetime

import pandas as pd
from sqlalchemy.orm import Session

from tradeloop.market_data import service
from tradeloop.market_data.bar_files import ParsedBars
from tradeloop.market_data.demo import (
    BAR_MINUTES,
    CRYPTO_SYMBOLS,
    DemoSeries,
    generate_demo_universe,
    nyse_calendar,
)
from tradeloop.market_data.demo_bars import DEMO_SOURCE
from tradeloop.market_data.service import ImportResult

FEED_LAYOUT = "demo feed"


@dataclass
class DemoFeedReport:
    series: list[ImportResult] = field(default_factory=list)

    @property
    def new_bars(self) -> int:
        return sum(result.inserted for result in self.series)


# Generating the universe takes about a second: once per day and process, not every run.
@functools.lru_cache(maxsize=2)
def _universe_through(day: date) -> tuple[DemoSeries, ...]:
    return tuple(generate_demo_universe(end=day))


def bar_ends(symbol: str, timeframe: str, ts: pd.Series) -> pd.Series:
    """When each bar (opening at `ts`) is complete, in UTC: what the feed waits for."""
    if timeframe != "1d":
        return ts + pd.Timedelta(minutes=BAR_MINUTES)
    if symbol in CRYPTO_SYMBOLS:
        return ts + pd.Timedelta(days=1)
    calendar = nyse_calendar(ts.iloc[-1].date())
    closes = [calendar.session_close(label.tz_localize(None)) for label in ts]
    return pd.Series(pd.DatetimeIndex(closes).tz_convert("UTC"), index=ts.index)


def completed_since(series: DemoSeries, after: datetime | None, now: datetime) -> pd.DataFrame:
    """The bars of `series` newer than `after` that are complete at `now`."""
    frame = series.frame
    if after is not None:
        frame = frame[frame.ts > pd.Timestamp(after)]
    if frame.empty:
        return frame
    return frame[(bar_ends(series.symbol, series.timeframe, frame.ts)
                  <= pd.Timestamp(now)).to_numpy()].reset_index(drop=True)


def feed_demo_bars(*, session: Session, now: datetime | None = None) -> DemoFeedReport:
    """Append to every stored synthetic demo series the bars completed by `now` (default:
    the current time); each import announces its bars (BARS_CHANGED) after the commit."""
    now = now or datetime.now(UTC)
    report = DemoFeedReport()
    synthetic = {(s.symbol, s.timeframe): s for s in service.list_series(session=session)
                 if s.synthetic}
    if not synthetic:
        return report
    # Only the bars after each series' last one are compared and written: today's, and
    # whatever a stopped server missed since.
    for demo in _universe_through(now.astimezone(UTC).date()):
        stored = synthetic.get((demo.symbol, demo.timeframe))
        if stored is None:
            continue
        after = stored.last_ts
        if after is not None and after.tzinfo is None:
            after = after.replace(tzinfo=UTC)
        fresh = completed_since(demo, after, now)
        if fresh.empty:
            continue
        report.series.append(service.import_bars(
            session=session, symbol=demo.symbol, timeframe=demo.timeframe,
            parsed=ParsedBars(layout=FEED_LAYOUT, frame=fresh, dropped_duplicates=0),
            source=DEMO_SOURCE, synthetic=True))
    return report
