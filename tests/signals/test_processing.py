"""Signal processing end to end: market hours, context, risk gates, positions, outcomes."""

from __future__ import annotations

import json
import uuid
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from typing import Any

import pytest
from fastapi.testclient import TestClient
from sqlalchemy import select

from tests.conftest import store_bars, wait_for_tasks
from tests.signals.conftest import build_app, post_signed, signal_body, user_id
from tradeloop.db import Database
from tradeloop.market_data.calendar import MarketCalendar
from tradeloop.settings import Settings
from tradeloop.signals import flows
from tradeloop.signals.models import ProcessingError, Signal, SignalStatus
from tradeloop.signals.repository import SignalQueue
from tradeloop.trading.models import Decision, Position
from tradeloop.webhooks import endpoints, service
from tradeloop.webhooks.auth import EndpointAuth
from tradeloop.webhooks.schemas import EndpointCreate, RiskSettings

MONDAY = datetime(2026, 3, 2, 15, 0, tzinfo=UTC)  # NYSE open (14:30-21:00 UTC in March)
SUNDAY = datetime(2026, 3, 1, 15, 0, tzinfo=UTC)
CONFIG = flows.ProcessingConfig(MarketCalendar(), market_hours_enforced=True)


def make_endpoint(db: Database, owner: uuid.UUID, **risk: Any) -> uuid.UUID:
    with db.unit_of_work() as session:
        endpoint = endpoints.create_endpoint(session=session, owner_id=owner, data=EndpointCreate(
            name="tv", risk=RiskSettings(**risk)))
        return endpoint.id


def send(db: Database, owner: uuid.UUID, direction: str, *, at: datetime = MONDAY,
         symbol: str = "SPY", price: float | None = 100.0, endpoint: uuid.UUID | None = None,
         stop_loss: str | None = None, config: flows.ProcessingConfig = CONFIG,
         **metadata: Any) -> uuid.UUID:
    """Ingest one signal at `at` and process it; returns the signal id."""
    intake = service.Intake(owner, endpoint, EndpointAuth("s", frozenset({"x_signature"})))
    body = signal_body(symbol=symbol, direction=direction, timestamp=at.isoformat(),
                       price=price, metadata={"score": 85, "confidence": 0.85, **metadata})
    if price is None:
        body.pop("price", None)
    raw = json.dumps(body).encode()
    with db.unit_of_work() as session:
        result = service.ingest_signal(session=session, intake=intake, raw_body=raw,
                                       parsed=service.parse_body(raw), now=at)
        assert result.status == "ACCEPTED" and result.signal_id, result
        if stop_loss:
            session.get(Signal, result.signal_id).stop_loss = Decimal(stop_loss)
    flows.process_signal(db, result.signal_id, config)
    return result.signal_id


def decision_of(db: Database, signal_id: uuid.UUID) -> Decision:
    with db.unit_of_work() as session:
        return session.scalars(select(Decision).where(Decision.signal_id == signal_id)).one()


def signal_of(db: Database, signal_id: uuid.UUID) -> Signal:
    with db.unit_of_work() as session:
        return session.get(Signal, signal_id)


def positions_of(db: Database, owner: uuid.UUID, status: str | None = None) -> list[Position]:
    with db.unit_of_work() as session:
        query = select(Position).where(Position.user_id == owner).order_by(Position.opened_at)
        if status:
            query = query.where(Position.status == status)
        return list(session.scalars(query))


@pytest.fixture
def owner(db: Database, alice: dict) -> uuid.UUID:
    return user_id(db, "alice@example.com")


def test_accepted_webhook_is_processed_and_opens_a_position(
        db: Database, settings: Settings, admin: dict, monkeypatch: pytest.MonkeyPatch) -> None:
    settings = settings.model_copy(update={"signal_process_on_ingest": True})
    monkeypatch.setattr(flows, "default_config", lambda: flows.ProcessingConfig.from_settings(
        settings))
    with TestClient(build_app(settings, db)) as client:
        answer = post_signed(client, signal_body(symbol="BTCUSD", price=60000)).json()
        assert answer["status"] == "ACCEPTED"
        wait_for_tasks()
        signal = client.get(f"/api/v1/signals/{answer['signal_id']}", headers=admin).json()
        assert (signal["status"], signal["outcome"]) == ("processed", "open")
        [position] = client.get("/api/v1/positions?status=open", headers=admin).json()[
            "positions"]
    assert (position["symbol"], position["side"]) == ("BTCUSD", "LONG")
    assert Decimal(position["quantity"]) == Decimal("0.0166666666")
    assert decision_of(db, uuid.UUID(answer["signal_id"])).action == "ENTER"


