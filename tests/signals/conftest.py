"""Fixtures and helpers of the signals tests: an app with the signals router, signed posts."""

from __future__ import annotations

import json
import time
import uuid
from collections.abc import Iterator
from datetime import UTC, datetime
from typing import Any

import pytest
from fastapi import FastAPI
from fastapi.testclient import TestClient
from httpx import Response
from sqlalchemy import func, select

import tradeloop.signals.models  # noqa: F401 - registers the tables before any metadata use
from tradeloop.accounts.models import User
from tradeloop.app import create_app
from tradeloop.db import Database
from tradeloop.settings import Settings
from tradeloop.signals.models import ProcessingError, Signal
from tradeloop.webhooks.auth import standard_webhooks_signature, x_signature

WEBHOOK_SECRET = "test-webhook-secret"  # what tests/conftest.make_settings configures
ENDPOINTS = "/api/v1/webhook-endpoints"


def build_app(settings: Settings, db: Database) -> FastAPI:
    """The app as `serve` builds it (domains.py registers the signals router)."""
    return create_app(settings, db)


@pytest.fixture
def signals_app(db: Database, settings: Settings) -> FastAPI:
    return build_app(settings, db)


@pytest.fixture
def signals_client(signals_app: FastAPI) -> Iterator[TestClient]:
    with TestClient(signals_app) as client:
        yield client


def iso_now(offset_s: float = 0) -> str:
    return datetime.fromtimestamp(time.time() + offset_s, UTC).isoformat()


def signal_body(**overrides: Any) -> dict[str, Any]:
    """A valid webhook signal (seed 004's sample, timestamped now)."""
    body: dict[str, Any] = {"source": "TradingView", "symbol": "SPY", "direction": "CALL",
                            "timeframe": "5m", "timestamp": iso_now(), "price": 487.12,
                            "metadata": {"score": 85, "confidence": 0.85}}
    body.update(overrides)
    return {key: value for key, value in body.items() if value is not None}


def encode(body: dict[str, Any] | bytes | str) -> bytes:
    if isinstance(body, bytes):
        return body
    return (body if isinstance(body, str) else json.dumps(body)).encode()


def post_signed(client: TestClient, body: dict[str, Any] | bytes | str, *,
                path: str = "/webhook", secret: str = WEBHOOK_SECRET,
                headers: dict[str, str] | None = None) -> Response:
    """POST with `x-signature: sha256=<hex>` over the exact bytes sent."""
    raw = encode(body)
    return client.post(path, content=raw, headers={
        "content-type": "application/json", "x-signature": x_signature(secret, raw),
        **(headers or {})})


def standard_headers(secret: str, raw: bytes, msg_id: str | None = None,
                     timestamp: int | None = None) -> dict[str, str]:
    """Standard Webhooks headers signing `raw`."""
    msg_id = msg_id or f"msg_{uuid.uuid4().hex}"
    timestamp = int(time.time()) if timestamp is None else timestamp
    return {"webhook-id": msg_id, "webhook-timestamp": str(timestamp),
            "webhook-signature": standard_webhooks_signature(secret, msg_id, timestamp, raw),
            "content-type": "application/json"}


def create_endpoint(client: TestClient, headers: dict[str, str], **fields: Any) -> dict:
    response = client.post(ENDPOINTS, json={"name": "tv", **fields}, headers=headers)
    assert response.status_code == 201, response.text
    return response.json()


def row_counts(db: Database) -> tuple[int, int]:
    """(signals, processing_errors) across all users."""
    with db.unit_of_work() as session:
        return (int(session.scalar(select(func.count()).select_from(Signal)) or 0),
                int(session.scalar(select(func.count()).select_from(ProcessingError)) or 0))


def user_id(db: Database, email: str) -> uuid.UUID:
    with db.unit_of_work() as session:
        found = session.scalar(select(User.id).where(User.email == email))
    assert found is not None
    return found
