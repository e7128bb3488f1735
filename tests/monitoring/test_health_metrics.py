"""Health and metrics exactly as seed 004 shows them, degraded mode on a stale GEX source,
metric values per user, access rules and the Prometheus text format."""

from __future__ import annotations

import uuid
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import prometheus_client
import pytest
from fastapi.testclient import TestClient
from prometheus_client.parser import text_string_to_metric_families
from pydantic import SecretStr

from tests.conftest import make_settings, store_bars
from tests.market_context.test_gex import gex_body
from tests.signals.conftest import build_app, post_signed, signal_body, user_id
from tests.signals.test_processing import MONDAY, SUNDAY, send
from tradeloop.db import Database
from tradeloop.market_context.cache import ContextCache
from tradeloop.market_data.calendar import MarketCalendar
from tradeloop.seeding import seed_demo
from tradeloop.signals import flows

SEED_HEALTH_KEYS = {"healthy", "status", "message", "timestamp", "components"}
SEED_SIGNAL_KEYS = {"totalSignals", "acceptedSignals", "rejectedSignals", "acceptanceRate"}
SEED_POSITION_KEYS = {"openPositions", "totalExposure", "unrealizedPnL", "realizedPnL"}
STAGES = {"ingest", "decision", "endToEnd"}
METRICS_TOKEN = "scrape-token-for-tests"


def assert_component(component: dict[str, Any]) -> None:
    assert {"healthy", "status", "message"} <= set(component)
    assert isinstance(component["healthy"], bool) and component["message"]


def process_queue(db: Database) -> None:
    config = flows.ProcessingConfig(MarketCalendar(), True, ContextCache())
    flows.process_signal_queue(db, config)


def test_health_and_metrics_have_the_seed_shapes(signals_client: TestClient,
                                                 admin: dict) -> None:
    body = signals_client.get("/health").json()
    assert set(body) == SEED_HEALTH_KEYS
    assert (body["healthy"], body["status"], body["message"]) == (
        True, "healthy", "All systems operational")
    datetime.fromisoformat(body["timestamp"])
    assert {"context", "gex", "database", "tasks"} <= set(body["components"])
    for component in body["components"].values():
        assert_component(component)
    for name in ("context", "gex", "database", "tasks"):
        response = signals_client.get(f"/health/{name}")
        assert response.status_code == 200
        one = response.json()
        assert set(one) == SEED_HEALTH_KEYS and set(one["components"]) == {name}
    context = signals_client.get("/health/context",
                                 headers=admin).json()["components"]["context"]
    assert {"cache_hit_rate", "degraded_reasons", "cache_ttl_s", "process_cache"} <= set(context)

    metrics = signals_client.get("/metrics", headers=admin).json()
    assert {"signals", "positions", "latency"} <= set(metrics)
    # Seed 004's empty-system answer, value for value.
    assert {key: metrics["signals"][key] for key in SEED_SIGNAL_KEYS} == dict.fromkeys(
        SEED_SIGNAL_KEYS, 0)
    assert {key: metrics["positions"][key] for key in SEED_POSITION_KEYS} == dict.fromkeys(
        SEED_POSITION_KEYS, 0)
    assert set(metrics["latency"]) >= STAGES
    for part, keys in (("signals", SEED_SIGNAL_KEYS), ("positions", SEED_POSITION_KEYS),
                       ("latency", STAGES)):
        alone = signals_client.get(f"/metrics/{part}", headers=admin).json()
        assert keys <= set(alone)
    for stage in STAGES:
        assert set(metrics["latency"][stage]) == {"count", "p50", "p95", "p99", "max"}


def test_degraded_mode_is_visible_when_the_gex_source_is_stale(
        db: Database, signals_client: TestClient, admin: dict) -> None:
    two_days_ago = (datetime.now(UTC) - timedelta(days=2)).isoformat()
    posted = signals_client.post("/api/v1/gex", headers=admin,
                                 json=gex_body(symbol="BTCUSD", as_of=two_days_ago))
    assert posted.status_code == 201
    gex = signals_client.get("/health/gex", headers=admin)
    assert gex.status_code == 200  # degraded still serves
    body = gex.json()
    assert (body["healthy"], body["status"]) == (True, "degraded")
    component = body["components"]["gex"]
    assert component["status"] == "degraded" and "GEX source stale" in component["message"]
    assert component["age_s"] > 86_400 and component["snapshots"] == 1
    overall = signals_client.get("/health").json()
    assert (overall["healthy"], overall["status"]) == (True, "degraded")
    assert overall["message"] == "Degraded mode: gex"

    # A signal on that symbol is processed all the same, and its decision says why.
    answer = post_signed(signals_client, signal_body(symbol="BTCUSD", price=60000)).json()
    process_queue(db)
    [decision] = signals_client.get(f"/api/v1/decisions?signal_id={answer['signal_id']}",
                                    headers=admin).json()["decisions"]
    assert decision["action"] == "ENTER" and decision["degraded"] is True
    assert "gex_stale" in {r["kind"] for r in decision["inputs"]["degraded_reasons"]}
    context = signals_client.get("/health/context",
                                 headers=admin).json()["components"]["context"]
    assert context["status"] == "degraded"
    assert context["degraded_reasons"]["gex_stale"] == 1
    assert context["degraded_decisions"] == 1

    # A fresh snapshot ends the GEX part of it.
    signals_client.post("/api/v1/gex", headers=admin, json=gex_body(symbol="BTCUSD"))
    assert signals_client.get("/health/gex").json()["status"] == "healthy"


