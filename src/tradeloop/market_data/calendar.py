"""Market hours per symbol, from exchange_calendars: open now?, next open/close, holidays.

Symbols map to an exchange (ISO 10383 MIC such as XNYS, XLON) through a configurable map;
unmapped crypto pairs (BTCUSD, ETH-USDT, …) trade around the clock on the "24/7" calendar;
everything else uses the default exchange. Calendars are built lazily and extended on demand,
so a date years ahead answers instead of failing outside the library's default one-year span.
"""

from __future__ import annotations

import re
import threading
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import UTC, date, datetime, timedelta

import exchange_calendars as xcals
import pandas as pd

from tradeloop.settings import Settings

ALWAYS_OPEN = "24/7"
CRYPTO_BASES = ("BTC", "ETH", "SOL", "XRP", "ADA", "DOGE", "LTC", "BNB", "DOT", "AVAX", "LINK",
                "MATIC", "BCH", "XLM", "TRX", "ATOM", "UNI", "XMR", "ETC", "SHIB")
_CRYPTO_PAIR = re.compile(
    rf"^({'|'.join(CRYPTO_BASES)})[-/_]?(USD|USDT|USDC|EUR|GBP|BTC|ETH)(\.P|PERP)?$")
_FIRST_SESSION = pd.Timestamp("2000-01-01")
_MIN_HORIZON = timedelta(days=2 * 366)


@dataclass(frozen=True)
class SessionTimes:
    """One trading day of an exchange, in UTC; `early_close` when it closes before normal."""

    day: date
    open: datetime
    close: datetime
    early_close: bool


class MarketCalendar:
    """Answers market-hours questions for symbols; thread-safe, calendars cached per exchange."""

    def __init__(self, symbol_exchanges: Mapping[str, str] | None = None,
                 default_exchange: str = "XNYS"):
        self.symbol_exchanges = {k.upper(): v for k, v in (symbol_exchanges or {}).items()}
        self.default_exchange = default_exchange
        self._calendars: dict[str, xcals.ExchangeCalendar] = {}
        self._lock = threading.Lock()
        for exchange in {default_exchange, *self.symbol_exchanges.values()}:
            if exchange not in xcals.get_calendar_names(include_aliases=True):
                raise ValueError(f"unknown exchange calendar {exchange!r}")

    def exchange_for(self, symbol: str) -> str:
        """The exchange code whose hours apply to `symbol`."""
        key = symbol.upper().split(":")[-1]
        if key in self.symbol_exchanges:
            return self.symbol_exchanges[key]
        if _CRYPTO_PAIR.match(key):
            return ALWAYS_OPEN
        return self.default_exchange

    def is_open(self, symbol: str, at: datetime) -> bool:
        """Whether `symbol`'s market is trading at instant `at` (timezone-aware)."""
        exchange = self.exchange_for(symbol)
        if exchange == ALWAYS_OPEN:
            # Every minute is open: no pandas minute to build (each crypto signal asks).
            _utc(at)
            return True
        return bool(self._calendar(exchange, at).is_open_on_minute(_utc_minute(at)))

    def next_open(self, symbol: str, at: datetime) -> datetime:
        """The next opening strictly after `at` (the current instant for 24/7 markets)."""
        if self.exchange_for(symbol) == ALWAYS_OPEN:
            return _utc(at)
        calendar = self._calendar(self.exchange_for(symbol), at + timedelta(days=30))
        return calendar.next_open(_utc_minute(at)).to_pydatetime()

    def next_close(self, symbol: str, at: datetime) -> datetime | None:
        """The next closing strictly after `at`; None for markets that never close."""
        if self.exchange_for(symbol) == ALWAYS_OPEN:
            return None
        calendar = self._calendar(self.exchange_for(symbol), at + timedelta(days=30))
        return calendar.next_close(_utc_minute(at)).to_pydatetime()

    def open_minutes(self, symbol: str, start: datetime, end: datetime) -> int:
        """How many minutes `symbol`'s market traded between `start` and `end` (0 if end <=
        start): how old data is in trading time, so a weekend does not make it look stale."""
        if end <= start:
            return 0
        calendar = self._calendar(self.exchange_for(symbol), end)
        return int(calendar.minutes_distance(_utc_minute(start), _utc_minute(end)))

    def session(self, symbol: str, day: date) -> SessionTimes | None:
        """The trading session on `day`, or None when the market is closed all day."""
        calendar = self._calendar(self.exchange_for(symbol), _day_end(day))
        label = pd.Timestamp(day)
        if not calendar.is_session(label):
            return None
        close = calendar.session_close(label)
        return SessionTimes(day=day, open=calendar.session_open(label).to_pydatetime(),
                            close=close.to_pydatetime(),
                            early_close=label in calendar.early_closes)

    def holidays(self, symbol: str, start: date, end: date) -> list[date]:
        """Weekdays in [start, end] on which the market is closed."""
        calendar = self._calendar(self.exchange_for(symbol), _day_end(end))
        weekdays = pd.bdate_range(start, end)
        sessions = set(calendar.sessions_in_range(start, end))
        return [d.date() for d in weekdays if d not in sessions]

    def early_closes(self, symbol: str, start: date, end: date) -> list[SessionTimes]:
        """Sessions in [start, end] that close before the normal time."""
        calendar = self._calendar(self.exchange_for(symbol), _day_end(end))
        labels = calendar.early_closes
        in_range = labels[(labels >= pd.Timestamp(start)) & (labels <= pd.Timestamp(end))]
        sessions = (self.session(symbol, label.date()) for label in in_range)
        return [session for session in sessions if session is not None]

    def _calendar(self, exchange: str, until: datetime | date) -> xcals.ExchangeCalendar:
        needed = pd.Timestamp(until)
        needed = needed.tz_convert(None) if needed.tzinfo else needed
        with self._lock:
            calendar = self._calendars.get(exchange)
            if calendar is None or calendar.last_session < needed.normalize():
                end = max(needed, pd.Timestamp.now()) + _MIN_HORIZON
                calendar = xcals.get_calendar(exchange, start=_FIRST_SESSION,
                                              end=end.normalize())
                self._calendars[exchange] = calendar
            return calendar


def _utc(at: datetime) -> datetime:
    if at.tzinfo is None:
        raise ValueError("pass a timezone-aware datetime; naive times are ambiguous")
    return at.astimezone(UTC)


def _utc_minute(at: datetime) -> pd.Timestamp:
    return pd.Timestamp(_utc(at)).floor("min")


def _day_end(day: date) -> datetime:
    return datetime(day.year, day.month, day.day, tzinfo=UTC) + timedelta(days=1)


def calendar_from_settings(settings: Settings) -> MarketCalendar:
    """The market-hours service configured by SYMBOL_EXCHANGES and DEFAULT_EXCHANGE."""
    return MarketCalendar(settings.symbol_exchanges, settings.default_exchange)
