"""Bodies of the decisions and positions API."""

from __future__ import annotations

import uuid
from datetime import datetime
from typing import Any

from pydantic import BaseModel, ConfigDict, Field

from tradeloop.schema_types import PlainDecimal
from tradeloop.signals.schemas import SignalPrice


class DecisionRead(BaseModel):
    model_config = ConfigDict(from_attributes=True)

    id: uuid.UUID
    signal_id: uuid.UUID | None
    action: str
    reasons: list[str]
    inputs: dict[str, Any]
    degraded: bool
    latency_ms: float | None
    created_at: datetime


class DecisionList(BaseModel):
    decisions: list[DecisionRead]
    total: int
    limit: int
    offset: int


class PositionRead(BaseModel):
    model_config = ConfigDict(from_attributes=True)

    id: uuid.UUID
    symbol: str
    side: str
    quantity: PlainDecimal
    entry_price: PlainDecimal
    opened_at: datetime
    status: str
    exit_price: PlainDecimal | None
    closed_at: datetime | None
    realized_pnl: PlainDecimal | None
    unrealized_pnl: PlainDecimal | None
    mark_price: PlainDecimal | None
    marked_at: datetime | None
    signal_id: uuid.UUID | None
    closing_signal_id: uuid.UUID | None


class PositionSummary(BaseModel):
    """Over all the caller's positions of the `symbol` filter (not just this page)."""

    model_config = ConfigDict(from_attributes=True)

    open_positions: int
    exposure: PlainDecimal = Field(description="Open quantity x entry price")
    unrealized_pnl: PlainDecimal = Field(description="Open positions at their latest marks")
    realized_pnl: PlainDecimal = Field(description="Closed positions")
    last_marked_at: datetime | None


class PositionList(BaseModel):
    positions: list[PositionRead]
    total: int
    limit: int
    offset: int
    summary: PositionSummary


class ClosePositionIn(BaseModel):
    model_config = ConfigDict(extra="forbid")

    price: SignalPrice | None = Field(default=None,
                                      description="Default: the latest stored bar close")
