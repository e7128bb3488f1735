"""Backtests (seed 002): runs, their results as typed metric columns, trades, equity curves."""

from __future__ import annotations

import enum
import uuid
from datetime import datetime
from typing import Any

from sqlalchemy import JSON, Float, ForeignKey, Index, Integer, LargeBinary, String, Text, true
from sqlalchemy.orm import Mapped, mapped_column

from tradeloop.backtest.metrics.catalogue import METRICS
from tradeloop.db import Base, UTCDateTime, UUIDPrimaryKey, utcnow
from tradeloop.ownership import UserOwned


class RunStatus(enum.StrEnum):
    QUEUED = "queued"
    RUNNING = "running"
    DONE = "done"
    FAILED = "failed"


class BacktestRun(UUIDPrimaryKey, UserOwned, Base):
    """One requested backtest. `cache_key` identifies everything that determines the result."""

    __tablename__ = "backtest_runs"
    __table_args__ = (
        Index("uq_backtest_runs_cache_key", "cache_key", unique=True),
        # Newest-first listing reads this index in order, id breaking ties, without a sort.
        Index("ix_backtest_runs_user_id_inserted_at", "user_id", "inserted_at", "id"),
        Index("ix_backtest_runs_user_id_status", "user_id", "status"),
    )

    strategy_id: Mapped[uuid.UUID] = mapped_column(
        ForeignKey("strategies.id", ondelete="CASCADE"), index=True)
    strategy_name: Mapped[str] = mapped_column(String(100))
    strategy_version: Mapped[int]
    # The definition as run: a draft edited later must not pass for what was backtested.
    definition: Mapped[str] = mapped_column(Text)
    # ",AAPL,MSFT," so that one symbol is found with a portable LIKE on both databases.
    symbols: Mapped[str] = mapped_column(String(2000))
    timeframe: Mapped[str] = mapped_column(String(8))
    start: Mapped[datetime | None]
    end: Mapped[datetime | None]
    params: Mapped[dict[str, Any]] = mapped_column(JSON, default=dict)
    cash: Mapped[float] = mapped_column(Float(53))
    commission: Mapped[float] = mapped_column(Float(53), default=0.0)
    commission_fixed: Mapped[float] = mapped_column(Float(53), default=0.0)
    slippage_bps: Mapped[float] = mapped_column(Float(53), default=0.0)
    fill: Mapped[str] = mapped_column(String(8), default="open")
    size_units: Mapped[str] = mapped_column(String(16), default="whole")
    # Where a trade still open at the end closes: the last bar's "open" or "close".
    end_fill: Mapped[str] = mapped_column(String(8), default="open", server_default="open")
    status: Mapped[str] = mapped_column(String(16), default=RunStatus.QUEUED.value)
    error: Mapped[str | None] = mapped_column(Text)
    cache_key: Mapped[str] = mapped_column(String(64))
    cache_hits: Mapped[int] = mapped_column(default=0)
    # Claims so far: a run whose worker died is requeued until it reaches the maximum.
    attempts: Mapped[int] = mapped_column(default=0, server_default="0")
    duration_ms: Mapped[float | None] = mapped_column(Float(53))
    inserted_at: Mapped[datetime] = mapped_column(default=utcnow)
    started_at: Mapped[datetime | None]
    finished_at: Mapped[datetime | None]

    @property
    def symbol_list(self) -> list[str]:
        return [s for s in self.symbols.split(",") if s]


class BacktestRunSymbol(Base):
    """One row per (run, symbol): `?symbol=` reads an index instead of scanning `symbols`.

    user_id and inserted_at are copies of the run's, so the filter and the newest-first order
    come from this one index, id breaking ties as in the runs' own listing index."""

    __tablename__ = "backtest_run_symbols"
    __table_args__ = (
        Index("ix_backtest_run_symbols_user_id_symbol_inserted_at",
              "user_id", "symbol", "inserted_at", "run_id"),
    )

    run_id: Mapped[uuid.UUID] = mapped_column(
        ForeignKey("backtest_runs.id", ondelete="CASCADE"), primary_key=True)
    symbol: Mapped[str] = mapped_column(String(32), primary_key=True)
    user_id: Mapped[uuid.UUID] = mapped_column(ForeignKey("users.id", ondelete="CASCADE"))
    inserted_at: Mapped[datetime]


_COLUMN_TYPES: dict[str, Any] = {"float": Float(53), "int": Integer(), "datetime": UTCDateTime()}


