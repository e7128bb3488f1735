"""Decisions and paper positions (seed 004)."""

from __future__ import annotations

import enum
import uuid
from datetime import datetime
from decimal import Decimal
from typing import Any

from sqlalchemy import JSON, Float, ForeignKey, Index, Numeric, String
from sqlalchemy.orm import Mapped, mapped_column

from tradeloop.db import Base, UUIDPrimaryKey, utcnow
from tradeloop.ownership import UserOwned
from tradeloop.signals.models import Price


class DecisionAction(enum.StrEnum):
    ENTER = "ENTER"
    EXIT = "EXIT"
    REVERSE = "REVERSE"
    HOLD = "HOLD"
    REJECT = "REJECT"


class PositionStatus(enum.StrEnum):
    OPEN = "open"
    CLOSED = "closed"


class Decision(UUIDPrimaryKey, UserOwned, Base):
    """What processing decided for one signal, with the context and gate values it used."""

    __tablename__ = "decisions"
    __table_args__ = (Index("ix_decisions_user_id_created_at", "user_id", "created_at"),)

    signal_id: Mapped[uuid.UUID | None] = mapped_column(
        ForeignKey("signals.id", ondelete="CASCADE"), index=True)
    action: Mapped[str] = mapped_column(String(8))
    reasons: Mapped[list[str]] = mapped_column(JSON, default=list)
    inputs: Mapped[dict[str, Any]] = mapped_column(JSON, default=dict)
    degraded: Mapped[bool] = mapped_column(default=False)
    latency_ms: Mapped[float | None] = mapped_column(Float(53))
    created_at: Mapped[datetime] = mapped_column(default=utcnow)


class Position(UUIDPrimaryKey, UserOwned, Base):
    """A paper position: opened by one signal, closed by another signal or by hand."""

    __tablename__ = "positions"
    __table_args__ = (
        Index("ix_positions_user_id_status_symbol", "user_id", "status", "symbol"),
        # The book's last entry on a symbol and the day's realised P&L: PositionBook.load.
        Index("ix_positions_user_id_symbol_opened_at", "user_id", "symbol", "opened_at"),
        Index("ix_positions_user_id_closed_at_realized_pnl",
              "user_id", "closed_at", "realized_pnl"),
    )

    symbol: Mapped[str] = mapped_column(String(32))
    side: Mapped[str] = mapped_column(String(8))
    # 10 decimals: a 1000 USD notional of a 60k BTC is 0.0166666666 units.
    quantity: Mapped[Decimal] = mapped_column(Numeric(28, 10))
    entry_price: Mapped[Decimal] = mapped_column(Price)
    opened_at: Mapped[datetime]
    status: Mapped[str] = mapped_column(String(8), default=PositionStatus.OPEN.value)
    exit_price: Mapped[Decimal | None] = mapped_column(Price)
    closed_at: Mapped[datetime | None]
    realized_pnl: Mapped[Decimal | None] = mapped_column(Price)
    unrealized_pnl: Mapped[Decimal | None] = mapped_column(Price)
    mark_price: Mapped[Decimal | None] = mapped_column(Price)
    marked_at: Mapped[datetime | None]
    signal_id: Mapped[uuid.UUID | None] = mapped_column(
        ForeignKey("signals.id", ondelete="SET NULL"), index=True)
    closing_signal_id: Mapped[uuid.UUID | None] = mapped_column(
        ForeignKey("signals.id", ondelete="SET NULL"), index=True)
