"""A deterministic synthetic demo universe: fictional symbols from one seeded stochastic model.

A common market factor with Markov trend regimes (flat, bull, bear drift) and Markov
volatility regimes (calm, stressed) drives every symbol through its beta, plus fat-tailed
idiosyncratic noise. Equities trade on NYSE sessions: what happens while the market is closed
(nights, weekends, holidays, occasional earnings jumps) shows up as a gap at the next open.
BTCUSD trades every day, each bar opening at the previous close. Volume rises with volatility.
Five-minute bars are Brownian bridges from each day's open to its close, and the daily high and
low are widened to cover them. Only `numpy.random.default_rng(seed)` is used: the same seed
gives identical frames.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import date, timedelta

import exchange_calendars as xcals
import numpy as np
import pandas as pd

from tradeloop.market_data.bar_files import BAR_COLUMNS, TS_DTYPE

DEMO_SYMBOLS = ("ACME", "GLOBX", "INITECH", "UMBRL", "BTCUSD")
INTRADAY_SYMBOLS = ("ACME", "BTCUSD")
FIRST_DAY = date(2014, 1, 2)
INTRADAY_DAYS = 60
EXCHANGE = "XNYS"
BAR_MINUTES = 5

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


@dataclass(frozen=True)
class _Market:
    drift: np.ndarray
    vol: np.ndarray
    shock: np.ndarray


def generate_demo_universe(seed: int = 20260101, *,
                           end: date = date(2025, 12, 31)) -> list[DemoSeries]:
    """Daily bars of every demo symbol since 2014-01-02 and 5m bars of the last 60 days."""
    rng = np.random.default_rng(seed)
    days = pd.date_range(FIRST_DAY, end, freq="D")
    # A week of slack: exchange_calendars refuses ranges that end on a non-session.
    calendar = xcals.get_calendar(EXCHANGE, start=FIRST_DAY.isoformat(),
                                  end=(end + timedelta(days=7)).isoformat())
    sessions = calendar.sessions[calendar.sessions <= pd.Timestamp(end)]
    market = _market(rng, len(days))
    window_start = pd.Timestamp(end - timedelta(days=INTRADAY_DAYS - 1))
    daily: list[DemoSeries] = []
    intraday: list[DemoSeries] = []
    for symbol in DEMO_SYMBOLS:
        profile = _PROFILES[symbol]
        returns, sigma = _returns(rng, market, profile)
        if profile.crypto:
            labels, bars = days, _crypto_daily(rng, returns, sigma, profile)
            sigma_by_bar = sigma
        else:
            labels = sessions
            bars, sigma_by_bar = _equity_daily(rng, days, sessions, returns, sigma, profile)
        if symbol in INTRADAY_SYMBOLS:
            rows = np.flatnonzero(labels >= window_start)
            starts = [_bar_starts(calendar, labels[row], profile.crypto) for row in rows]
            bars, five = _intraday(rng, bars, sigma_by_bar, rows, starts)
            intraday.append(DemoSeries(symbol, f"{BAR_MINUTES}m", five))
        ts = pd.DatetimeIndex(labels).tz_localize("UTC")
        daily.append(DemoSeries(symbol, "1d", _frame(ts, bars)))
    return daily + intraday


def _markov(rng: np.random.Generator, n: int, stay: tuple[float, ...]) -> np.ndarray:
    """A Markov chain over len(stay) states; leaving a state jumps to a random other one."""
    leave, hop = rng.random(n), rng.integers(1, len(stay), n)
    states = np.empty(n, dtype=np.int64)
    state = 0
    for i in range(n):
        if leave[i] > stay[state]:
            state = (state + hop[i]) % len(stay)
        states[i] = state
    return states


def _market(rng: np.random.Generator, n: int) -> _Market:
    drift = np.asarray(TREND_DRIFTS)[_markov(rng, n, TREND_STAY)]
    vol = np.asarray(VOL_LEVELS)[_markov(rng, n, VOL_STAY)]
    return _Market(drift=drift, vol=vol, shock=_fat_tailed(rng, n))


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


def _equity_daily(rng: np.random.Generator, days: pd.DatetimeIndex, sessions: pd.DatetimeIndex,
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
    gap += OVERNIGHT_VOL * session_sigma * rng.standard_normal(len(at))
    earnings = rng.random(len(at)) < EARNINGS_PROBABILITY
    gap += np.where(earnings, EARNINGS_VOL * session_sigma * rng.standard_normal(len(at)), 0.0)
    log_close = np.log(profile.start) + np.cumsum(gap + returns[at])
    bars = _bars(rng, np.exp(log_close - returns[at]), np.exp(log_close), session_sigma,
                 profile, continuous=False)
    return bars, session_sigma


def _crypto_daily(rng: np.random.Generator, returns: np.ndarray, sigma: np.ndarray,
                  profile: _Profile) -> dict[str, np.ndarray]:
    log_close = np.log(profile.start) + np.cumsum(returns)
    return _bars(rng, np.exp(log_close - returns), np.exp(log_close), sigma, profile,
                 continuous=True)


def _bars(rng: np.random.Generator, opens: np.ndarray, closes: np.ndarray, sigma: np.ndarray,
          profile: _Profile, *, continuous: bool) -> dict[str, np.ndarray]:
    """OHLCV in cents from an open/close path; `continuous`: each open is the last close."""
    close = _cents(closes)
    open_ = np.concatenate([_cents(opens[:1]), close[:-1]]) if continuous else _cents(opens)
    n = len(close)
    high = _cents(np.maximum(open_, close) * np.exp(RANGE_VOL * sigma * _half_normal(rng, n)))
    low = _cents(np.minimum(open_, close) * np.exp(-RANGE_VOL * sigma * _half_normal(rng, n)))
    calm = np.hypot(profile.beta * MARKET_VOL, profile.vol)
    move = np.abs(np.log(close / open_)) / sigma
    activity = (sigma / calm) ** 1.3 * np.exp(0.2 * move + 0.25 * rng.standard_normal(n))
    volume = np.maximum(np.round(profile.volume * activity), 1.0)
    return {"open": open_, "high": high, "low": low, "close": close, "volume": volume}


def _half_normal(rng: np.random.Generator, n: int) -> np.ndarray:
    return np.abs(rng.standard_normal(n))


def _cents(prices: np.ndarray) -> np.ndarray:
    # Rounding is monotone, so a rounded high still tops the rounded open and close.
    return np.maximum(np.round(prices, 2), 0.01)


def _bar_starts(calendar: xcals.ExchangeCalendar, label: pd.Timestamp,
                crypto: bool) -> pd.DatetimeIndex:
    """Open instants (UTC) of the 5m bars of one day: the whole day, or the NYSE session."""
    if crypto:
        return pd.date_range(label.tz_localize("UTC"), periods=24 * 60 // BAR_MINUTES,
                             freq=f"{BAR_MINUTES}min")
    return pd.date_range(calendar.session_open(label), calendar.session_close(label),
                         freq=f"{BAR_MINUTES}min", inclusive="left")


def _intraday(rng: np.random.Generator, daily: dict[str, np.ndarray], sigma: np.ndarray,
              rows: np.ndarray, starts: list[pd.DatetimeIndex],
              ) -> tuple[dict[str, np.ndarray], pd.DataFrame]:
    """5m bars bridging each day's open to its close; the days widened to cover them."""
    daily = {name: values.copy() for name, values in daily.items()}
    parts: list[dict[str, np.ndarray]] = []
    for row, bar_starts in zip(rows, starts, strict=True):
        n = len(bar_starts)
        bar_sigma = sigma[row] / np.sqrt(n)
        start, finish = np.log(daily["open"][row]), np.log(daily["close"][row])
        walk = np.cumsum(bar_sigma * _fat_tailed(rng, n))
        elapsed = np.arange(1, n + 1) / n
        close = _cents(np.exp(start + (finish - start) * elapsed + walk - elapsed * walk[-1]))
        open_ = np.concatenate([[daily["open"][row]], close[:-1]])
        high = _cents(np.maximum(open_, close) * np.exp(bar_sigma * _half_normal(rng, n)))
        low = _cents(np.minimum(open_, close) * np.exp(-bar_sigma * _half_normal(rng, n)))
        # U-shaped activity through the session, busier when the bar moves a lot.
        clock = np.linspace(-1.0, 1.0, n)
        weight = (1.0 + 1.5 * clock**2) * np.exp(0.3 * rng.standard_normal(n)
                                                 + 0.3 * np.abs(np.log(close / open_)) / bar_sigma)
        volume = np.maximum(np.round(daily["volume"][row] * weight / weight.sum()), 1.0)
        daily["high"][row] = max(daily["high"][row], high.max())
        daily["low"][row] = min(daily["low"][row], low.min())
        parts.append({"open": open_, "high": high, "low": low, "close": close,
                      "volume": volume})
    bars = {name: np.concatenate([part[name] for part in parts]) for name in parts[0]}
    return daily, _frame(starts[0].append(starts[1:]), bars)


def _frame(ts: pd.DatetimeIndex, bars: dict[str, np.ndarray]) -> pd.DataFrame:
    frame = pd.DataFrame({"ts": ts.astype(TS_DTYPE), **bars})
    return frame[list(BAR_COLUMNS)].astype({c: np.float64 for c in BAR_COLUMNS[1:]})
