"""A deterministic synthetic demo universe: fictional symbols from one seeded stochastic model.

A common market factor with Markov trend regimes (flat, bull, bear drift) and Markov
volatility regimes (calm, stressed) drives every symbol through its beta, plus fat-tailed
idiosyncratic noise. Equities trade on NYSE sessions: what happens while the market is closed
(nights, weekends, holidays, occasional earnings jumps) shows up as a gap at the next open.
BTCUSD trades every day, each bar opening at the previous close. Volume rises with volatility.
Five-minute bars are random-walk bridges (fat-tailed steps) from each day's open to its close,
and every day's high and low are widened to cover them, also on the days whose five-minute bars
are not kept, so that a day's bar is the same whether or not it is in the 60-day window.

The universe runs from 2014-01-02 through `end`, by default the last day completed before
today (UTC): a new installation starts with current bars. Every array is drawn in day order
from a `numpy.random.default_rng` stream of its own, named after what it draws, so a later
`end` only appends days: an earlier bar never changes, and the same seed and end give
identical frames.
"""

from __future__ import annotations

import zlib
from dataclasses import dataclass
from datetime import UTC, date, datetime, timedelta

import exchange_calendars as xcals
import numpy as np
import pandas as pd

from tradeloop.market_data.bar_files import BAR_COLUMNS, TS_DTYPE

DEMO_SYMBOLS = ("ACME", "GLOBX", "INITECH", "UMBRL", "BTCUSD")
INTRADAY_SYMBOLS = ("ACME", "BTCUSD")
DEMO_SEED = 20260101
FIRST_DAY = date(2014, 1, 2)
INTRADAY_DAYS = 60
EXCHANGE = "XNYS"
BAR_MINUTES = 5
# Five-minute draws per day: a whole day, or the longest NYSE session (09:30-16:00), so that a
# day's draws never depend on how long the other days' sessions were.
FULL_DAY_BARS = 24 * 60 // BAR_MINUTES
SESSION_BARS = 78
BAR_NS = np.int64(BAR_MINUTES * 60 * 10**9)
# Days of five-minute bars computed at once: bounded memory over the whole history.
CHUNK_DAYS = 256

TREND_DRIFTS = (0.0001, 0.0006, -0.001)  # flat, bull, bear: market log drift per day
TREND_STAY = (0.995, 0.996, 0.99)
VOL_LEVELS = (1.0, 2.5)  # calm, stressed: multiplier on every volatility
VOL_STAY = (0.993, 0.96)
MARKET_VOL = 0.006
TAIL_DF = 5
# Share of a closed day's news that still moves an equity (the weekend is quieter).
CLOSED_DAY_WEIGHT = 0.35
OVERNIGHT_VOL = 0.3
EARNINGS_PROBABILITY = 1 / 63
EARNINGS_VOL = 4.0
RANGE_VOL = 0.6


@dataclass(frozen=True)
class DemoSeries:
    """One generated series: `frame` has the columns and types of ParsedBars.frame."""

    symbol: str
    timeframe: str
    frame: pd.DataFrame


@dataclass(frozen=True)
class _Profile:
    start: float
    vol: float
    beta: float
    alpha: float
    volume: float
    crypto: bool = False


_PROFILES = {
    "ACME": _Profile(start=42.0, vol=0.008, beta=1.0, alpha=0.0002, volume=3.0e6),
    "GLOBX": _Profile(start=118.0, vol=0.006, beta=0.7, alpha=0.0001, volume=1.5e6),
    "INITECH": _Profile(start=23.5, vol=0.014, beta=1.4, alpha=0.0001, volume=6.0e6),
    "UMBRL": _Profile(start=67.0, vol=0.011, beta=1.1, alpha=-0.0001, volume=2.0e6),
    "BTCUSD": _Profile(start=780.0, vol=0.022, beta=1.6, alpha=0.0004, volume=3.0e4,
                       crypto=True),
}
CRYPTO_SYMBOLS = tuple(symbol for symbol, profile in _PROFILES.items() if profile.crypto)


@dataclass(frozen=True)
class _Market:
    drift: np.ndarray
    vol: np.ndarray
    shock: np.ndarray


class _Streams:
    """Independent random streams by name. Each array is drawn in day order from its own
    stream, so drawing it longer (a later end) keeps its earlier values."""

    def __init__(self, seed: int, *prefix: str):
        self.seed, self.prefix = seed, prefix

    def __call__(self, name: str) -> np.random.Generator:
        key = zlib.crc32("/".join((*self.prefix, name)).encode())
        return np.random.default_rng([self.seed, key])

    def of(self, name: str) -> _Streams:
        return _Streams(self.seed, *self.prefix, name)


