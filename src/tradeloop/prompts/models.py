"""Prompt templates (SPEC §7, seeds 000 and 001): a stable template, its immutable versions,
labels that point at versions, the history of every label move, and the cache version row.

A template's id never changes (signals store it with the version number they used). Its
content — text, declared variables, model config — lives in version rows 1..n that are never
updated: an edit inserts version n+1 whose `previous_version_id` points at version n.
"""

from __future__ import annotations

import uuid
from datetime import datetime
from typing import Any

from sqlalchemy import JSON, BigInteger, Float, ForeignKey, Index, String, Text
from sqlalchemy.orm import Mapped, mapped_column

from tradeloop.db import Base, Timestamps, UUIDPrimaryKey, utcnow

SYSTEM_AUTHOR = "system"


class PromptTemplate(UUIDPrimaryKey, Timestamps, Base):
    """A template's identity, scope, flags and usage counters; content is in its versions."""

    __tablename__ = "prompt_templates"
    __table_args__ = (
        Index("ix_prompt_templates_scope", "user_id", "strategy_id", "template_type"),
        Index("uq_prompt_templates_seed_key", "seed_key", unique=True),
    )

    name: Mapped[str] = mapped_column(String(200))
    description: Mapped[str] = mapped_column(Text, default="")
    template_type: Mapped[str] = mapped_column(String(32))  # analysis | system | …
    # What kind of analysis it is for: daily | weekly | consolidation | … (SPEC §7).
    timeframe: Mapped[str] = mapped_column(String(32), default="daily")
    language: Mapped[str] = mapped_column(String(16), default="en")
    # NULL owner = a global template (admins write it, everyone reads it).
    user_id: Mapped[uuid.UUID | None] = mapped_column(
        ForeignKey("users.id", ondelete="CASCADE"), index=True)
    strategy_id: Mapped[uuid.UUID | None] = mapped_column(
        ForeignKey("strategies.id", ondelete="CASCADE"), index=True)
    is_active: Mapped[bool] = mapped_column(default=True)
    is_default: Mapped[bool] = mapped_column(default=False)
    latest_version: Mapped[int] = mapped_column(default=1)
    created_by: Mapped[str] = mapped_column(String(320))
    # Stable name of a seeded template, so `tradeloop seed` finds it again after renames.
    seed_key: Mapped[str | None] = mapped_column(String(64))
    # Usage statistics, bumped by the execution listener (SPEC §7).
    executions_count: Mapped[int] = mapped_column(BigInteger, default=0)
    success_count: Mapped[int] = mapped_column(BigInteger, default=0)
    total_latency_ms: Mapped[float] = mapped_column(Float(53), default=0.0)
    last_executed_at: Mapped[datetime | None]


class PromptTemplateVersion(UUIDPrimaryKey, Base):
    """One immutable version of a template's content."""

    __tablename__ = "prompt_template_versions"
    __table_args__ = (
        Index("uq_prompt_template_versions_template_id_version", "template_id", "version",
              unique=True),
    )

    template_id: Mapped[uuid.UUID] = mapped_column(
        ForeignKey("prompt_templates.id", ondelete="CASCADE"))
    version: Mapped[int]
    previous_version_id: Mapped[uuid.UUID | None] = mapped_column(
        ForeignKey("prompt_template_versions.id", ondelete="SET NULL"))
    template_text: Mapped[str] = mapped_column(Text)
    # [{name, type, description, nullable}] — see prompts.variables.
    variables: Mapped[list[dict[str, Any]]] = mapped_column(JSON, default=list)
    # {provider, model_name, temperature, max_tokens}; provider None = the configured default.
    model_config_: Mapped[dict[str, Any]] = mapped_column("model_config", JSON, default=dict)
    change_note: Mapped[str] = mapped_column(Text, default="")
    created_by: Mapped[str] = mapped_column(String(320))
    created_at: Mapped[datetime] = mapped_column(default=utcnow)


class PromptLabel(Base):
    """Where a label (production, staging, …) of a template points now."""

    __tablename__ = "prompt_labels"

    template_id: Mapped[uuid.UUID] = mapped_column(
        ForeignKey("prompt_templates.id", ondelete="CASCADE"), primary_key=True)
    label: Mapped[str] = mapped_column(String(64), primary_key=True)
    version: Mapped[int]
    updated_by: Mapped[str] = mapped_column(String(320))
    updated_at: Mapped[datetime] = mapped_column(default=utcnow)


class PromptLabelEvent(UUIDPrimaryKey, Base):
    """One label move: set (from None), moved (from → to) or removed (to None); who and when."""

    __tablename__ = "prompt_label_events"
    __table_args__ = (Index("ix_prompt_label_events_template_id_at", "template_id", "at"),)

    template_id: Mapped[uuid.UUID] = mapped_column(
        ForeignKey("prompt_templates.id", ondelete="CASCADE"))
    label: Mapped[str] = mapped_column(String(64))
    from_version: Mapped[int | None]
    to_version: Mapped[int | None]
    actor: Mapped[str] = mapped_column(String(320))
    at: Mapped[datetime] = mapped_column(default=utcnow)


class PromptCacheState(Base):
    """A single counter bumped in the same transaction as every template change, so every
    process sees on its next resolution that its cached templates are stale."""

    __tablename__ = "prompt_cache_state"

    id: Mapped[int] = mapped_column(primary_key=True, autoincrement=False)
    counter: Mapped[int] = mapped_column(BigInteger, default=0)
