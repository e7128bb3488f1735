"""Synthetic demo universe: deterministic, realistic enough, and valid as imported bars."""

from __future__ import annotations

import time
from datetime import UTC, date, datetime, timedelta

import exchange_calendars as xcals
import numpy as np
import pandas as pd
import pytest

from tradeloop.market_data.bar_files import BAR_COLUMNS, parse_bar_rows
from tradeloop.market_data.demo import (
    DEMO_SYMBOLS,
    DemoSeries,
    generate_demo_universe,
    last_completed_day,
)

EQUITIES = [symbol for symbol in DEMO_SYMBOLS if symbol != "BTCUSD"]
Universe = dict[tuple[str, str], pd.DataFrame]
# The fixed end most tests use; the default end (the last completed day) is tested apart.
END = date(2025, 12, 31)


def frames(universe: list[DemoSeries]) -> Universe:
    return {(s.symbol, s.timeframe): s.frame for s in universe}


@pytest.fixture(scope="module")
def universe() -> Universe:
    return frames(generate_demo_universe(end=END))


@pytest.fixture(scope="module")
def nyse_sessions() -> pd.DatetimeIndex:
    calendar = xcals.get_calendar("XNYS", start="2014-01-02", end="2025-12-31")
    return calendar.sessions_in_range("2014-01-02", "2025-12-31")


def test_same_seed_gives_identical_frames() -> None:
    first, second = generate_demo_universe(7, end=END), generate_demo_universe(7, end=END)
    assert [(s.symbol, s.timeframe) for s in first] == [(s.symbol, s.timeframe) for s in second]
    for a, b in zip(first, second, strict=True):
        pd.testing.assert_frame_equal(a.frame, b.frame, check_exact=True)
        assert (pd.util.hash_pandas_object(a.frame).to_numpy().tobytes()
                == pd.util.hash_pandas_object(b.frame).to_numpy().tobytes())


def test_different_seeds_give_different_frames() -> None:
    for a, b in zip(generate_demo_universe(1, end=END), generate_demo_universe(2, end=END),
                    strict=True):
        assert not a.frame.equals(b.frame)
        assert a.frame.ts.equals(b.frame.ts)  # the calendar is the same, the prices are not


def test_shape(universe: Universe) -> None:
    assert set(DEMO_SYMBOLS) >= {"ACME", "BTCUSD"} and len(DEMO_SYMBOLS) >= 5
    assert sorted(universe) == sorted([(s, "1d") for s in DEMO_SYMBOLS]
                                      + [("ACME", "5m"), ("BTCUSD", "5m")])
    for symbol in DEMO_SYMBOLS:
        daily = universe[(symbol, "1d")]
        assert daily.ts.iloc[0] == pd.Timestamp("2014-01-02", tz="UTC")
        assert daily.ts.iloc[-1] == pd.Timestamp("2025-12-31", tz="UTC")
        assert len(daily) >= 10 * 250
    for symbol in ("ACME", "BTCUSD"):
        days = universe[(symbol, "5m")].ts.dt.normalize().unique()
        assert days.min() >= pd.Timestamp("2025-11-02", tz="UTC")
        assert days.max() == pd.Timestamp("2025-12-31", tz="UTC")
    assert len(universe[("BTCUSD", "5m")]) == 60 * 288


def test_frames_have_the_parsed_bars_types(universe: Universe) -> None:
    for frame in universe.values():
        assert tuple(frame.columns) == BAR_COLUMNS
        assert str(frame.ts.dtype) == "datetime64[ns, UTC]"
        assert all(frame[c].dtype == np.float64 for c in BAR_COLUMNS[1:])
        assert frame.ts.is_monotonic_increasing and frame.ts.is_unique
        assert (frame[list(BAR_COLUMNS[1:5])] == frame[list(BAR_COLUMNS[1:5])].round(2)).all().all()


def test_ohlc_is_consistent_and_volume_positive(universe: Universe) -> None:
    for frame in universe.values():
        assert (frame.low > 0).all()
        assert (frame.low <= frame[["open", "close"]].min(axis=1)).all()
        assert (frame.high >= frame[["open", "close"]].max(axis=1)).all()
        assert (frame.volume > 0).all()


def test_equities_trade_on_nyse_sessions_only(universe: Universe,
                                              nyse_sessions: pd.DatetimeIndex) -> None:
    for symbol in EQUITIES:
        days = universe[(symbol, "1d")].ts.dt.tz_localize(None)
        assert pd.DatetimeIndex(days).equals(pd.DatetimeIndex(nyse_sessions))
        assert not (days.dt.day_of_week >= 5).any()
        assert pd.Timestamp("2025-12-25") not in set(days)
        assert pd.Timestamp("2025-07-04") not in set(days)
        assert pd.Timestamp("2024-03-29") not in set(days)  # Good Friday


def test_intraday_acme_covers_session_minutes(universe: Universe) -> None:
    local = universe[("ACME", "5m")].ts.dt.tz_convert("America/New_York")
    minutes = local.dt.hour * 60 + local.dt.minute
    assert minutes.min() == 9 * 60 + 30
    assert minutes.max() == 15 * 60 + 55
    per_day = local.groupby(local.dt.date).size()
    assert per_day[date(2025, 12, 1)] == 78
    assert per_day[date(2025, 11, 28)] == 42  # early close at 13:00
    assert date(2025, 11, 27) not in per_day.index  # Thanksgiving


