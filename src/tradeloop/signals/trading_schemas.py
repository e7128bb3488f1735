"""Bodies of the decisions and positions API."""

from __future__ import annotations

import uuid
from datetime import datetime
from decimal import Decimal
from typing import Any

from pydantic import BaseModel, ConfigDict, Field

from tradeloop.signals.schemas import MAX_PRICE


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
    quantity: Decimal
    entry_price: Decimal
    opened_at: datetime
    status: str
    exit_price: Decimal | None
    closed_at: datetime | None
    realized_pnl: Decimal | None
    unrealized_pnl: Decimal | None
    mark_price: Decimal | None
    marked_at: datetime | None
    signal_id: uuid.UUID | None
    closing_signal_id: uuid.UUID | None


class PositionSummary(BaseModel):
    """Over all the caller's positions of the `symbol` filter (not just this page)."""

    model_config = ConfigDict(from_attributes=True)

    open_positions: int
    exposure: Decimal = Field(description="Open quantity x entry price")
    unrealized_pnl: Decimal = Field(description="Open positions at their latest marks")
    realized_pnl: Decimal = Field(description="Closed positions")
    last_marked_at: datetime | None


class PositionList(BaseModel):
    positions: list[PositionRead]
    total: int
    limit: int
    offset: int
    summary: PositionSummary


class ClosePositionIn(BaseModel):
    model_config = ConfigDict(extra="forbid")

    price: Decimal | None = Field(default=None, gt=0, lt=MAX_PRICE, allow_inf_nan=False,
                                  description="Default: the latest stored bar close")