def last_completed_day(today: date | None = None) -> date:
    """The day before `today` (UTC by default): all its sessions have closed, today's may not."""
    return (today or datetime.now(UTC).date()) - timedelta(days=1)


def generate_demo_universe(seed: int = DEMO_SEED, *, end: date | None = None) -> list[DemoSeries]:
    """Daily bars of every demo symbol from 2014-01-02 through `end` (default: the last
    completed day) and 5m bars of its last 60 days."""
    end = end or last_completed_day()
    streams = _Streams(seed)
    days = pd.date_range(FIRST_DAY, end, freq="D")
    calendar = nyse_calendar(end)
    sessions = calendar.sessions_in_range(pd.Timestamp(FIRST_DAY), pd.Timestamp(end))
    market = _market(streams.of("market"), len(days))
    window_start = pd.Timestamp(end - timedelta(days=INTRADAY_DAYS - 1))
    daily: list[DemoSeries] = []
    intraday: list[DemoSeries] = []
    for symbol in DEMO_SYMBOLS:
        profile, draws = _PROFILES[symbol], streams.of(symbol)
        returns, sigma = _returns(draws("idiosyncratic"), market, profile)
        if profile.crypto:
            labels, bars = days, _crypto_daily(draws, returns, sigma, profile)
            sigma_by_bar = sigma
        else:
            labels = sessions
            bars, sigma_by_bar = _equity_daily(draws, days, sessions, returns, sigma, profile)
        if symbol in INTRADAY_SYMBOLS:
            bars, five = _intraday(draws.of("5m"), bars, sigma_by_bar,
                                   _day_slots(calendar, labels, profile.crypto),
                                   keep=np.asarray(labels >= window_start))
            intraday.append(DemoSeries(symbol, f"{BAR_MINUTES}m", five))
        ts = pd.DatetimeIndex(labels).tz_localize("UTC")
        daily.append(DemoSeries(symbol, "1d", _frame(ts, bars)))
    return daily + intraday


def nyse_calendar(end: date) -> xcals.ExchangeCalendar:
    """The NYSE calendar through `end`: exchange_calendars' process-wide default one when it
    reaches that far (building a calendar takes about a second), else one of its own."""
    # A week of slack: exchange_calendars refuses ranges that end on a non-session.
    through = pd.Timestamp(end + timedelta(days=7))
    default = xcals.get_calendar(EXCHANGE)
    if default.first_session <= pd.Timestamp(FIRST_DAY) and default.last_session >= through:
        return default
    return xcals.get_calendar(EXCHANGE, start=FIRST_DAY.isoformat(), end=through)


def _markov(draws: _Streams, n: int, stay: tuple[float, ...]) -> np.ndarray:
    """A Markov chain over len(stay) states; leaving a state jumps to a random other one."""
    leave, hop = draws("leave").random(n), draws("hop").integers(1, len(stay), n)
    states = np.empty(n, dtype=np.int64)
    state = 0
    for i in range(n):
        if leave[i] > stay[state]:
            state = (state + hop[i]) % len(stay)
        states[i] = state
    return states


def _market(draws: _Streams, n: int) -> _Market:
    drift = np.asarray(TREND_DRIFTS)[_markov(draws.of("trend"), n, TREND_STAY)]
    vol = np.asarray(VOL_LEVELS)[_markov(draws.of("volatility"), n, VOL_STAY)]
    return _Market(drift=drift, vol=vol, shock=_fat_tailed(draws("shock"), n))


def _fat_tailed(rng: np.random.Generator, n: int) -> np.ndarray:
    """Student-t draws scaled to unit variance."""
    return rng.standard_t(TAIL_DF, n) * np.sqrt((TAIL_DF - 2) / TAIL_DF)


def _returns(rng: np.random.Generator, market: _Market,
             profile: _Profile) -> tuple[np.ndarray, np.ndarray]:
    """Log return and volatility of one symbol for every calendar day."""
    idiosyncratic = profile.vol * market.vol * _fat_tailed(rng, len(market.vol))
    returns = (profile.beta * (market.drift + MARKET_VOL * market.vol * market.shock)
               + profile.alpha + idiosyncratic)
    sigma = np.hypot(profile.beta * MARKET_VOL, profile.vol) * market.vol
    return returns, sigma


