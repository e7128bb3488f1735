"""Webhook endpoints: a user's URL with its own secret, auth modes, allowlist and risk."""

from __future__ import annotations

import enum
from typing import Any

from sqlalchemy import JSON, Index, String
from sqlalchemy.orm import Mapped, mapped_column

from tradeloop.db import Base, Timestamps, UUIDPrimaryKey
from tradeloop.ownership import UserOwned


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