def test_opposite_signal_closes_then_reverses(db: Database, owner: uuid.UUID) -> None:
    opening = send(db, owner, "CALL", price=100.0)
    reversing = send(db, owner, "PUT", price=110.0, at=MONDAY + timedelta(minutes=10))
    decision = decision_of(db, reversing)
    assert decision.action == "REVERSE"
    closed, reverse = positions_of(db, owner)
    assert (closed.status, closed.side, closed.quantity) == ("closed", "LONG", Decimal(10))
    assert closed.realized_pnl == Decimal("100.00000000")
    assert closed.closing_signal_id == reversing
    assert (reverse.status, reverse.side) == ("open", "SHORT")
    assert reverse.quantity == Decimal("9.0909090909")  # 1000 / 110, rounded down
    assert signal_of(db, opening).outcome == "win"
    assert signal_of(db, opening).profit_loss == Decimal("100")


def test_exit_closes_and_writes_the_outcome(db: Database, owner: uuid.UUID) -> None:
    opening = send(db, owner, "LONG", price=100.0, stop_loss="90")
    exit_id = send(db, owner, "EXIT", price=95.0, at=MONDAY + timedelta(minutes=5))
    assert decision_of(db, exit_id).action == "EXIT"
    [position] = positions_of(db, owner)
    assert (position.status, position.realized_pnl) == ("closed", Decimal("-50"))
    signal = signal_of(db, opening)
    assert (signal.outcome, signal.profit_loss, signal.exit_price) == (
        "loss", Decimal("-50"), Decimal("95"))
    assert signal.exit_time == MONDAY + timedelta(minutes=5)
    assert signal.actual_r_multiple == pytest.approx(-0.5)
    # A second EXIT has nothing to close.
    again = send(db, owner, "EXIT", price=94.0, at=MONDAY + timedelta(minutes=6))
    assert decision_of(db, again).action == "HOLD"


def test_market_hours(db: Database, owner: uuid.UUID) -> None:
    closed = send(db, owner, "LONG", at=SUNDAY)
    decision = decision_of(db, closed)
    assert decision.action == "REJECT" and "market closed" in decision.reasons[0]
    assert signal_of(db, closed).status == SignalStatus.REJECTED
    crypto = send(db, owner, "LONG", at=SUNDAY, symbol="BTCUSD", price=60000.0)
    assert decision_of(db, crypto).action == "ENTER"
    assert signal_of(db, crypto).status == SignalStatus.PROCESSED


GATE_CASES = [
    ({"min_score": 90}, [], "min_score"),
    ({"min_confidence": 0.9}, [], "min_confidence"),
    ({"max_open_positions": 1}, [("QQQ", "LONG", 100.0)], "max_open_positions"),
    ({"max_exposure": 1500}, [("QQQ", "LONG", 100.0)], "max_exposure"),
    ({"cooldown_seconds": 3600}, [("SPY", "LONG", 100.0), ("SPY", "EXIT", 100.0)],
     "cooldown_seconds"),
    ({"daily_loss_limit": 10}, [("QQQ", "LONG", 100.0), ("QQQ", "EXIT", 98.0)],
     "daily_loss_limit"),
]


@pytest.mark.parametrize(("risk", "before", "gate"), GATE_CASES,
                         ids=[case[2] for case in GATE_CASES])
def test_each_risk_gate_refuses_with_its_reason(db: Database, owner: uuid.UUID,
                                                risk: dict, before: list, gate: str) -> None:
    endpoint = make_endpoint(db, owner, **risk)
    at = MONDAY
    for symbol, direction, price in before:
        at += timedelta(minutes=1)
        send(db, owner, direction, symbol=symbol, price=price, at=at, endpoint=endpoint)
    refused = send(db, owner, "LONG", at=at + timedelta(minutes=1), endpoint=endpoint)
    decision = decision_of(db, refused)
    assert decision.action == "REJECT"
    assert [reason.split(":")[0] for reason in decision.reasons] == [gate]
    assert decision.inputs["gates"][gate] is not None
    assert signal_of(db, refused).status == SignalStatus.REJECTED