def first_decision(client: TestClient, headers: dict, signal_id: str) -> dict[str, Any]:
    [decision] = client.get(f"/api/v1/decisions?signal_id={signal_id}",
                            headers=headers).json()["decisions"]
    return decision


def test_a_fresh_install_is_healthy_after_its_first_webhooks(
        db: Database, signals_client: TestClient, admin: dict) -> None:
    """Issue 13: after `seed --demo` the first webhook made /health degraded (bars_stale):
    the demo universe ended on 2025-12-31. It now runs through the last completed day."""
    with db.unit_of_work() as session:
        seed_demo(session=session)
    sent = {symbol: post_signed(signals_client, signal_body(symbol=symbol, id=symbol)).json()
            for symbol in ("ACME", "BTCUSD")}
    assert {answer["status"] for answer in sent.values()} == {"ACCEPTED"}
    process_queue(db)
    for symbol, answer in sent.items():
        decision = first_decision(signals_client, admin, answer["signal_id"])
        assert decision["degraded"] is False, decision["inputs"]["degraded_reasons"]
        bar_time = datetime.fromisoformat(decision["inputs"]["context"]["bar_time"])
        assert datetime.now(UTC) - bar_time < timedelta(days=5), symbol  # current demo bars
    health = signals_client.get("/health", headers=admin).json()
    assert (health["status"], health["message"]) == ("healthy", "All systems operational")


def test_stale_real_bars_still_degrade_health(db: Database, signals_client: TestClient,
                                              admin: dict) -> None:
    """Real bars that stopped coming are a feed problem, also where they replaced demo bars."""
    with db.unit_of_work() as session:
        seed_demo(session=session)
    store_bars(db, "GLOBX")  # real daily bars of 2020: they replace the synthetic ones
    answer = post_signed(signals_client, signal_body(symbol="GLOBX", timeframe="1d")).json()
    process_queue(db)
    decision = first_decision(signals_client, admin, answer["signal_id"])
    assert [r["kind"] for r in decision["inputs"]["degraded_reasons"]] == ["bars_stale"]
    health = signals_client.get("/health", headers=admin).json()
    assert (health["status"], health["message"]) == ("degraded", "Degraded mode: context")
    assert health["components"]["context"]["degraded_reasons"] == {"bars_stale": 1}


def test_context_health_reports_the_hit_rate(db: Database, signals_client: TestClient,
                                             alice: dict, admin: dict) -> None:
    owner = user_id(db, "alice@example.com")
    config = flows.ProcessingConfig(MarketCalendar(), True, ContextCache())
    for minute, direction in enumerate(["LONG", "EXIT", "LONG", "EXIT"]):
        send(db, owner, direction, symbol="BTCUSD", price=60000.0,
             at=datetime.now(UTC) - timedelta(minutes=10 - minute), config=config)
    context = signals_client.get("/health/context",
                                 headers=admin).json()["components"]["context"]
    assert context["decisions"] == 4
    assert context["cache_hit_rate"] == 0.75  # one miss, then three hits
    assert context["process_cache"]["hits"] >= 3
    metrics = signals_client.get("/metrics", headers=alice).json()["context"]
    assert (metrics["cacheHits"], metrics["cacheHitRate"]) == (3, 0.75)


@pytest.fixture
def traded(db: Database, alice: dict, bob: dict) -> dict[str, uuid.UUID]:
    """Alice: one entry and one refusal (market closed); Bob: a round trip with +100."""
    alice_id, bob_id = user_id(db, "alice@example.com"), user_id(db, "bob@example.com")
    send(db, alice_id, "LONG", price=100.0)
    send(db, alice_id, "LONG", symbol="QQQ", at=SUNDAY)
    send(db, bob_id, "LONG", symbol="QQQ", price=50.0)
    send(db, bob_id, "EXIT", symbol="QQQ", price=55.0, at=MONDAY + timedelta(minutes=5))
    return {"alice": alice_id, "bob": bob_id}


