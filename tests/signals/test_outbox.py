"""The outbox: claims in arrival order per (user, symbol); concurrent identical signals."""

from __future__ import annotations

import json
import time
import uuid
from concurrent.futures import ThreadPoolExecutor
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from fastapi.testclient import TestClient
from sqlalchemy import delete, func, select
from sqlalchemy.orm import Session

from tests.conftest import api_headers, make_settings, wait_for_tasks
from tests.signals.conftest import (
    build_app,
    create_endpoint,
    post_signed,
    signal_body,
    user_id,
)
from tradeloop.accounts.models import User
from tradeloop.db import Database, create_db_engine
from tradeloop.signals import flows
from tradeloop.signals.models import Signal, SignalStatus
from tradeloop.signals.repository import SignalQueue, next_queued, requeue_abandoned
from tradeloop.trading.models import Decision
from tradeloop.webhooks import service
from tradeloop.webhooks.auth import EndpointAuth

T0 = datetime(2026, 3, 2, 15, 0, tzinfo=UTC)


def queue(db: Database, owner: uuid.UUID, symbol: str, seconds: int) -> uuid.UUID:
    """Ingest one signal for `symbol` arriving `seconds` after T0."""
    intake = service.Intake(owner, None, EndpointAuth("s", frozenset({"x_signature"})))
    now = T0 + timedelta(seconds=seconds)
    raw = json.dumps(signal_body(symbol=symbol, timestamp=now.isoformat())).encode()
    with db.unit_of_work() as session:
        result = service.ingest_signal(session=session, intake=intake, raw_body=raw,
                                       parsed=service.parse_body(raw), now=now)
    assert result.status == "ACCEPTED" and result.signal_id
    return result.signal_id


def claim(db: Database, limit: int = 100) -> list[uuid.UUID]:
    with SignalQueue.autocommit(db) as signal_queue:
        return [s.id for s in signal_queue.claim(limit=limit)]


def finish(db: Database, signal_id: uuid.UUID) -> None:
    """As processing finishes a claimed signal (the one way to)."""
    with db.unit_of_work() as session:
        assert SignalQueue.of_session(session).finish(signal_id, SignalStatus.PROCESSED)


def test_claims_follow_arrival_order_per_user_and_symbol(db: Database, alice: dict,
                                                         bob: dict) -> None:
    a, b = user_id(db, "alice@example.com"), user_id(db, "bob@example.com")
    spy1, qqq1 = queue(db, a, "SPY", 1), queue(db, a, "QQQ", 2)
    spy2, bob_spy = queue(db, a, "SPY", 3), queue(db, b, "SPY", 4)
    spy3 = queue(db, a, "SPY", 5)
    with db.unit_of_work() as session:
        peek = [s.id for s in next_queued(session=session)]
    assert peek == [spy1, qqq1, bob_spy]
    assert claim(db, limit=2) == [spy1, qqq1]
    # Alice's SPY is busy until spy1 finishes; bob's SPY is another group.
    assert claim(db) == [bob_spy]
    assert claim(db) == []
    finish(db, spy1)
    assert claim(db) == [spy2]
    finish(db, spy2)
    finish(db, qqq1)
    assert claim(db) == [spy3]
    with db.unit_of_work() as session:
        statuses = {row.id: row.status for row in session.execute(select(Signal.id, Signal.status))}
        processed_at = session.get(Signal, spy1).processed_at
    assert statuses[spy1] == statuses[spy2] == statuses[qqq1] == SignalStatus.PROCESSED
    assert statuses[spy3] == statuses[bob_spy] == SignalStatus.PROCESSING
    assert processed_at is not None


def test_abandoned_claims_are_requeued(db: Database, alice: dict) -> None:
    owner = user_id(db, "alice@example.com")
    first = queue(db, owner, "SPY", 1)
    assert claim(db) == [first]
    with db.unit_of_work() as session:
        assert requeue_abandoned(session=session, older_than=timedelta(minutes=5)) == 0
        later = datetime.now(UTC) + timedelta(minutes=6)
        assert requeue_abandoned(session=session, now=later) == 1
    assert claim(db) == [first]


