"""GEX snapshots: the API (validation, idempotent retries, isolation) and the regime gate."""

from __future__ import annotations

import uuid
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from typing import Any

import pytest
from fastapi.testclient import TestClient

from tests.conftest import store_bars
from tests.signals.test_processing import MONDAY, decision_of, make_endpoint, send
from tradeloop.db import Database
from tradeloop.market_context import gex
from tradeloop.market_context.gex import GexLevels
from tradeloop.market_context.schemas import GexIn
from tradeloop.trading.regime import gex_refusal, regime

GEX = "/api/v1/gex"


def gex_body(**overrides: Any) -> dict[str, Any]:
    body: dict[str, Any] = {"symbol": "spy", "as_of": datetime.now(UTC).isoformat(),
                            "net_gex": "1250000000.5", "gamma_flip": "495.25",
                            "call_wall": "510", "put_wall": "480", "spot_price": 500.1,
                            "source": "vendor"}
    body.update(overrides)
    return {key: value for key, value in body.items() if value is not None}


def store_gex(db: Database, owner: uuid.UUID, at: datetime, **levels: str) -> None:
    body = gex_body(symbol="SPY", as_of=at.isoformat(), spot_price=None,
                    **{"net_gex": "1000000000", "gamma_flip": "95", "call_wall": "101",
                       "put_wall": "90", **levels})
    with db.unit_of_work() as session:
        gex.record_gex(session=session, owner_id=owner, data=GexIn.model_validate(body),
                       now=at + timedelta(minutes=1))


class TestApi:
    def test_record_list_and_read(self, signals_client: TestClient, alice: dict) -> None:
        created = signals_client.post(GEX, json=gex_body(), headers=alice)
        assert created.status_code == 201, created.text
        row = created.json()
        assert row["symbol"] == "SPY"
        assert Decimal(row["net_gex"]) == Decimal("1250000000.5")
        assert Decimal(row["gamma_flip"]) == Decimal("495.25")
        assert Decimal(row["spot_price"]) == Decimal("500.1")
        older = gex_body(as_of=(datetime.now(UTC) - timedelta(hours=1)).isoformat())
        assert signals_client.post(GEX, json=older, headers=alice).status_code == 201
        signals_client.post(GEX, json=gex_body(symbol="QQQ"), headers=alice)
        listed = signals_client.get(f"{GEX}?symbol=spy", headers=alice).json()
        assert listed["total"] == 2
        assert listed["gex"][0]["id"] == row["id"]  # newest as_of first
        assert signals_client.get(GEX, headers=alice).json()["total"] == 3
        assert signals_client.get(f"{GEX}/{row['id']}", headers=alice).json() == row

    def test_retry_returns_the_stored_row_and_a_changed_one_conflicts(
            self, signals_client: TestClient, alice: dict) -> None:
        body = gex_body()
        first = signals_client.post(GEX, json=body, headers=alice)
        again = signals_client.post(GEX, json=body, headers=alice)
        assert (first.status_code, again.status_code) == (201, 200)
        assert again.json()["id"] == first.json()["id"]
        changed = signals_client.post(GEX, json={**body, "call_wall": "515"}, headers=alice)
        assert changed.status_code == 409
        assert changed.json()["error"]["details"]["differing"] == ["call_wall"]
        assert signals_client.get(GEX, headers=alice).json()["total"] == 1

    def test_invalid_bodies_list_every_field(self, signals_client: TestClient,
                                             alice: dict) -> None:
        bad = gex_body(symbol="no spaces!", net_gex="NaN", gamma_flip=-1, call_wall=None,
                       as_of="yesterday", extra="x")
        response = signals_client.post(GEX, json=bad, headers=alice)
        assert response.status_code == 422
        fields = {item["field"] for item in response.json()["error"]["details"]["fields"]}
        assert fields == {"symbol", "net_gex", "gamma_flip", "call_wall", "as_of", "extra"}
        crossed = signals_client.post(GEX, json=gex_body(put_wall="520"), headers=alice)
        assert crossed.status_code == 422
        assert "put_wall must not be above call_wall" in crossed.text
        future = gex_body(as_of=(datetime.now(UTC) + timedelta(hours=1)).isoformat())
        refused = signals_client.post(GEX, json=future, headers=alice)
        assert refused.status_code == 422
        assert refused.json()["error"]["details"]["fields"][0]["field"] == "as_of"
        assert signals_client.get(GEX, headers=alice).json()["total"] == 0

    def test_other_users_rows_are_404(self, signals_client: TestClient, alice: dict,
                                      bob: dict) -> None:
        row = signals_client.post(GEX, json=gex_body(), headers=alice).json()
        assert signals_client.get(f"{GEX}/{row['id']}", headers=bob).status_code == 404
        assert signals_client.get(f"{GEX}/{uuid.uuid4()}", headers=alice).status_code == 404
        assert signals_client.get(GEX, headers=bob).json()["total"] == 0
        # Bob's own snapshot of the same symbol and time is his, not a conflict with Alice's.
        assert signals_client.post(GEX, json={**gex_body(), "as_of": row["as_of"]},
                                   headers=bob).status_code == 201

    def test_needs_authentication(self, signals_client: TestClient) -> None:
        assert signals_client.post(GEX, json=gex_body()).status_code == 401
        assert signals_client.get(GEX).status_code == 401


def levels(net_gex: str = "1e9", stale: bool = False) -> GexLevels:
    return GexLevels(Decimal(net_gex), Decimal(95), Decimal(101), Decimal(90),
                     MONDAY, stale=stale)