def _equity_daily(draws: _Streams, days: pd.DatetimeIndex, sessions: pd.DatetimeIndex,
                  returns: np.ndarray, sigma: np.ndarray,
                  profile: _Profile) -> tuple[dict[str, np.ndarray], np.ndarray]:
    """Session bars; closed days' returns and overnight news make the opening gap."""
    at = days.get_indexer(sessions)
    closed = np.ones(len(days), dtype=bool)
    closed[at] = False
    off_hours = np.concatenate([[0.0], np.cumsum(np.where(closed, returns, 0.0))])
    previous = np.concatenate([[at[0]], at[:-1]])
    session_sigma = sigma[at]
    gap = CLOSED_DAY_WEIGHT * (off_hours[at] - off_hours[previous + 1])
    gap += OVERNIGHT_VOL * session_sigma * draws("overnight").standard_normal(len(at))
    earnings = draws("earnings").random(len(at)) < EARNINGS_PROBABILITY
    surprise = draws("earnings size").standard_normal(len(at))
    gap += np.where(earnings, EARNINGS_VOL * session_sigma * surprise, 0.0)
    log_close = np.log(profile.start) + np.cumsum(gap + returns[at])
    bars = _bars(draws, np.exp(log_close - returns[at]), np.exp(log_close), session_sigma,
                 profile, continuous=False)
    return bars, session_sigma


def _crypto_daily(draws: _Streams, returns: np.ndarray, sigma: np.ndarray,
                  profile: _Profile) -> dict[str, np.ndarray]:
    log_close = np.log(profile.start) + np.cumsum(returns)
    return _bars(draws, np.exp(log_close - returns), np.exp(log_close), sigma, profile,
                 continuous=True)


def _bars(draws: _Streams, opens: np.ndarray, closes: np.ndarray, sigma: np.ndarray,
          profile: _Profile, *, continuous: bool) -> dict[str, np.ndarray]:
    """OHLCV in cents from an open/close path; `continuous`: each open is the last close."""
    close = _cents(closes)
    open_ = np.concatenate([_cents(opens[:1]), close[:-1]]) if continuous else _cents(opens)
    n = len(close)
    high = _cents(np.maximum(open_, close)
                  * np.exp(RANGE_VOL * sigma * _half_normal(draws("high"), n)))
    low = _cents(np.minimum(open_, close)
                 * np.exp(-RANGE_VOL * sigma * _half_normal(draws("low"), n)))
    calm = np.hypot(profile.beta * MARKET_VOL, profile.vol)
    move = np.abs(np.log(close / open_)) / sigma
    activity = (sigma / calm) ** 1.3 * np.exp(
        0.2 * move + 0.25 * draws("activity").standard_normal(n))
    volume = np.maximum(np.round(profile.volume * activity), 1.0)
    return {"open": open_, "high": high, "low": low, "close": close, "volume": volume}


def _half_normal(rng: np.random.Generator, shape: int | tuple[int, int]) -> np.ndarray:
    return np.abs(rng.standard_normal(shape))


def _cents(prices: np.ndarray) -> np.ndarray:
    # Rounding is monotone, so a rounded high still tops the rounded open and close.
    return np.maximum(np.round(prices, 2), 0.01)


@dataclass(frozen=True)
class _DaySlots:
    """Where each day's five-minute bars go: the first bar's open (UTC, ns since the epoch),
    how many bars the day has, and how many draws every day takes (`width`)."""

    first: np.ndarray
    counts: np.ndarray
    width: int


