"""Health endpoints: seed 004's shape, 503 on an unreachable database, bounded time."""

from __future__ import annotations

import time

from fastapi.testclient import TestClient
from pydantic import SecretStr

from tests.conftest import make_settings
from tradeloop import health
from tradeloop.app import create_app
from tradeloop.db import Database


def test_api_health(client: TestClient) -> None:
    assert client.get("/api/health").json() == {"status": "healthy"}


def test_health_has_seed_shape(client: TestClient) -> None:
    response = client.get("/health")
    body = response.json()
    assert response.status_code == 200
    assert set(body) == {"healthy", "status", "message", "timestamp", "components"}
    assert body["healthy"] is True and body["status"] == "healthy"
    assert body["components"]["database"]["healthy"] is True
    assert client.get("/health/database").json()["components"].keys() == {"database"}


def test_unknown_component_is_404(client: TestClient) -> None:
    assert client.get("/health/nope").status_code == 404


def test_unreachable_database_is_503_within_two_seconds(settings) -> None:
    closed_port = Database.from_url("postgresql+psycopg://postgres@127.0.0.1:1/tradeloop",
                                    connect_timeout_s=1)
    with TestClient(create_app(settings, closed_port)) as client:
        for path in ("/health", "/health/database"):
            started = time.perf_counter()
            response = client.get(path)
            assert time.perf_counter() - started < 2
            assert response.status_code == 503
            body = response.json()
            assert body["healthy"] is False
            assert body["components"]["database"]["healthy"] is False
            assert "database" in body["message"]


def test_a_hanging_component_times_out(client: TestClient, settings, admin: dict) -> None:
    def hangs(_db: Database) -> health.ComponentHealth:
        time.sleep(5)
        return health.ComponentHealth("healthy", "never")

    health.register_health_check("slow_probe", hangs)
    try:
        started = time.perf_counter()
        response = client.get("/health", headers=admin)
        assert time.perf_counter() - started < settings.health_check_timeout_s + 1
    finally:
        health._CHECKS.pop("slow_probe")
    assert response.status_code == 503
    assert "timed out" in response.json()["components"]["slow_probe"]["message"]


def test_degraded_component_keeps_service_healthy(client: TestClient) -> None:
    health.register_health_check(
        "flaky_feed", lambda _db: health.ComponentHealth("degraded", "stale data"))
    try:
        response = client.get("/health")
    finally:
        health._CHECKS.pop("flaky_feed")
    assert response.status_code == 200
    assert response.json()["status"] == "degraded"


def test_figures_only_for_admins_and_the_metrics_token(db: Database, tmp_path, alice: dict,
                                                      admin: dict) -> None:
    """Anyone learns the status; counts and reasons (every user's rows) need an admin or the
    METRICS_TOKEN."""
    settings = make_settings(tmp_path / "data", metrics_token=SecretStr("scraper-token"))
    health.register_health_check("feed", lambda _db: health.ComponentHealth(
        "degraded", "3 of 7 decisions ran stale", {"decisions": 7}))
    try:
        with TestClient(create_app(settings, db)) as client:
            answers = {who: client.get("/health/feed", headers=headers).json()
                       for who, headers in (("anyone", {}), ("alice", alice), ("admin", admin),
                                            ("token", {"Authorization": "Bearer scraper-token"}))}
    finally:
        health._CHECKS.pop("feed")
    for who in ("anyone", "alice"):
        component = answers[who]["components"]["feed"]
        assert (answers[who]["status"], component["status"]) == ("degraded", "degraded")
        assert set(component) == {"healthy", "status", "message", "latency_ms"}
        assert "7" not in component["message"]
    for who in ("admin", "token"):
        component = answers[who]["components"]["feed"]
        assert component["message"] == "3 of 7 decisions ran stale"
        assert component["decisions"] == 7