def test_each_user_sees_their_own_numbers(signals_client: TestClient, traded: dict,
                                          alice: dict, bob: dict, admin: dict) -> None:
    mine = signals_client.get("/metrics", headers=alice).json()
    assert mine["scope"] == "user"
    assert {k: mine["signals"][k] for k in SEED_SIGNAL_KEYS} == {
        "totalSignals": 2, "acceptedSignals": 1, "rejectedSignals": 1, "acceptanceRate": 0.5}
    assert {k: mine["positions"][k] for k in SEED_POSITION_KEYS} == {
        "openPositions": 1, "totalExposure": 1000.0, "unrealizedPnL": 0.0, "realizedPnL": 0.0}
    assert mine["latency"]["decision"]["count"] == 2
    assert mine["latency"]["endToEnd"]["count"] == 2
    bobs = signals_client.get("/metrics/positions", headers=bob).json()
    assert (bobs["openPositions"], bobs["realizedPnL"], bobs["closedPositions"]) == (0, 100.0, 1)
    assert signals_client.get("/metrics/signals", headers=bob).json()["acceptanceRate"] == 1
    everyone = signals_client.get("/metrics/signals?scope=all", headers=admin).json()
    assert (everyone["totalSignals"], everyone["acceptedSignals"]) == (4, 3)
    own = signals_client.get("/metrics/signals", headers=admin).json()
    assert own["totalSignals"] == 0  # the admin's own rows unless asking for all
    assert signals_client.get("/metrics?scope=all", headers=alice).status_code == 403
    for path in ("/metrics", "/metrics/signals", "/metrics/positions", "/metrics/latency",
                 "/metrics/prometheus"):
        assert signals_client.get(path).status_code == 401


def test_every_metrics_endpoint_splits_by_user(signals_client: TestClient, traded: dict,
                                               alice: dict, bob: dict, admin: dict) -> None:
    """Each user's figures add up to the admin's system-wide ones; neither sees the other's."""
    figures = {
        "/metrics": lambda b: (b["signals"]["totalSignals"], b["positions"]["openPositions"],
                               b["latency"]["decision"]["count"], b["context"]["decisions"]),
        "/metrics/signals": lambda b: (b["totalSignals"], b["acceptedSignals"],
                                       b["rejectedSignals"]),
        "/metrics/positions": lambda b: (b["openPositions"], b["closedPositions"]),
        "/metrics/latency": lambda b: tuple(b[stage]["count"] for stage in sorted(STAGES)),
    }
    for path, read in figures.items():
        mine, theirs, everyone = (
            read(signals_client.get(path, headers=headers, params=params).json())
            for headers, params in ((alice, {}), (bob, {}), (admin, {"scope": "all"})))
        assert tuple(a + b for a, b in zip(mine, theirs, strict=True)) == everyone, path
        assert mine != everyone and theirs != everyone, path
    for headers in ({}, alice, bob):
        for component in signals_client.get("/health", headers=headers).json()[
                "components"].values():
            assert set(component) == {"healthy", "status", "message", "latency_ms"}


def test_latency_percentiles_per_stage(db: Database, signals_client: TestClient,
                                       admin: dict) -> None:
    for index in range(3):
        answer = post_signed(signals_client, signal_body(symbol="BTCUSD", id=f"s{index}"))
        assert answer.json()["status"] == "ACCEPTED"
    process_queue(db)
    latency = signals_client.get("/metrics/latency", headers=admin).json()
    assert latency["unit"] == "ms"
    for stage in STAGES:
        block = latency[stage]
        assert block["count"] == 3, stage
        assert 0 < block["p50"] <= block["p95"] <= block["p99"] <= block["max"]
    # End to end covers the decision: it starts at arrival and ends after processing.
    assert latency["endToEnd"]["max"] >= latency["decision"]["max"]


def scrape(client: TestClient, headers: dict[str, str]) -> dict[str, dict[tuple, float]]:
    response = client.get("/metrics/prometheus", headers=headers)
    assert response.status_code == 200, response.text
    assert response.headers["content-type"].startswith("text/plain; version=")
    return {family.name: {tuple(sorted(sample.labels.items())): sample.value
                          for sample in family.samples}
            for family in text_string_to_metric_families(response.text)}


def test_prometheus_for_admins_and_the_metrics_token(db: Database, tmp_path: Path,
                                                     traded: dict, alice: dict,
                                                     admin: dict) -> None:
    settings = make_settings(tmp_path / "data", metrics_token=SecretStr(METRICS_TOKEN))
    with TestClient(build_app(settings, db)) as client:
        found = scrape(client, admin)
        assert found["tradeloop_signals"][(("outcome", "accepted"),)] == 3
        assert found["tradeloop_signals"][(("outcome", "rejected"),)] == 1
        assert found["tradeloop_positions_open"][()] == 1
        assert found["tradeloop_positions_realized_pnl"][()] == 100
        assert found["tradeloop_latency_samples"][(("stage", "decision"),)] == 4
        assert (("quantile", "0.99"), ("stage", "decision")) in found[
            "tradeloop_latency_milliseconds"]
        token = {"Authorization": f"Bearer {METRICS_TOKEN}"}
        assert scrape(client, token)["tradeloop_signals"] == found["tradeloop_signals"]
        everyone = client.get("/metrics/signals", headers=token).json()
        assert everyone["totalSignals"] == 4  # the token sees system-wide aggregates
        assert client.get("/metrics/prometheus", headers=alice).status_code == 403
        wrong = {"Authorization": "Bearer not-the-token"}
        assert client.get("/metrics/prometheus", headers=wrong).status_code == 401
    # A registry per scrape: nothing leaks into the process-global default registry.
    assert "tradeloop_signals" not in {
        metric.name for metric in prometheus_client.REGISTRY.collect()}