def test_a_key_held_by_an_uncommitted_transaction_is_a_duplicate_once_it_commits(
        database_url: str) -> None:
    """The unique index decides a race between transactions: the second waits for the first
    (SQLite's write lock, PostgreSQL's conflicting row) and then answers DUPLICATE."""
    db = Database(create_db_engine(database_url))
    email = f"signals-tx-race-{uuid.uuid4().hex[:8]}@example.com"
    api_headers(db, email)
    intake = service.Intake(user_id(db, email), None,
                            EndpointAuth("s", frozenset({"x_signature"})))
    raw = json.dumps(signal_body(id=f"race-{uuid.uuid4().hex}")).encode()

    def ingest(session: Session) -> str:
        return service.ingest_signal(session=session, intake=intake, raw_body=raw,
                                     parsed=service.parse_body(raw)).status

    first = db.session_factory()
    try:
        assert ingest(first) == "ACCEPTED"  # inserted, not committed
        with ThreadPoolExecutor(max_workers=1) as pool:
            def second() -> str:
                with db.unit_of_work() as session:
                    return ingest(session)

            answer = pool.submit(second)
            time.sleep(0.5)
            assert not answer.done()  # waiting for the first transaction
            first.commit()
            assert answer.result(timeout=30) == "DUPLICATE"
        with db.unit_of_work() as session:
            assert session.scalar(select(func.count()).select_from(Signal).where(
                Signal.user_id == intake.owner_id)) == 1
    finally:
        first.close()
        with db.unit_of_work() as session:
            session.execute(delete(User).where(User.email == email))
        db.dispose()


def test_fifty_simultaneous_identical_signals_store_one(
        database_url: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Real concurrent requests on committed data (no outer test transaction), processed as
    in production (right after the commit, in the task pool): one signal, one position."""
    db = Database(create_db_engine(database_url))
    email = f"signals-race-{uuid.uuid4().hex[:8]}@example.com"
    headers = api_headers(db, email)
    settings = make_settings(tmp_path / "data", signal_process_on_ingest=True)
    monkeypatch.setattr(flows, "default_config", lambda: flows.ProcessingConfig.from_settings(
        settings))
    try:
        with TestClient(build_app(settings, db)) as client:
            endpoint = create_endpoint(client, headers)
            # A crypto pair trades 24/7, so the market is open whenever the test runs.
            raw = json.dumps(signal_body(symbol="BTCUSD", price=60000)).encode()

            def send(_: int) -> tuple[int, str]:
                response = post_signed(client, raw, path=endpoint["path"],
                                       secret=endpoint["secret"])
                return response.status_code, response.json()["status"]

            with ThreadPoolExecutor(max_workers=50) as pool:
                results = list(pool.map(send, range(50)))
            wait_for_tasks()
            positions = client.get("/api/v1/positions", headers=headers).json()
        assert sorted(results) == [(200, "ACCEPTED")] + [(200, "DUPLICATE")] * 49, results
        with db.unit_of_work() as session:
            owner = session.scalar(select(User.id).where(User.email == email))
            [signal] = session.scalars(select(Signal).where(Signal.user_id == owner)).all()
            actions = session.scalars(select(Decision.action).where(
                Decision.user_id == owner)).all()
        assert (signal.status, signal.outcome, actions) == ("processed", "open", ["ENTER"])
        assert positions["total"] == 1
        [position] = positions["positions"]
        assert (position["symbol"], position["status"], position["signal_id"]) == (
            "BTCUSD", "open", str(signal.id))
    finally:
        with db.unit_of_work() as session:
            # Cascades to the endpoint, the signal and any processing errors.
            session.execute(delete(User).where(User.email == email))
        db.dispose()
