"""Request and response bodies of the backtest API."""

from __future__ import annotations

import uuid
from datetime import datetime
from typing import Any, Literal

from pydantic import BaseModel, Field, model_validator

from tradeloop.schema_types import UTCTimestamp


class RunOptions(BaseModel):
    cash: float = Field(default=10_000.0, gt=0, le=1e12)
    commission: float = Field(default=0.0, ge=0, lt=0.1,
                              description="Fraction of notional per side, e.g. 0.001 = 0.1%")
    commission_fixed: float = Field(default=0.0, ge=0, description="Cash per order")
    slippage_bps: float = Field(default=0.0, ge=0, le=1000)
    fill: Literal["open", "close"] = Field(
        default="open", description="next bar's open (default) or the signal bar's close")
    size_units: Literal["whole", "fractional"] = "whole"
    end_fill: Literal["open", "close"] = Field(
        default="open", description=(
            "where a trade still open at the end closes: the last bar's open (default, as "
            "backtesting.py's finalize_trades) or its close (marked to the last price)"))


class StrategyChoice(BaseModel):
    strategy_id: uuid.UUID | None = None
    strategy_name: str | None = Field(default=None, max_length=100)

    @model_validator(mode="after")
    def _one_strategy(self) -> StrategyChoice:
        if (self.strategy_id is None) == (self.strategy_name is None):
            raise ValueError("give exactly one of strategy_id or strategy_name")
        return self

    @property
    def strategy_ref(self) -> str:
        return str(self.strategy_id) if self.strategy_id else str(self.strategy_name)


class RunCreate(StrategyChoice, RunOptions):
    start_date: UTCTimestamp | None = None
    end_date: UTCTimestamp | None = None
    symbols: list[str] = Field(default_factory=list, max_length=50)
    params: dict[str, float] | None = None


class SweepCreate(RunCreate):
    grid: dict[str, str | list[float]] = Field(
        min_length=1, description='{"fast": "5:50:5", "slow": [20, 50, 100]}')
    metric: str = "sharpe_ratio"
    top: int = Field(default=10, ge=1, le=200, description=(
        "how many of the best combinations get a full run (every metric, trades, equity)"))
    descending: bool = Field(default=True, description="higher values are better")


class RunAccepted(BaseModel):
    id: uuid.UUID
    status: str
    cached: bool


class StrategyRef(BaseModel):
    id: uuid.UUID
    name: str
    version: int


class RunSummary(BaseModel):
    id: uuid.UUID
    status: str
    strategy: StrategyRef
    symbols: list[str]
    timeframe: str
    params: dict[str, Any]
    inserted_at: datetime
    duration_ms: float | None
    summary: dict[str, Any]


class RunList(BaseModel):
    results: list[RunSummary]
    limit: int
    offset: int
    next_cursor: str | None = Field(
        description="pass as before= for the next page; null on the last page")


class RunDetail(BaseModel):
    id: uuid.UUID
    status: str
    strategy: StrategyRef
    params: dict[str, Any]
    symbols: list[str]
    cached: bool
    metrics: dict[str, dict[str, Any]]
    timeframe: str
    start: datetime | None
    end: datetime | None
    options: RunOptions
    cache_hits: int
    error: str | None
    duration_ms: float | None
    inserted_at: datetime
    started_at: datetime | None
    finished_at: datetime | None


class TradeRead(BaseModel):
    seq: int
    symbol: str
    direction: Literal["long", "short"]
    size: float
    entry_time: datetime
    exit_time: datetime
    entry_price: float
    exit_price: float
    commission: float
    pnl: float
    return_pct: float
    exit_reason: str


class TradeList(BaseModel):
    trades: list[TradeRead]
    total: int
    limit: int
    offset: int


class EquityPoint(BaseModel):
    ts: datetime
    equity: float


class EquityCurve(BaseModel):
    id: uuid.UUID
    points: list[EquityPoint]


class SweepAccepted(BaseModel):
    id: uuid.UUID
    combinations: int
    runs: int = Field(description="combinations that get a full run (the top ones)")
    method: Literal["vectorised", "runs"] = Field(description=(
        "vectorised: every combination ranked in batches, the top ones run in full; runs: "
        "every combination a full run (metrics without a batch formula)"))
    top: int
    cached: int = Field(description="full runs already answered from the cache")


class SweepEntry(BaseModel):
    run_id: uuid.UUID | None = Field(description="the full run (top combinations only)")
    params: dict[str, Any]
    value: float | int
    status: str = Field(description="the full run's status, or `ranked`")


class SweepProgress(BaseModel):
    completed: int
    total: int


class SweepReport(BaseModel):
    id: uuid.UUID
    metric: str
    method: Literal["vectorised", "runs"]
    total: int = Field(description="combinations in the grid")
    ranked: int = Field(description="combinations with their value computed")
    top: int
    runs: int = Field(description="full runs (the top combinations, or all for `runs`)")
    cached: int = Field(description="full runs answered from the result cache")
    status: dict[str, int] = Field(description="full runs by status")
    error: str | None
    finished: bool
    progress: SweepProgress
    ranking: list[SweepEntry]