def test_bitcoin_trades_every_day(universe: Universe) -> None:
    daily = universe[("BTCUSD", "1d")]
    assert len(daily) == (date(2025, 12, 31) - date(2014, 1, 2)).days + 1
    assert (daily.ts.dt.day_of_week >= 5).sum() > 1000
    assert (daily.open.to_numpy()[1:] == daily.close.to_numpy()[:-1]).all()
    five = universe[("BTCUSD", "5m")]
    assert (five.ts.diff().dropna() == pd.Timedelta("5min")).all()


def test_equities_gap_overnight(universe: Universe) -> None:
    for symbol in EQUITIES:
        daily = universe[(symbol, "1d")]
        gapped = daily.open.to_numpy()[1:] != daily.close.to_numpy()[:-1]
        assert gapped.mean() > 0.5


def test_volatility_regimes_are_visible(universe: Universe) -> None:
    for symbol in DEMO_SYMBOLS:
        returns = np.log(universe[(symbol, "1d")].close).diff()
        rolling = returns.rolling(63).std().dropna()
        assert rolling.quantile(0.9) / rolling.quantile(0.1) >= 2


def test_volume_rises_with_volatility(universe: Universe) -> None:
    for symbol in DEMO_SYMBOLS:
        daily = universe[(symbol, "1d")]
        volatility = np.log(daily.close).diff().abs().rolling(21).mean()
        volume = np.log(daily.volume).rolling(21).mean()
        assert volatility.corr(volume) > 0.3


def test_intraday_bars_follow_the_daily_path(universe: Universe) -> None:
    for symbol in ("ACME", "BTCUSD"):
        daily = universe[(symbol, "1d")].set_index("ts")
        five = universe[(symbol, "5m")]
        key = five.ts.dt.tz_convert("America/New_York" if symbol == "ACME" else "UTC")
        days = key.dt.normalize().dt.tz_localize(None).dt.tz_localize("UTC")
        grouped = five.groupby(days)
        summary = pd.DataFrame({"open": grouped.open.first(), "close": grouped.close.last(),
                                "high": grouped.high.max(), "low": grouped.low.min()})
        on_days = daily.loc[summary.index]
        pd.testing.assert_series_equal(summary.open, on_days.open, check_names=False)
        pd.testing.assert_series_equal(summary.close, on_days.close, check_names=False)
        assert (summary.high <= on_days.high).all() and (summary.low >= on_days.low).all()


def test_demo_frames_pass_the_import_validation() -> None:
    for series in generate_demo_universe(3, end=END):
        assert_valid(series)


def assert_valid(series: DemoSeries) -> None:
    rows = series.frame.assign(ts=series.frame.ts.map(pd.Timestamp.isoformat)).to_dict("records")
    parsed = parse_bar_rows(rows, timeframe=series.timeframe)
    assert parsed.dropped_duplicates == 0
    pd.testing.assert_frame_equal(parsed.frame, series.frame, check_exact=True)


def test_other_end_dates_and_speed() -> None:
    started = time.perf_counter()
    universe = generate_demo_universe(end=date(2024, 6, 30))
    assert time.perf_counter() - started < 2.0
    daily = {s.symbol: s.frame for s in universe if s.timeframe == "1d"}
    assert daily["ACME"].ts.iloc[-1] == pd.Timestamp("2024-06-28", tz="UTC")  # a Friday
    assert daily["BTCUSD"].ts.iloc[-1] == pd.Timestamp("2024-06-30", tz="UTC")


def test_by_default_it_runs_through_the_last_completed_day() -> None:
    """Issue 13: the universe ended on 2025-12-31, so a new install's bars were stale."""
    assert last_completed_day(date(2026, 12, 7)) == date(2026, 12, 6)
    yesterday = datetime.now(UTC).date() - timedelta(days=1)
    today = frames(generate_demo_universe())
    assert today[("BTCUSD", "1d")].ts.iloc[-1] == pd.Timestamp(yesterday, tz="UTC")
    assert today[("BTCUSD", "5m")].ts.iloc[-1] == pd.Timestamp(yesterday, tz="UTC") + \
        pd.Timedelta(hours=23, minutes=55)
    calendar = xcals.get_calendar("XNYS")
    last_session = calendar.date_to_session(pd.Timestamp(yesterday), direction="previous")
    for symbol in EQUITIES:
        assert today[(symbol, "1d")].ts.iloc[-1] == pd.Timestamp(last_session, tz="UTC")
    assert today[("ACME", "5m")].ts.iloc[-1] == \
        calendar.session_close(last_session) - pd.Timedelta(minutes=5)
    again = frames(generate_demo_universe())  # same day, same bars
    for key, frame in today.items():
        pd.testing.assert_frame_equal(frame, again[key], check_exact=True)


def test_a_later_end_appends_and_never_changes_a_bar() -> None:
    """Extending the demo universe day by day keeps its history: a stored demo series only
    grows, and a backtest over past dates gives the same answer tomorrow."""
    earlier = frames(generate_demo_universe(5, end=date(2025, 11, 20)))
    later = frames(generate_demo_universe(5, end=date(2025, 12, 31)))
    for key, frame in earlier.items():
        shared = later[key][later[key].ts.isin(frame.ts)].reset_index(drop=True)
        if key[1] == "1d":
            assert len(shared) == len(frame) and len(later[key]) > len(frame)
        else:  # the 5m window moved on: the days in both windows are the same bars
            assert len(shared) > 0.3 * len(frame)
        pd.testing.assert_frame_equal(
            frame[frame.ts.isin(shared.ts)].reset_index(drop=True), shared, check_exact=True)
