"""Live signals (seed 004): webhook endpoints, the signals table (the durable outbox) and
processing errors."""

from __future__ import annotations

import enum
import uuid
from datetime import datetime
from decimal import Decimal
from typing import Any

from sqlalchemy import JSON, Float, ForeignKey, Index, Numeric, String, Text
from sqlalchemy.orm import Mapped, mapped_column

from tradeloop.db import Base, Timestamps, UUIDPrimaryKey, utcnow
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


class AuthMode(enum.StrEnum):
    X_SIGNATURE = "x_signature"
    STANDARD_WEBHOOKS = "standard_webhooks"
    BODY_SECRET = "body_secret"  # noqa: S105 - a mode name, not a secret


class WebhookEndpoint(UUIDPrimaryKey, UserOwned, Timestamps, Base):
    """A user's webhook URL (`/webhook/{endpoint_key}`) with its own secret and rules."""

    __tablename__ = "webhook_endpoints"
    __table_args__ = (Index("uq_webhook_endpoints_endpoint_key", "endpoint_key", unique=True),)

    name: Mapped[str] = mapped_column(String(100))
    endpoint_key: Mapped[str] = mapped_column(String(64))
    # Kept as given: verifying an HMAC needs the secret itself, not a hash of it.
    secret: Mapped[str] = mapped_column(String(255))
    auth_modes: Mapped[list[str]] = mapped_column(JSON, default=list)
    ip_allowlist: Mapped[list[str]] = mapped_column(JSON, default=list)
    is_active: Mapped[bool] = mapped_column(default=True)
    # Risk gates for the decision stage (min_score, min_confidence, max_open_positions,
    # max_exposure, cooldown_seconds, daily_loss_limit); stored now, enforced by processing.
    risk: Mapped[dict[str, Any]] = mapped_column(JSON, default=dict)


class Signal(UUIDPrimaryKey, UserOwned, Base):
    """One signal from any origin. A `queued` row is the outbox entry processing consumes."""

    __tablename__ = "signals"
    __table_args__ = (
        Index("uq_signals_user_id_idempotency_key", "user_id", "idempotency_key", unique=True),
        Index("ix_signals_status_received_at", "status", "received_at"),
        Index("ix_signals_user_id_received_at", "user_id", "received_at"),
        # The claim's NOT EXISTS over the same (user, symbol): outbox.py.
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
        # The book's last entry on a symbol and the day's realised P&L: positions.load_book.
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
