"""Live signals (seed 004): the signals table (the durable outbox) and processing errors."""

from __future__ import annotations

import enum
import uuid
from datetime import datetime
from decimal import Decimal
from typing import Any

from sqlalchemy import JSON, Float, ForeignKey, Index, Numeric, String, Text
from sqlalchemy.orm import Mapped, mapped_column

from tradeloop.db import Base, UUIDPrimaryKey, utcnow
from tradeloop.ownership import UserOwned

# Prices: 12 integer digits and 8 decimals cover equities, futures, FX and crypto satoshis.
Price = Numeric(20, 8)
# The magnitude a Price column holds (exclusive): prices and P&L at or beyond it are refused.
PRICE_LIMIT = Decimal(10) ** (Price.precision - Price.scale)


class SignalOrigin(enum.StrEnum):
    WEBHOOK = "webhook"
    LLM = "llm"
    STRATEGY = "strategy"
    MANUAL = "manual"


class SignalStatus(enum.StrEnum):
    QUEUED = "queued"
    PROCESSING = "processing"
    PROCESSED = "processed"
    REJECTED = "rejected"
    FAILED = "failed"
    # Stored for the prompt's statistics, never traded: a NEUTRAL analysis, or an analysis for
    # a strategy that is not active.
    RECORDED = "recorded"


class Direction(enum.StrEnum):
    LONG = "LONG"
    SHORT = "SHORT"
    EXIT = "EXIT"


class Signal(UUIDPrimaryKey, UserOwned, Base):
    """One signal from any origin. A `queued` row is the outbox entry processing consumes."""

    __tablename__ = "signals"
    __table_args__ = (
        Index("uq_signals_user_id_idempotency_key", "user_id", "idempotency_key", unique=True),
        Index("ix_signals_status_received_at", "status", "received_at"),
        Index("ix_signals_user_id_received_at", "user_id", "received_at"),
        # The claim's NOT EXISTS over the same (user, symbol): signals/repository.py.
        Index("ix_signals_status_user_id_symbol_received_at",
              "status", "user_id", "symbol", "received_at"),
    )

    endpoint_id: Mapped[uuid.UUID | None] = mapped_column(
        ForeignKey("webhook_endpoints.id", ondelete="SET NULL"), index=True)
    origin: Mapped[str] = mapped_column(String(16), default=SignalOrigin.WEBHOOK.value)
    source: Mapped[str] = mapped_column(String(100))
    symbol: Mapped[str] = mapped_column(String(32))
    direction: Mapped[str] = mapped_column(String(8))
    raw_direction: Mapped[str] = mapped_column(String(16))
    timeframe: Mapped[str] = mapped_column(String(16))
    signal_time: Mapped[datetime]
    price: Mapped[Decimal | None] = mapped_column(Price)
    score: Mapped[float | None] = mapped_column(Float(53))
    confidence: Mapped[float | None] = mapped_column(Float(53))
    # `metadata` is taken by SQLAlchemy's declarative base; the column keeps seed 004's name.
    metadata_: Mapped[dict[str, Any]] = mapped_column("metadata", JSON, default=dict)
    idempotency_key: Mapped[str] = mapped_column(String(255))
    body_hash: Mapped[str] = mapped_column(String(64))
    status: Mapped[str] = mapped_column(String(16), default=SignalStatus.QUEUED.value)
    received_at: Mapped[datetime] = mapped_column(default=utcnow)
    # Intake time (request → validated, deduplicated row ready to insert): /metrics/latency.
    ingest_ms: Mapped[float | None] = mapped_column(Float(53))
    # When a processor took the signal: lets a restart requeue claims a crash abandoned.
    claimed_at: Mapped[datetime | None]
    processed_at: Mapped[datetime | None]
    correlation_id: Mapped[str | None] = mapped_column(String(128))
    # Prompt that produced an LLM signal (seed 000); no FK until prompt_templates exists.
    prompt_template_id: Mapped[uuid.UUID | None]
    prompt_version: Mapped[int | None]
    prompt_type: Mapped[str | None] = mapped_column(String(32))
    # Outcome written back when the position closes: win | loss | breakeven | open.
    outcome: Mapped[str | None] = mapped_column(String(16))
    actual_r_multiple: Mapped[float | None] = mapped_column(Float(53))
    profit_loss: Mapped[Decimal | None] = mapped_column(Price)
    exit_price: Mapped[Decimal | None] = mapped_column(Price)
    exit_time: Mapped[datetime | None]
    entry_price_low: Mapped[Decimal | None] = mapped_column(Price)
    entry_price_high: Mapped[Decimal | None] = mapped_column(Price)
    stop_loss: Mapped[Decimal | None] = mapped_column(Price)
    target_conservative: Mapped[Decimal | None] = mapped_column(Price)
    target_aggressive: Mapped[Decimal | None] = mapped_column(Price)
    execution_price: Mapped[Decimal | None] = mapped_column(Price)


class ProcessingError(UUIDPrimaryKey, Base):
    """Why a signal was refused or failed, with the (secret-free) body that caused it."""

    __tablename__ = "processing_errors"
    __table_args__ = (Index("ix_processing_errors_user_id_received_at", "user_id", "received_at"),)

    # Nullable unlike UserOwned: a later stage may fail before knowing whose signal it was.
    # (Indexed through ix_processing_errors_user_id_received_at.)
    user_id: Mapped[uuid.UUID | None] = mapped_column(ForeignKey("users.id", ondelete="CASCADE"))
    endpoint_id: Mapped[uuid.UUID | None] = mapped_column(
        ForeignKey("webhook_endpoints.id", ondelete="SET NULL"), index=True)
    signal_id: Mapped[uuid.UUID | None] = mapped_column(
        ForeignKey("signals.id", ondelete="CASCADE"), index=True)
    correlation_id: Mapped[str | None] = mapped_column(String(128))
    stage: Mapped[str] = mapped_column(String(32))
    error_type: Mapped[str] = mapped_column(String(64))
    message: Mapped[str] = mapped_column(Text)
    details: Mapped[dict[str, Any]] = mapped_column(JSON, default=dict)
    raw_body: Mapped[str | None] = mapped_column(Text)
    received_at: Mapped[datetime] = mapped_column(default=utcnow)
