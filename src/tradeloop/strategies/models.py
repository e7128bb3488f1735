"""Strategies (seed 003): versioned, user-owned, optimistic locking through lock_version."""

from __future__ import annotations

import enum
from typing import Any

from sqlalchemy import JSON, Index, String, Text
from sqlalchemy.orm import Mapped, mapped_column

from tradeloop.db import Base, Timestamps, UUIDPrimaryKey
from tradeloop.ownership import UserOwned


class StrategyStatus(enum.StrEnum):
    DRAFT = "draft"
    ACTIVE = "active"
    PAUSED = "paused"
    ARCHIVED = "archived"


class Strategy(UUIDPrimaryKey, UserOwned, Timestamps, Base):
    __tablename__ = "strategies"
    __table_args__ = (
        Index("uq_strategies_user_id_name_version", "user_id", "name", "version", unique=True),
        Index("ix_strategies_status", "status"),
    )

    name: Mapped[str] = mapped_column(String(100))
    version: Mapped[int] = mapped_column(default=1)
    status: Mapped[str] = mapped_column(String(16), default=StrategyStatus.DRAFT.value)
    definition: Mapped[str] = mapped_column(Text)
    # `metadata` is taken by SQLAlchemy's declarative base; the column keeps seed 003's name.
    metadata_: Mapped[dict[str, Any]] = mapped_column("metadata", JSON, default=dict)
    lock_version: Mapped[int] = mapped_column(default=1)
