"""Market data: OHLCV bars, shared by all users, and one summary row per series."""

from __future__ import annotations

from datetime import datetime

from sqlalchemy import Float, String
from sqlalchemy.orm import Mapped, mapped_column

from tradeloop.db import Base, utcnow


class Bar(Base):
    """One bar; `ts` is the bar's open instant in UTC (00:00 UTC of the date for 1d/1w)."""

    __tablename__ = "bars"

    symbol: Mapped[str] = mapped_column(String(32), primary_key=True)
    timeframe: Mapped[str] = mapped_column(String(8), primary_key=True)
    ts: Mapped[datetime] = mapped_column(primary_key=True)
    # Floats: bars feed the vectorised engine; money bookkeeping elsewhere uses Decimal.
    open: Mapped[float] = mapped_column(Float(53))
    high: Mapped[float] = mapped_column(Float(53))
    low: Mapped[float] = mapped_column(Float(53))
    close: Mapped[float] = mapped_column(Float(53))
    volume: Mapped[float] = mapped_column(Float(53))


class BarSeries(Base):
    """What is stored for one (symbol, timeframe): range, count, origin and a fingerprint.

    `fingerprint` changes whenever any bar of the series changes, so results computed from
    the bars (cached backtests) can tell that their input is no longer the same.
    """

    __tablename__ = "bar_series"

    symbol: Mapped[str] = mapped_column(String(32), primary_key=True)
    timeframe: Mapped[str] = mapped_column(String(8), primary_key=True)
    source: Mapped[str] = mapped_column(String(200))
    synthetic: Mapped[bool] = mapped_column(default=False)
    row_count: Mapped[int] = mapped_column(default=0)
    first_ts: Mapped[datetime | None]
    last_ts: Mapped[datetime | None]
    fingerprint: Mapped[str] = mapped_column(String(64), default="")
    updated_at: Mapped[datetime] = mapped_column(default=utcnow, onupdate=utcnow)
