"""Users and their tokens (sessions, API tokens, password resets, confirmations) — seed 003."""

from __future__ import annotations

import enum
from datetime import datetime

from sqlalchemy import Index, LargeBinary, String
from sqlalchemy.orm import Mapped, mapped_column

from tradeloop.db import Base, Timestamps, UUIDPrimaryKey, utcnow
from tradeloop.ownership import UserOwned


class TokenContext(enum.StrEnum):
    SESSION = "session"
    API = "api"
    RESET_PASSWORD = "reset_password"  # noqa: S105
    CONFIRM = "confirm"


class User(UUIDPrimaryKey, Timestamps, Base):
    __tablename__ = "users"
    # Emails are unique case-insensitively: the service stores them lower-cased.
    email: Mapped[str] = mapped_column(String(320), unique=True)
    hashed_password: Mapped[str] = mapped_column(String(255))
    confirmed_at: Mapped[datetime | None]
    is_admin: Mapped[bool] = mapped_column(default=False)


class UserToken(UUIDPrimaryKey, UserOwned, Base):
    __tablename__ = "users_tokens"
    __table_args__ = (Index("uq_users_tokens_context_token", "context", "token", unique=True),)

    # SHA-256 of the secret handed to the user; the secret itself is never stored.
    token: Mapped[bytes] = mapped_column(LargeBinary(32))
    context: Mapped[str] = mapped_column(String(32))
    sent_to: Mapped[str | None] = mapped_column(String(320))
    name: Mapped[str | None] = mapped_column(String(100))
    inserted_at: Mapped[datetime] = mapped_column(default=utcnow)
    expires_at: Mapped[datetime] = mapped_column(index=True)
    last_used_at: Mapped[datetime | None]
