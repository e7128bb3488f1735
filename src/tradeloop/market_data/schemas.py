"""Request and response bodies of the market data API."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from pydantic import BaseModel, ConfigDict, Field

MAX_JSON_ROWS = 100_000


class BarRowsImport(BaseModel):
    symbol: str = Field(min_length=1, max_length=32)
    timeframe: str = "1d"
    bars: list[dict[str, Any]] = Field(
        min_length=1, max_length=MAX_JSON_ROWS,
        description="Rows with ts (ISO 8601 or unix seconds), open, high, low, close, volume")


class ImportResultRead(BaseModel):
    # Also what market_data.service.import_bars returns (to the CLI and the demo loader).
    model_config = ConfigDict(frozen=True)

    symbol: str
    timeframe: str
    layout: str
    received: int
    inserted: int
    updated: int
    unchanged: int
    dropped_duplicates: int
    replaced_synthetic: bool
    first_ts: datetime | None
    last_ts: datetime | None


class BarSeriesRead(BaseModel):
    model_config = ConfigDict(from_attributes=True)

    symbol: str
    timeframe: str
    source: str
    synthetic: bool
    row_count: int
    first_ts: datetime | None
    last_ts: datetime | None
    fingerprint: str
    updated_at: datetime


class BarSeriesList(BaseModel):
    series: list[BarSeriesRead]


class BarRead(BaseModel):
    ts: datetime
    open: float
    high: float
    low: float
    close: float
    volume: float


class BarList(BaseModel):
    symbol: str
    timeframe: str
    bars: list[BarRead]
