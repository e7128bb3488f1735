"""GEX snapshots and the context snapshots decisions used (seed 004)."""

from __future__ import annotations

import uuid
from datetime import datetime
from decimal import Decimal
from typing import Any

from sqlalchemy import JSON, Float, ForeignKey, Index, Numeric, String
from sqlalchemy.orm import Mapped, mapped_column

from tradeloop.db import Base, UUIDPrimaryKey, utcnow
from tradeloop.ownership import UserOwned
from tradeloop.signals.models import Price


class GexSignal(UUIDPrimaryKey, UserOwned, Base):
    """A gamma-exposure snapshot of one symbol from an external source (`POST /api/v1/gex`)."""

    __tablename__ = "gex_signals"
    __table_args__ = (
        Index("uq_gex_signals_user_id_symbol_as_of", "user_id", "symbol", "as_of", unique=True),
        Index("ix_gex_signals_as_of", "as_of"),
    )

    symbol: Mapped[str] = mapped_column(String(32))
    as_of: Mapped[datetime]
    # Dollar gamma per 1 % move can reach 1e11 and more: 24 integer digits, 4 decimals.
    net_gex: Mapped[Decimal] = mapped_column(Numeric(28, 4))
    gamma_flip: Mapped[Decimal] = mapped_column(Price)
    call_wall: Mapped[Decimal] = mapped_column(Price)
    put_wall: Mapped[Decimal] = mapped_column(Price)
    spot_price: Mapped[Decimal | None] = mapped_column(Price)
    source: Mapped[str] = mapped_column(String(100))
    received_at: Mapped[datetime] = mapped_column(default=utcnow)


class ContextSnapshot(UUIDPrimaryKey, UserOwned, Base):
    """The market context one decision used, as it was: bars, GEX, regime, degraded reasons."""

    __tablename__ = "context_snapshots"
    __table_args__ = (Index("ix_context_snapshots_created_at", "created_at"),)

    signal_id: Mapped[uuid.UUID | None] = mapped_column(
        ForeignKey("signals.id", ondelete="CASCADE"), index=True)
    decision_id: Mapped[uuid.UUID | None] = mapped_column(
        ForeignKey("decisions.id", ondelete="CASCADE"), index=True)
    symbol: Mapped[str] = mapped_column(String(32))
    timeframe: Mapped[str] = mapped_column(String(16))
    context: Mapped[dict[str, Any]] = mapped_column(JSON, default=dict)
    degraded: Mapped[bool] = mapped_column(default=False)
    degraded_reasons: Mapped[list[dict[str, str]]] = mapped_column(JSON, default=list)
    # Whether the context came from the process's TTL cache: the hit rate is computed from
    # these rows, so it counts every worker process, not just the one answering /health.
    cache_hit: Mapped[bool] = mapped_column(default=False)
    build_ms: Mapped[float] = mapped_column(Float(53), default=0.0)
    created_at: Mapped[datetime] = mapped_column(default=utcnow)
