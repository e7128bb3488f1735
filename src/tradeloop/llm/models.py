"""Tables of the llm package: execution log, price overrides and guardrails (SPEC §7, seed 001).

Template, strategy and signal ids are plain UUIDs without foreign keys: llm sits below the
prompts and signals packages and must not depend on their tables (a deleted template keeps its
execution history).
"""

from __future__ import annotations

import uuid
from datetime import datetime
from decimal import Decimal
from typing import Any

from sqlalchemy import JSON, Float, ForeignKey, Index, Numeric, String, Text, UniqueConstraint
from sqlalchemy.orm import Mapped, mapped_column

from tradeloop.db import Base, UUIDPrimaryKey, utcnow
from tradeloop.ownership import UserOwned

# Costs of single calls are tiny: 12 decimals keep input x $0.075/M exact to the token.
Cost = Numeric(20, 12)
PerMillion = Numeric(18, 8)


class PromptExecution(UUIDPrimaryKey, UserOwned, Base):
    """One prompt sent (or blocked before sending) and what came back."""

    __tablename__ = "prompt_executions"
    __table_args__ = (
        Index("ix_prompt_executions_template_id_executed_at", "template_id", "executed_at"),
        Index("ix_prompt_executions_user_id_executed_at", "user_id", "executed_at"),
        Index("ix_prompt_executions_executed_at", "executed_at"),
    )

    template_id: Mapped[uuid.UUID | None] = mapped_column()
    template_version: Mapped[int | None] = mapped_column()
    strategy_id: Mapped[uuid.UUID | None] = mapped_column(index=True)
    signal_id: Mapped[uuid.UUID | None] = mapped_column(index=True)
    provider: Mapped[str] = mapped_column(String(50))
    model: Mapped[str] = mapped_column(String(200))
    success: Mapped[bool] = mapped_column()
    error_type: Mapped[str | None] = mapped_column(String(50))
    error_message: Mapped[str | None] = mapped_column(Text)
    response_time_ms: Mapped[float] = mapped_column(Float)
    input_token_count: Mapped[int] = mapped_column(default=0)
    output_token_count: Mapped[int] = mapped_column(default=0)
    cost_usd: Mapped[Decimal] = mapped_column(Cost, default=Decimal(0))
    guardrail_results: Mapped[list[dict[str, Any]]] = mapped_column(JSON, default=list)
    executed_at: Mapped[datetime] = mapped_column(default=utcnow)


class ModelPrice(UUIDPrimaryKey, Base):
    """An admin's price for one provider's model, in USD per million tokens; it wins over the
    bundled price table."""

    __tablename__ = "model_prices"
    __table_args__ = (UniqueConstraint("provider", "model"),)

    provider: Mapped[str] = mapped_column(String(50))
    model: Mapped[str] = mapped_column(String(200))
    input_per_million: Mapped[Decimal] = mapped_column(PerMillion)
    output_per_million: Mapped[Decimal] = mapped_column(PerMillion)
    created_at: Mapped[datetime] = mapped_column(default=utcnow)
    updated_at: Mapped[datetime] = mapped_column(default=utcnow, onupdate=utcnow)


class PromptGuardrail(UUIDPrimaryKey, Base):
    """A content rule checked on prompts (input) or answers (output); global, set by admins."""

    __tablename__ = "prompt_guardrails"
    __table_args__ = (Index("ix_prompt_guardrails_is_active_template_id", "is_active",
                            "template_id"),)

    name: Mapped[str] = mapped_column(String(100))
    description: Mapped[str | None] = mapped_column(Text)
    rule_type: Mapped[str] = mapped_column(String(30))
    applies_to: Mapped[str] = mapped_column(String(10))
    action: Mapped[str] = mapped_column(String(10))
    config: Mapped[dict[str, Any]] = mapped_column(JSON, default=dict)
    is_active: Mapped[bool] = mapped_column(default=True)
    template_id: Mapped[uuid.UUID | None] = mapped_column()  # NULL: every template
    created_by: Mapped[uuid.UUID | None] = mapped_column(
        ForeignKey("users.id", ondelete="SET NULL"))
    created_at: Mapped[datetime] = mapped_column(default=utcnow)
    updated_at: Mapped[datetime] = mapped_column(default=utcnow, onupdate=utcnow)
