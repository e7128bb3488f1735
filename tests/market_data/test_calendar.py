"""Market hours: NYSE holidays and early closes, normal sessions, 24/7 crypto, far dates."""

from __future__ import annotations

from datetime import UTC, date, datetime
from zoneinfo import ZoneInfo

import pytest

from tradeloop.market_data.calendar import ALWAYS_OPEN, MarketCalendar

NEW_YORK = ZoneInfo("America/New_York")


@pytest.fixture(scope="module")
def calendar() -> MarketCalendar:
    return MarketCalendar({"VOD": "XLON"})


def test_nyse_closed_on_christmas(calendar: MarketCalendar) -> None:
    assert not calendar.is_open("AAPL", datetime(2025, 12, 25, 11, 0, tzinfo=NEW_YORK))
    assert calendar.session("AAPL", date(2025, 12, 25)) is None
    assert date(2025, 12, 25) in calendar.holidays("AAPL", date(2025, 12, 1), date(2025, 12, 31))


def test_nyse_early_close_day_after_thanksgiving(calendar: MarketCalendar) -> None:
    session = calendar.session("SPY", date(2025, 11, 28))
    assert session is not None and session.early_close
    assert session.close.astimezone(NEW_YORK).time().hour == 13
    assert calendar.is_open("SPY", datetime(2025, 11, 28, 12, 59, tzinfo=NEW_YORK))
    assert not calendar.is_open("SPY", datetime(2025, 11, 28, 13, 0, tzinfo=NEW_YORK))
    early = calendar.early_closes("SPY", date(2025, 11, 1), date(2025, 11, 30))
    assert [s.day for s in early] == [date(2025, 11, 28)]


def test_nyse_open_on_a_normal_tuesday(calendar: MarketCalendar) -> None:
    tuesday_10am = datetime(2025, 11, 18, 10, 0, tzinfo=NEW_YORK)
    assert calendar.is_open("AAPL", tuesday_10am)
    assert calendar.next_close("AAPL", tuesday_10am) == datetime(2025, 11, 18, 21, 0, tzinfo=UTC)
    assert not calendar.is_open("AAPL", datetime(2025, 11, 18, 9, 29, tzinfo=NEW_YORK))
    assert calendar.next_open("AAPL", datetime(2025, 11, 18, 9, 0, tzinfo=NEW_YORK)) == \
        datetime(2025, 11, 18, 14, 30, tzinfo=UTC)


def test_crypto_trades_on_sunday(calendar: MarketCalendar) -> None:
    sunday = datetime(2025, 11, 23, 3, 0, tzinfo=UTC)
    assert calendar.exchange_for("BTCUSD") == ALWAYS_OPEN
    assert calendar.exchange_for("BINANCE:ETHUSDT") == ALWAYS_OPEN
    assert calendar.is_open("BTCUSD", sunday)
    assert calendar.next_close("BTCUSD", sunday) is None
    assert not calendar.is_open("AAPL", sunday)


def test_dates_years_ahead_answer(calendar: MarketCalendar) -> None:
    assert calendar.is_open("AAPL", datetime(2030, 6, 4, 10, 0, tzinfo=NEW_YORK))
    assert not calendar.is_open("AAPL", datetime(2030, 12, 25, 10, 0, tzinfo=NEW_YORK))
    assert calendar.next_open("AAPL", datetime(2030, 12, 24, 20, 0, tzinfo=UTC)).date() == \
        date(2030, 12, 26)


def test_symbol_map_overrides_default(calendar: MarketCalendar) -> None:
    assert calendar.exchange_for("VOD") == "XLON"
    london_noon = datetime(2025, 11, 18, 12, 0, tzinfo=UTC)
    assert calendar.is_open("VOD", london_noon)


def test_naive_time_and_unknown_exchange_are_refused() -> None:
    with pytest.raises(ValueError, match="timezone-aware"):
        MarketCalendar().is_open("AAPL", datetime(2025, 11, 18, 15, 0))
    with pytest.raises(ValueError, match="unknown exchange"):
        MarketCalendar({"X": "NOPE"})


def test_calendar_from_settings(monkeypatch: pytest.MonkeyPatch, tmp_path) -> None:
    from tradeloop.market_data.calendar import calendar_from_settings
    from tradeloop.settings import Settings

    monkeypatch.setenv("SYMBOL_EXCHANGES", '{"SHEL": "XLON"}')
    settings = Settings(_env_file=None, tradeloop_data_dir=tmp_path)  # type: ignore[call-arg]
    assert calendar_from_settings(settings).exchange_for("SHEL") == "XLON"