@pytest.mark.parametrize(("net_gex", "price", "direction", "trend", "refused"), [
    ("1e9", "100.6", "LONG", "up", "call wall"),  # within 0.5 % below the call wall
    ("1e9", "102", "LONG", "up", "call wall"),  # above it
    ("1e9", "100.4", "LONG", "up", None),  # 0.6 % below: not at the wall
    ("1e9", "100.6", "SHORT", "up", None),
    ("1e9", "90.3", "SHORT", "down", "put wall"),
    ("1e9", "90.3", "LONG", "down", None),  # positive gamma: no trend rule
    ("-1e9", "93", "LONG", "down", "against the down trend"),
    ("-1e9", "93", "SHORT", "down", None),
    ("-1e9", "100.9", "LONG", "up", None),  # negative gamma: walls are no cap
    ("-1e9", "96", "SHORT", "up", "against the up trend"),
    ("0", "100.9", "LONG", "down", None),
])
def test_gex_rule(net_gex: str, price: str, direction: str, trend: str,
                  refused: str | None) -> None:
    found = regime(levels(net_gex), Decimal(price), Decimal("0.5"))
    reason = gex_refusal(direction, found, trend)
    assert (reason is None) == (refused is None)
    if refused:
        assert reason is not None and refused in reason and reason.startswith("gex_gate")
    assert gex_refusal(direction, regime(levels(net_gex, stale=True), Decimal(price),
                                         Decimal("0.5")), trend) is None


def test_regime_classification() -> None:
    found = regime(levels("-5"), Decimal("94"), Decimal("0.5"))
    assert (found.gamma, found.behaviour, found.flip_side) == ("negative", "amplified", "below")
    assert not found.near_call_wall and not found.near_put_wall
    assert regime(levels(), Decimal("95"), Decimal(0)).flip_side == "at"
    assert regime(levels(), Decimal("96"), Decimal(0)).behaviour == "dampened"


class TestDecision:
    @pytest.fixture
    def owner(self, db: Database, alice: dict) -> uuid.UUID:
        from tests.signals.conftest import user_id

        return user_id(db, "alice@example.com")

    def test_call_wall_refuses_a_long_and_the_regime_is_recorded(
            self, db: Database, owner: uuid.UUID) -> None:
        store_bars(db, "SPY", end="2026-02-27")
        store_gex(db, owner, MONDAY - timedelta(hours=1))
        refused = decision_of(db, send(db, owner, "LONG", price=100.6))
        assert refused.action == "REJECT"
        assert refused.reasons[0].startswith("gex_gate: positive gamma")
        recorded = refused.inputs["gex_regime"]
        assert (recorded["gamma"], recorded["near_call_wall"]) == ("positive", True)
        assert recorded["call_wall"] == "101"
        assert refused.inputs["gates"]["gex"]["behaviour"] == "dampened"
        assert not refused.degraded
        below = decision_of(db, send(db, owner, "LONG", price=98.0,
                                     at=MONDAY + timedelta(minutes=1)))
        assert below.action == "ENTER"
        assert below.inputs["gex_regime"]["near_call_wall"] is False

    def test_an_endpoint_can_turn_the_gate_off(self, db: Database, owner: uuid.UUID) -> None:
        store_gex(db, owner, MONDAY - timedelta(hours=1))
        endpoint = make_endpoint(db, owner, gex_gate=False)
        decision = decision_of(db, send(db, owner, "LONG", price=100.6, endpoint=endpoint))
        assert decision.action == "ENTER"
        assert decision.inputs["gex_regime"]["near_call_wall"] is True
        wider = make_endpoint(db, owner, gex_wall_buffer_pct=3)
        at_wall = decision_of(db, send(db, owner, "SHORT", symbol="SPY", price=92.0,
                                       endpoint=wider, at=MONDAY + timedelta(minutes=1)))
        # 92 is within 3 % of the put wall (90): the LONG closes, the SHORT leg is refused.
        assert at_wall.action == "EXIT"
        assert at_wall.reasons[1].startswith("gex_gate: positive gamma")
        assert at_wall.inputs["gex_regime"]["near_put_wall"] is True

    def test_negative_gamma_refuses_counter_trend(self, db: Database,
                                                  owner: uuid.UUID) -> None:
        store_bars(db, "SPY", drift=-0.01, end="2026-02-27")
        store_gex(db, owner, MONDAY - timedelta(hours=1), net_gex="-2000000000")
        refused = decision_of(db, send(db, owner, "LONG", price=93.0))
        assert refused.inputs["context"]["trend"] == "down"
        assert refused.action == "REJECT"
        assert "negative gamma (amplified)" in refused.reasons[0]
        short = decision_of(db, send(db, owner, "SHORT", price=93.0,
                                     at=MONDAY + timedelta(minutes=1)))
        assert short.action == "ENTER"

    def test_stale_gex_degrades_and_does_not_refuse(self, db: Database,
                                                    owner: uuid.UUID) -> None:
        store_gex(db, owner, MONDAY - timedelta(days=3))
        decision = decision_of(db, send(db, owner, "LONG", price=100.6))
        assert decision.action == "ENTER"
        assert decision.degraded
        kinds = [item["kind"] for item in decision.inputs["degraded_reasons"]]
        assert "gex_stale" in kinds
        assert decision.inputs["context"]["gex"]["stale"] is True

    def test_a_signal_uses_the_snapshot_it_could_have_seen(self, db: Database,
                                                           owner: uuid.UUID) -> None:
        store_gex(db, owner, MONDAY - timedelta(hours=2), call_wall="101")
        store_gex(db, owner, MONDAY + timedelta(hours=2), call_wall="150")
        decision = decision_of(db, send(db, owner, "LONG", price=100.6))
        assert decision.inputs["context"]["gex"]["call_wall"] == "101"
        assert decision.action == "REJECT"
