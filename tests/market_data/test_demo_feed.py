"""The demo market feed: stored synthetic series receive the bars completed by now (5m bars
as they end, an equity's daily bar at the session close, crypto around the clock), equal to
the generator's; real series and demo series never loaded are left alone."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import UTC, date, datetime
from pathlib import Path

import pandas as pd
import pytest

from tests.conftest import store_bars
from tradeloop import domains
from tradeloop.db import Database
from tradeloop.market_data import service
from tradeloop.market_data.bar_files import ParsedBars
from tradeloop.market_data.demo import generate_demo_universe
from tradeloop.market_data.demo_bars import DEMO_SOURCE
from tradeloop.market_data.demo_feed import feed_demo_bars
from tradeloop.settings import get_settings
from tradeloop.tasks import load_task_modules, registered_schedules, run_task

load_task_modules(domains.TASK_MODULES)

# Tuesday 10 March 2026: NYSE (daylight saving time since the 8th) opens 13:30, closes 20:00 UTC.
DAY = date(2026, 3, 10)
UNIVERSE = {(s.symbol, s.timeframe): s.frame for s in generate_demo_universe(end=DAY)}


def store_demo_until(db: Database, symbol: str, timeframe: str, until: str,
                     rows: int = 40) -> None:
    """The last `rows` generated bars of a series before `until`, stored as synthetic."""
    frame = UNIVERSE[(symbol, timeframe)]
    frame = frame[frame.ts < pd.Timestamp(until)].tail(rows).reset_index(drop=True)
    with db.unit_of_work() as session:
        service.import_bars(session=session, symbol=symbol, timeframe=timeframe,
                            parsed=ParsedBars("demo", frame, 0), source=DEMO_SOURCE,
                            synthetic=True)


def feed(db: Database, hour: int, minute: int) -> dict[tuple[str, str], int]:
    """Run the feed at `hour`:`minute` UTC of DAY; how many bars each series received."""
    now = datetime(DAY.year, DAY.month, DAY.day, hour, minute, tzinfo=UTC)
    with db.unit_of_work() as session:
        report = feed_demo_bars(session=session, now=now)
    assert all(result.updated == 0 for result in report.series)
    return {(r.symbol, r.timeframe): r.inserted for r in report.series}


def bars(db: Database, symbol: str, timeframe: str) -> pd.DataFrame:
    with db.unit_of_work() as session:
        arrays = service.load_bars(session=session, symbol=symbol, timeframe=timeframe)
    return pd.DataFrame({"ts": arrays.ts, "close": arrays.close})


@pytest.fixture
def environment(tmp_path: Path,
                monkeypatch: pytest.MonkeyPatch) -> Iterator[pytest.MonkeyPatch]:
    """The process settings the scheduled task reads (get_settings, cached), in a data dir
    of the test's own."""
    monkeypatch.setenv("TRADELOOP_DATA_DIR", str(tmp_path / "data"))
    get_settings.cache_clear()
    yield monkeypatch
    get_settings.cache_clear()


def test_the_feed_appends_completed_bars_equal_to_the_generator(db: Database) -> None:
    store_demo_until(db, "ACME", "5m", "2026-03-10T14:00Z")
    store_demo_until(db, "ACME", "1d", "2026-03-10T00:00Z")
    store_demo_until(db, "BTCUSD", "5m", "2026-03-10T14:00Z")
    store_demo_until(db, "BTCUSD", "1d", "2026-03-10T00:00Z")

    # 15:02: the 5m bars that ended by 15:00 (the last opened at 14:55); no daily bar yet.
    written = feed(db, 15, 2)
    assert set(written) == {("ACME", "5m"), ("BTCUSD", "5m")}
    for symbol in ("ACME", "BTCUSD"):
        stored = bars(db, symbol, "5m")
        assert pd.Timestamp(stored.ts.iloc[-1]) == pd.Timestamp("2026-03-10T14:55")
        expected = UNIVERSE[(symbol, "5m")]
        expected = expected[expected.ts <= pd.Timestamp("2026-03-10T14:55Z")].tail(len(stored))
        assert stored.close.to_numpy().tolist() == expected.close.to_numpy().tolist()
    # Nothing new within the same five minutes.
    assert feed(db, 15, 4) == {}

    # After the close (20:00 UTC): ACME's session is complete, its daily bar too; ACME's
    # 5m bars stop at 19:55 while BTCUSD's go on; BTCUSD's day is complete only at midnight.
    written = feed(db, 21, 1)
    assert set(written) == {("ACME", "5m"), ("ACME", "1d"), ("BTCUSD", "5m")}
    assert pd.Timestamp(bars(db, "ACME", "5m").ts.iloc[-1]) == pd.Timestamp("2026-03-10T19:55")
    daily = bars(db, "ACME", "1d")
    assert pd.Timestamp(daily.ts.iloc[-1]) == pd.Timestamp("2026-03-10")
    assert daily.close.iloc[-1] == UNIVERSE[("ACME", "1d")].close.iloc[-1]
    assert pd.Timestamp(bars(db, "BTCUSD", "5m").ts.iloc[-1]) == pd.Timestamp("2026-03-10T20:55")
    assert pd.Timestamp(bars(db, "BTCUSD", "1d").ts.iloc[-1]) == pd.Timestamp("2026-03-09")


def test_the_feed_never_touches_real_or_unloaded_series(db: Database) -> None:
    store_bars(db, "ACME", 30, end="2026-03-09")  # real daily bars
    store_demo_until(db, "GLOBX", "1d", "2026-03-10T00:00Z")
    assert feed(db, 21, 1) == {("GLOBX", "1d"): 1}
    assert len(bars(db, "ACME", "1d")) == 30
    with db.unit_of_work() as session:
        series = {(s.symbol, s.timeframe) for s in service.list_series(session=session)}
    assert series == {("ACME", "1d"), ("GLOBX", "1d")}


def test_a_database_without_demo_gets_nothing(db: Database, environment) -> None:
    assert feed(db, 21, 1) == {}
    assert registered_schedules()["feed-demo-market"].task_name == "feed_demo_market"
    assert run_task(db, "feed_demo_market") == 0


def test_demo_feed_setting_switches_the_task_off(db: Database,
                                                 environment: pytest.MonkeyPatch) -> None:
    store_demo_until(db, "BTCUSD", "5m", "2026-03-10T14:00Z")
    environment.setenv("DEMO_FEED", "false")
    get_settings.cache_clear()
    assert get_settings().demo_feed is False
    assert run_task(db, "feed_demo_market") == 0
    assert pd.Timestamp(bars(db, "BTCUSD", "5m").ts.iloc[-1]) == pd.Timestamp("2026-03-10T13:55")