def _metric_columns() -> dict[str, Any]:
    return {spec.name: mapped_column(_COLUMN_TYPES[spec.kind], nullable=True) for spec in METRICS}


# One typed, queryable column per metric (seed 002), generated from the metric registry so the
# two can never disagree; the migration spells them out.
BacktestResult: type[Any] = type("BacktestResult", (Base,), {
    "__tablename__": "backtest_results",
    "__doc__": "The metrics of a finished run, one column each, and its equity curve.",
    "run_id": mapped_column(ForeignKey("backtest_runs.id", ondelete="CASCADE"),
                            primary_key=True),
    # Equity curve as zlib-compressed float64/int64 arrays: a million bars stay one row.
    "equity_ts": mapped_column(LargeBinary, nullable=False),
    "equity_values": mapped_column(LargeBinary, nullable=False),
    "created_at": mapped_column(UTCDateTime(), default=utcnow, nullable=False),
    **_metric_columns(),
})


class BacktestTrade(Base):
    __tablename__ = "backtest_trades"
    __table_args__ = (Index("ix_backtest_trades_run_id_seq", "run_id", "seq", unique=True),)

    id: Mapped[uuid.UUID] = mapped_column(primary_key=True, default=uuid.uuid4)
    run_id: Mapped[uuid.UUID] = mapped_column(ForeignKey("backtest_runs.id", ondelete="CASCADE"))
    seq: Mapped[int]
    symbol: Mapped[str] = mapped_column(String(32))
    direction: Mapped[int]
    size: Mapped[float] = mapped_column(Float(53))
    entry_bar: Mapped[int]
    exit_bar: Mapped[int]
    entry_time: Mapped[datetime]
    exit_time: Mapped[datetime]
    entry_price: Mapped[float] = mapped_column(Float(53))
    exit_price: Mapped[float] = mapped_column(Float(53))
    commission: Mapped[float] = mapped_column(Float(53))
    pnl: Mapped[float] = mapped_column(Float(53))
    return_pct: Mapped[float] = mapped_column(Float(53))
    exit_reason: Mapped[str] = mapped_column(String(16))


class SweepMethod(enum.StrEnum):
    VECTORISED = "vectorised"  # every combination ranked in chunks, the top ones run in full
    RUNS = "runs"              # every combination a full run (metrics without a fast path)


class BacktestSweep(UUIDPrimaryKey, UserOwned, Base):
    """A parameter grid ranked by one metric; see docs/backtests.md (Sweeps)."""

    __tablename__ = "backtest_sweeps"

    strategy_id: Mapped[uuid.UUID] = mapped_column(
        ForeignKey("strategies.id", ondelete="CASCADE"), index=True)
    metric: Mapped[str] = mapped_column(String(64))
    grid: Mapped[dict[str, Any]] = mapped_column(JSON)
    # The full runs: the top combinations (vectorised) or every combination (runs).
    run_ids: Mapped[list[str]] = mapped_column(JSON)
    inserted_at: Mapped[datetime] = mapped_column(default=utcnow)
    method: Mapped[str] = mapped_column(String(16), default=SweepMethod.RUNS.value,
                                        server_default=SweepMethod.RUNS.value)
    # The base run request (symbols, range, costs, params) every combination extends.
    request: Mapped[dict[str, Any] | None] = mapped_column(JSON)
    total: Mapped[int] = mapped_column(default=0, server_default="0")
    top: Mapped[int] = mapped_column(default=0, server_default="0")
    descending: Mapped[bool] = mapped_column(default=True, server_default=true())
    # Full runs answered from the result cache when they were submitted.
    cached: Mapped[int] = mapped_column(default=0, server_default="0")
    # When every combination had its value and the top ones were submitted as runs.
    ranked_at: Mapped[datetime | None]
    error: Mapped[str | None] = mapped_column(Text)


class BacktestSweepPoint(Base):
    """One grid combination of a sweep: its params, its ranking value, its full run if any."""

    __tablename__ = "backtest_sweep_points"

    sweep_id: Mapped[uuid.UUID] = mapped_column(
        ForeignKey("backtest_sweeps.id", ondelete="CASCADE"), primary_key=True)
    seq: Mapped[int] = mapped_column(primary_key=True, autoincrement=False)
    params: Mapped[dict[str, Any]] = mapped_column(JSON)
    value: Mapped[float | None] = mapped_column(Float(53))
    run_id: Mapped[uuid.UUID | None] = mapped_column(
        ForeignKey("backtest_runs.id", ondelete="SET NULL"))
