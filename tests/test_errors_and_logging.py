"""Error bodies and correlation ids in responses and log lines."""

from __future__ import annotations

import json
import logging

import pytest
from fastapi.testclient import TestClient

from tests.conftest import TEST_PASSWORD


def test_request_id_is_echoed_and_logged(client: TestClient,
                                         caplog: pytest.LogCaptureFixture) -> None:
    response = client.post("/api/v1/auth/register",
                           json={"email": "log@example.com", "password": TEST_PASSWORD},
                           headers={"X-Request-ID": "req-abc-123"})
    assert response.status_code == 201
    assert response.headers["X-Request-ID"] == "req-abc-123"
    formatter = logging.getLogger().handlers[0].formatter
    assert formatter is not None
    # Render each record exactly as the configured handler writes it to stderr.
    lines = [json.loads(formatter.format(record)) for record in caplog.records
             if record.name.startswith("tradeloop")]
    created = [line for line in lines if line["event"] == "user_created"]
    assert created and created[0]["correlation_id"] == "req-abc-123"


def test_generated_request_id_is_in_error_body(client: TestClient) -> None:
    response = client.get("/api/v1/auth/me")
    assert response.status_code == 401
    error = response.json()["error"]
    assert set(error) == {"code", "message", "details", "correlation_id"}
    assert error["correlation_id"] == response.headers["X-Request-ID"]
    assert len(error["correlation_id"]) == 32


def test_unknown_route_is_json_404(client: TestClient) -> None:
    response = client.get("/api/v1/nothing-here")
    assert response.status_code == 404
    assert response.json()["error"]["code"] == "not_found"


def test_unhandled_error_is_json_500_with_correlation_id(client: TestClient) -> None:
    def explode() -> None:
        raise RuntimeError("boom")

    client.app.add_api_route("/api/v1/_explode", explode)  # type: ignore[attr-defined]
    with TestClient(client.app, raise_server_exceptions=False) as raw:
        response = raw.get("/api/v1/_explode", headers={"X-Request-ID": "trace-500"})
    assert response.status_code == 500
    assert response.json()["error"]["code"] == "internal_error"
    assert response.json()["error"]["correlation_id"] == "trace-500"
    assert response.headers["X-Request-ID"] == "trace-500"
    assert "boom" not in response.text