def test_refused_reversal_still_closes(db: Database, owner: uuid.UUID) -> None:
    endpoint = make_endpoint(db, owner, cooldown_seconds=3600)
    send(db, owner, "LONG", price=100.0, endpoint=endpoint)
    flip = send(db, owner, "SHORT", price=90.0, at=MONDAY + timedelta(minutes=5),
                endpoint=endpoint)
    decision = decision_of(db, flip)
    assert decision.action == "EXIT" and decision.reasons[1].startswith("cooldown_seconds")
    [position] = positions_of(db, owner)
    assert (position.status, position.realized_pnl) == ("closed", Decimal("-100"))


def test_context_from_bars_or_degraded(db: Database, owner: uuid.UUID) -> None:
    without_bars = send(db, owner, "LONG", symbol="QQQ")
    decision = decision_of(db, without_bars)
    assert decision.degraded and decision.action == "ENTER"
    [missing] = decision.inputs["degraded_reasons"]
    assert missing["kind"] == "bars_missing"
    assert "no 5m or 1d bars for QQQ" in missing["message"]
    nothing = send(db, owner, "LONG", symbol="IWM", price=None)
    assert decision_of(db, nothing).action == "REJECT"
    store_bars(db, "DIA")  # 2020: years older than the signal
    stale = decision_of(db, send(db, owner, "LONG", symbol="DIA", price=None))
    assert stale.degraded and stale.action == "ENTER"
    assert [r["kind"] for r in stale.inputs["degraded_reasons"]] == ["bars_stale"]
    store_bars(db, "SPY", end="2026-02-27")  # the Friday before MONDAY
    with_bars = send(db, owner, "LONG", price=None)
    decision = decision_of(db, with_bars)
    context = decision.inputs["context"]
    assert not decision.degraded and context["trend"] in {"up", "down", "sideways"}
    assert context["atr_pct"] > 0 and context["timeframe"] == "1d"
    assert decision.inputs["fill_price"] == context["latest_close"]


def test_processing_failure_marks_failed_and_records_error(
        db: Database, owner: uuid.UUID, monkeypatch: pytest.MonkeyPatch) -> None:
    def broken(*_args: Any) -> None:
        raise RuntimeError("decision engine down")

    monkeypatch.setattr(flows, "decide", broken)
    signal_id = send(db, owner, "LONG")
    assert signal_of(db, signal_id).status == SignalStatus.FAILED
    with db.unit_of_work() as session:
        error = session.scalars(select(ProcessingError).where(
            ProcessingError.signal_id == signal_id)).one()
    assert (error.stage, error.error_type) == ("processing", "RuntimeError")
    assert positions_of(db, owner) == []


def test_queue_drains_in_order_and_recovers_abandoned_claims(db: Database,
                                                              owner: uuid.UUID) -> None:
    intake = service.Intake(owner, None, EndpointAuth("s", frozenset({"x_signature"})))
    ids = []
    for minute, direction in enumerate(["LONG", "SHORT", "EXIT"]):
        at = MONDAY + timedelta(minutes=minute)
        raw = json.dumps(signal_body(direction=direction, timestamp=at.isoformat())).encode()
        with db.unit_of_work() as session:
            ids.append(service.ingest_signal(session=session, intake=intake, raw_body=raw,
                                             parsed=service.parse_body(raw), now=at).signal_id)
    with SignalQueue.autocommit(db) as signal_queue:  # a worker that crashed after claiming
        signal_queue.claim(now=datetime.now(UTC) - timedelta(hours=1))
    # The drain after each webhook leaves claims alone: the symbol waits behind the crashed
    # one until the every-minute sweep requeues it.
    assert flows.process_signal_queue(db, CONFIG) == 0
    assert flows.requeue_abandoned_claims(db) == 1
    assert flows.process_signal_queue(db, CONFIG) == 3
    assert [decision_of(db, signal_id).action for signal_id in ids] == [
        "ENTER", "REVERSE", "EXIT"]
    assert all(signal_of(db, s).status == SignalStatus.PROCESSED for s in ids)