def _day_slots(calendar: xcals.ExchangeCalendar, labels: pd.DatetimeIndex,
               crypto: bool) -> _DaySlots:
    """Crypto trades the whole UTC day; equities the NYSE session (shorter on early closes)."""
    if crypto:
        first = pd.DatetimeIndex(labels).tz_localize("UTC").as_unit("ns")
        return _DaySlots(first.asi8, np.full(len(labels), FULL_DAY_BARS), FULL_DAY_BARS)
    opens, closes = calendar.opens.loc[labels], calendar.closes.loc[labels]
    counts = ((closes - opens) // pd.Timedelta(minutes=BAR_MINUTES)).to_numpy(dtype=np.int64)
    return _DaySlots(pd.DatetimeIndex(opens).as_unit("ns").asi8, counts, SESSION_BARS)


def _intraday(draws: _Streams, daily: dict[str, np.ndarray], sigma: np.ndarray,
              slots: _DaySlots, keep: np.ndarray) -> tuple[dict[str, np.ndarray], pd.DataFrame]:
    """5m bars bridging each day's open to its close, every day widened to cover them; the
    bars of the `keep` days are returned."""
    daily = {name: values.copy() for name, values in daily.items()}
    kept: list[dict[str, np.ndarray]] = []
    for start in range(0, len(slots.counts), CHUNK_DAYS):
        rows = np.arange(start, min(start + CHUNK_DAYS, len(slots.counts)))
        # Streams of their own per run of days: a run's draws do not depend on the runs
        # before it, so the volumes of runs without a kept day need not be drawn at all.
        chunk = draws.of(f"days {start}")
        bars, valid, bar_sigma = _bridges(chunk, daily["open"][rows], daily["close"][rows],
                                          sigma[rows], slots.counts[rows], slots.width)
        daily["high"][rows] = np.maximum(daily["high"][rows],
                                         np.where(valid, bars["high"], 0.0).max(axis=1))
        daily["low"][rows] = np.minimum(daily["low"][rows],
                                        np.where(valid, bars["low"], np.inf).min(axis=1))
        chosen = keep[rows]
        if not chosen.any():
            continue
        noise = chunk("volume").standard_normal(valid.shape)
        bars = {name: values[chosen] for name, values in bars.items()}
        bars["volume"] = _volumes(bars, valid[chosen], bar_sigma[chosen], noise[chosen],
                                  daily["volume"][rows[chosen]])
        bars["ts"] = slots.first[rows[chosen]][:, None] + np.arange(slots.width) * BAR_NS
        kept.append({name: values[valid[chosen]] for name, values in bars.items()})
    found = {name: np.concatenate([part[name] for part in kept]) for name in kept[0]}
    ts = pd.DatetimeIndex(found.pop("ts").astype("datetime64[ns]")).tz_localize("UTC")
    return daily, _frame(ts, found)


def _bridges(draws: _Streams, opens: np.ndarray, closes: np.ndarray,
             sigma: np.ndarray, counts: np.ndarray,
             width: int) -> tuple[dict[str, np.ndarray], np.ndarray, np.ndarray]:
    """OHLC of the five-minute bars of a run of days, one row of `width` slots per day; the
    mask of each day's first `count` slots; each day's volatility per bar."""
    shape, slot, count = (len(counts), width), np.arange(width), counts[:, None]
    valid = slot < count
    bar_sigma = sigma[:, None] / np.sqrt(count)
    # Laplace steps: fat-tailed like the daily Student-t shocks, at a fraction of their cost.
    steps = draws("walk").laplace(0.0, np.sqrt(0.5), shape)
    walk = np.cumsum(np.where(valid, bar_sigma * steps, 0.0), axis=1)
    elapsed = np.minimum(slot + 1, count) / count
    start, finish = np.log(opens)[:, None], np.log(closes)[:, None]
    close = _cents(np.exp(start + (finish - start) * elapsed + walk - elapsed * walk[:, -1:]))
    open_ = np.concatenate([opens[:, None], close[:, :-1]], axis=1)
    high = _cents(np.maximum(open_, close) * np.exp(bar_sigma * _half_normal(draws("high"), shape)))
    low = _cents(np.minimum(open_, close) * np.exp(-bar_sigma * _half_normal(draws("low"), shape)))
    return {"open": open_, "high": high, "low": low, "close": close}, valid, bar_sigma


def _volumes(bars: dict[str, np.ndarray], valid: np.ndarray, bar_sigma: np.ndarray,
             noise: np.ndarray, day_volume: np.ndarray) -> np.ndarray:
    """Each day's volume spread over its bars: U-shaped through the session, busier when a
    bar moves a lot."""
    count = valid.sum(axis=1, keepdims=True)
    clock = 2.0 * np.arange(valid.shape[1]) / np.maximum(count - 1, 1) - 1.0
    move = np.abs(np.log(bars["close"] / bars["open"])) / bar_sigma
    weight = np.where(valid, (1.0 + 1.5 * clock**2) * np.exp(0.3 * noise + 0.3 * move), 0.0)
    return np.maximum(np.round(day_volume[:, None] * weight
                               / weight.sum(axis=1, keepdims=True)), 1.0)


def _frame(ts: pd.DatetimeIndex, bars: dict[str, np.ndarray]) -> pd.DataFrame:
    frame = pd.DataFrame({"ts": ts.astype(TS_DTYPE), **bars})
    return frame[list(BAR_COLUMNS)].astype({c: np.float64 for c in BAR_COLUMNS[1:]})