def test_a_stale_claim_never_processes_a_signal_twice(
        db: Database, owner: uuid.UUID, monkeypatch: pytest.MonkeyPatch) -> None:
    """A worker stalls past ABANDONED_AFTER with its claim; the sweep requeues the signal and
    another worker processes it. When the first one wakes up, its unit of work must change
    nothing: not a second decision, not a second position, not a `failed` status."""
    intake = service.Intake(owner, None, EndpointAuth("s", frozenset({"x_signature"})))
    raw = json.dumps(signal_body(direction="LONG", timestamp=MONDAY.isoformat())).encode()
    with db.unit_of_work() as session:
        signal_id = service.ingest_signal(session=session, intake=intake, raw_body=raw,
                                          parsed=service.parse_body(raw), now=MONDAY).signal_id
    with SignalQueue.autocommit(db) as signal_queue:
        [stale] = signal_queue.claim(now=datetime.now(UTC) - timedelta(hours=1))
    assert flows.requeue_abandoned_claims(db) == 1
    assert flows.process_signal_queue(db, CONFIG) == 1
    failures: list[Exception] = []
    monkeypatch.setattr(flows, "record_failure", lambda _db, _id, exc: failures.append(exc))
    assert flows.process_signal(db, signal_id, CONFIG, claimed=stale) is None
    assert failures == []
    with db.unit_of_work() as session:
        decisions = session.scalars(select(Decision).where(
            Decision.signal_id == signal_id)).all()
    assert [decision.action for decision in decisions] == ["ENTER"]
    assert [(p.side, p.status) for p in positions_of(db, owner)] == [("LONG", "open")]
    assert signal_of(db, signal_id).status == SignalStatus.PROCESSED


def test_positions_api_and_manual_close(db: Database, signals_client: TestClient,
                                        owner: uuid.UUID, alice: dict, bob: dict) -> None:
    first = send(db, owner, "LONG", price=100.0)
    store_bars(db, "QQQ")
    send(db, owner, "LONG", symbol="QQQ", price=50.0)
    spy, qqq = (client_position(signals_client, alice, symbol) for symbol in ("SPY", "QQQ"))
    # A price the column holds whose P&L it cannot (PostgreSQL answered 500): 422, still open.
    too_far = signals_client.post(f"/api/v1/positions/{spy['id']}/close",
                                  json={"price": "999999999998.9999"}, headers=alice)
    assert too_far.status_code == 422, too_far.text
    assert too_far.json()["error"]["details"]["fields"][0]["field"] == "price"
    closed = signals_client.post(f"/api/v1/positions/{spy['id']}/close",
                                 json={"price": "105.5"}, headers=alice)
    assert closed.status_code == 200, closed.text
    assert Decimal(closed.json()["realized_pnl"]) == Decimal("55")
    assert signal_of(db, first).outcome == "win"
    again = signals_client.post(f"/api/v1/positions/{spy['id']}/close", headers=alice)
    assert again.status_code == 409
    at_bar = signals_client.post(f"/api/v1/positions/{qqq['id']}/close", headers=alice).json()
    assert at_bar["status"] == "closed" and Decimal(at_bar["exit_price"]) > 0
    listed = signals_client.get("/api/v1/positions?status=closed", headers=alice).json()
    assert listed["total"] == 2
    decisions = signals_client.get(f"/api/v1/decisions?signal_id={first}&action=ENTER",
                                   headers=alice).json()
    assert decisions["total"] == 1 and decisions["decisions"][0]["action"] == "ENTER"
    # Bob sees none of it: foreign rows answer exactly like missing ones.
    assert signals_client.get(f"/api/v1/positions/{spy['id']}", headers=bob).status_code == 404
    assert signals_client.post(f"/api/v1/positions/{qqq['id']}/close",
                               headers=bob).status_code == 404
    assert signals_client.get("/api/v1/positions", headers=bob).json()["total"] == 0
    assert signals_client.get("/api/v1/decisions", headers=bob).json()["total"] == 0


def client_position(client: TestClient, headers: dict, symbol: str) -> dict:
    [row] = client.get(f"/api/v1/positions?symbol={symbol}", headers=headers).json()[
        "positions"]
    return row
