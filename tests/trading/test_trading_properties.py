"""Properties of the decision core under the outbox's guarantees, in memory and on the DB.

The outbox deduplicates by idempotency key and keeps each (user, symbol) in arrival order,
but interleaves symbols however workers happen to claim them. The simulation below does the
same, with hypothesis choosing the repetitions and the interleaving.
"""

from __future__ import annotations

import json
import random
import uuid
from collections import deque
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from typing import Any

from fastapi.testclient import TestClient
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from sqlalchemy import select

from tests.signals.conftest import post_signed, signal_body, user_id
from tradeloop.accounts.models import User
from tradeloop.db import Database
from tradeloop.market_data.calendar import MarketCalendar
from tradeloop.signals import flows
from tradeloop.signals.models import Signal
from tradeloop.trading.models import Decision, Position
from tradeloop.trading.rules import Book, Closed, Lot, Order, RiskGates, apply, decide, pnl
from tradeloop.trading.service import position_totals
from tradeloop.webhooks import endpoints, service
from tradeloop.webhooks.auth import EndpointAuth
from tradeloop.webhooks.schemas import EndpointCreate, RiskSettings

MONDAY = datetime(2026, 3, 2, 15, 0, tzinfo=UTC)
SYMBOLS = ("SPY", "QQQ", "IWM")
DIRECTIONS = ("LONG", "SHORT", "EXIT")


@dataclass(frozen=True)
class Sig:
    key: int
    symbol: str
    direction: str
    price: Decimal
    score: float
    at: datetime


@st.composite
def batches(draw: st.DrawFn, max_count: int = 14) -> list[Sig]:
    """Up to `max_count` distinct signals, timestamped in arrival order."""
    count = draw(st.integers(1, max_count))
    return [Sig(key, draw(st.sampled_from(SYMBOLS)), draw(st.sampled_from(DIRECTIONS)),
                Decimal(draw(st.integers(5_000, 15_000))) / 100, draw(st.sampled_from([50, 90])),
                MONDAY + timedelta(minutes=7 * key)) for key in range(count)]


@st.composite
def deliveries(draw: st.DrawFn, batch: list[Sig]) -> list[Sig]:
    """The batch in order, each signal followed by 0-2 redeliveries at random later points."""
    sent = list(batch)
    for sig in batch:
        for _ in range(draw(st.integers(0, 2))):
            sent.insert(draw(st.integers(sent.index(sig) + 1, len(sent))), sig)
    return sent


def ingest(sent: list[Sig]) -> list[Sig]:
    """The idempotency key: only the first delivery of a key is queued."""
    seen: set[int] = set()
    return [sig for sig in sent if not (sig.key in seen or seen.add(sig.key))]


def step(book: Book, sig: Sig, gates: RiskGates) -> tuple[Book, Closed | None]:
    order = Order(sig.symbol, sig.direction, sig.price, sig.at, sig.score, 0.9)
    return apply(book, decide(order, book, gates), order)


def drain(queued: list[Sig], gates: RiskGates, choices: st.DataObject,
          ) -> tuple[Book, list[Closed], list[Decimal]]:
    """Process like the outbox: FIFO per symbol, symbols interleaved as hypothesis picks."""
    groups = {symbol: deque(s for s in queued if s.symbol == symbol) for symbol in SYMBOLS}
    book, closed, exposures = Book(), [], []
    while any(groups.values()):
        symbol = choices.draw(st.sampled_from(sorted(s for s, q in groups.items() if q)))
        book, done = step(book, groups[symbol].popleft(), gates)
        closed += [done] if done else []
        exposures.append(book.exposure)
    return book, closed, exposures


def in_order(queued: list[Sig], gates: RiskGates) -> Book:
    book = Book()
    for sig in queued:
        book = step(book, sig, gates)[0]
    return book


@settings(max_examples=150, deadline=None)
@given(data=st.data(), batch=batches())
def test_any_delivery_and_interleaving_ends_in_the_in_order_positions(
        data: st.DataObject, batch: list[Sig]) -> None:
    """With per-signal and per-symbol gates, symbols are independent: only their order counts."""
    gates = RiskGates(min_score=60, cooldown_seconds=600)
    queued = ingest(data.draw(deliveries(batch)))
    assert [sig.key for sig in queued] == [sig.key for sig in batch]
    book, closed, _ = drain(queued, gates, data)
    expected = in_order(batch, gates)
    assert book.open == expected.open
    assert sum(book.realized_by_day.values(), Decimal(0)) == sum(
        expected.realized_by_day.values(), Decimal(0))
    assert sum((c.pnl for c in closed), Decimal(0)) == sum(book.realized_by_day.values(),
                                                          Decimal(0))


@settings(max_examples=150, deadline=None)
@given(data=st.data(), batch=batches(),
       max_exposure=st.sampled_from([Decimal(500), Decimal(1000), Decimal(2500)]),
       max_open=st.sampled_from([None, 1, 2]))
def test_book_wide_gates_hold_under_any_interleaving(
        data: st.DataObject, batch: list[Sig], max_exposure: Decimal,
        max_open: int | None) -> None:
    """Exposure never exceeds max_exposure and realised P&L adds up to the closed positions."""
    gates = RiskGates(max_exposure=max_exposure, max_open_positions=max_open,
                      daily_loss_limit=Decimal(30), position_notional=Decimal(999))
    book, closed, exposures = drain(ingest(data.draw(deliveries(batch))), gates, data)
    assert all(exposure <= max_exposure for exposure in exposures)
    assert max_open is None or len(book.open) <= max_open
    realized = sum(book.realized_by_day.values(), Decimal(0))
    assert realized == sum((c.pnl for c in closed), Decimal(0))
    assert all(c.pnl == pnl(c.lot, c.exit_price) for c in closed)


def test_redelivered_batch_on_the_database_matches_the_core(db: Database, alice: dict) -> None:
    """The DB path (ingest → outbox → flow) gives the core's in-order positions."""
    owner = user_id(db, "alice@example.com")
    rng = random.Random(4)
    batch = [Sig(k, rng.choice(SYMBOLS), rng.choice(DIRECTIONS),
                 Decimal(rng.randint(5_000, 15_000)) / 100, 90,
                 MONDAY + timedelta(minutes=7 * k)) for k in range(12)]
    intake = service.Intake(owner, None, EndpointAuth("s", frozenset({"x_signature"})))
    sent = batch + rng.sample(batch, 6)  # redeliveries after the originals
    answers = []
    for arrival, sig in enumerate(sent):
        raw = json.dumps(signal_body(id=f"sig-{sig.key}", symbol=sig.symbol,
                                     direction=sig.direction, price=str(sig.price),
                                     timestamp=sig.at.isoformat(),
                                     metadata={"score": 90, "confidence": 0.9})).encode()
        with db.unit_of_work() as session:
            answers.append(service.ingest_signal(
                session=session, intake=intake, raw_body=raw, parsed=service.parse_body(raw),
                now=MONDAY + timedelta(hours=2, seconds=arrival)).status)
    assert answers == ["ACCEPTED"] * 12 + ["DUPLICATE"] * 6
    config = flows.ProcessingConfig(MarketCalendar(), market_hours_enforced=False)
    assert flows.process_signal_queue(db, config) == 12
    expected = in_order(batch, RiskGates())
    with db.unit_of_work() as session:
        rows = session.scalars(select(Position).where(Position.user_id == owner)).all()
        open_rows = {(r.symbol, r.side, r.quantity, r.entry_price) for r in rows
                     if r.status == "open"}
        realized = sum((r.realized_pnl for r in rows if r.realized_pnl is not None), Decimal(0))
    assert open_rows == {(lot.symbol, lot.side, lot.quantity, lot.entry_price)
                         for lot in expected.open.values()}
    assert realized == sum(expected.realized_by_day.values(), Decimal(0))


# --- the same properties end to end: signed webhooks → dedup → outbox → processing ----------

# Smaller batches than in memory: every example posts each delivery over HTTP and processes
# the queue on the database (SQLite and PostgreSQL), a few hundred milliseconds per example.
DB_BATCH = 6

@st.composite
def arrivals(draw: st.DrawFn, batch: list[Sig]) -> list[Sig]:
    """The batch as it may arrive: symbols interleaved in any way (each symbol's signals in
    their order), and 0-2 redeliveries of each signal at any later point."""
    queues = {symbol: deque(s for s in batch if s.symbol == symbol) for symbol in SYMBOLS}
    merged = []
    while any(queues.values()):
        symbol = draw(st.sampled_from(sorted(s for s, q in queues.items() if q)))
        merged.append(queues[symbol].popleft())
    return draw(deliveries(merged))


def deliver(client: TestClient, db: Database, risk: dict[str, Any],
            sent: list[Sig]) -> tuple[uuid.UUID, list[str]]:
    """A fresh user and endpoint with `risk`; post every delivery signed, drain the queue."""
    with db.unit_of_work() as session:
        # A row of its own per example, without the deliberately slow password hash.
        user = User(email=f"prop-{uuid.uuid4().hex}@example.com", hashed_password="!")
        session.add(user)
        session.flush()
        owner = user.id
        endpoint = endpoints.create_endpoint(session=session, owner_id=owner, data=EndpointCreate(
            name="prop", risk=RiskSettings(**risk)))
        path, secret = f"/webhook/{endpoint.endpoint_key}", endpoint.secret
    # Timestamps inside the replay window, spaced as in the batch.
    base = datetime.now(UTC) - timedelta(hours=3)
    answers = [post_signed(client, signal_body(
        id=f"sig-{sig.key}", symbol=sig.symbol, direction=sig.direction, price=str(sig.price),
        timestamp=(base + (sig.at - MONDAY)).isoformat(),
        metadata={"score": sig.score, "confidence": 0.9}), path=path, secret=secret
        ).json()["status"] for sig in sent]
    config = flows.ProcessingConfig(MarketCalendar(), market_hours_enforced=False)
    flows.process_signal_queue(db, config)
    return owner, answers


def stored_positions(db: Database, owner: uuid.UUID) -> list[Position]:
    with db.unit_of_work() as session:
        return list(session.scalars(select(Position).where(Position.user_id == owner)))


@settings(max_examples=100, deadline=None,
          suppress_health_check=[HealthCheck.function_scoped_fixture,
                                 HealthCheck.too_slow])
@given(data=st.data(), batch=batches(max_count=DB_BATCH))
def test_webhook_deliveries_in_any_order_end_in_the_in_order_positions(
        db: Database, signals_client: TestClient, data: st.DataObject,
        batch: list[Sig]) -> None:
    """Through HTTP and the database: whatever the interleaving and the redeliveries, each
    signal is accepted once and the final positions are those of the batch in order."""
    sent = data.draw(arrivals(batch))
    owner, answers = deliver(signals_client, db, {"min_score": 60, "cooldown_seconds": 600},
                             sent)
    first = {sig.key: sent.index(sig) for sig in batch}
    assert answers == ["ACCEPTED" if first[sig.key] == i else "DUPLICATE"
                       for i, sig in enumerate(sent)]
    expected = in_order(batch, RiskGates(min_score=60, cooldown_seconds=600))
    rows = stored_positions(db, owner)
    assert {(r.symbol, r.side, r.quantity, r.entry_price) for r in rows if r.status == "open"} \
        == {(lot.symbol, lot.side, lot.quantity, lot.entry_price)
            for lot in expected.open.values()}
    assert sum((r.realized_pnl for r in rows if r.status == "closed"), Decimal(0)) == sum(
        expected.realized_by_day.values(), Decimal(0))


@settings(max_examples=100, deadline=None,
          suppress_health_check=[HealthCheck.function_scoped_fixture,
                                 HealthCheck.too_slow])
@given(data=st.data(), batch=batches(max_count=DB_BATCH),
       max_exposure=st.sampled_from([Decimal(500), Decimal(1000), Decimal(2500)]),
       max_open=st.sampled_from([None, 1, 2]))
def test_webhook_deliveries_keep_book_limits_and_add_up(
        db: Database, signals_client: TestClient, data: st.DataObject, batch: list[Sig],
        max_exposure: Decimal, max_open: int | None) -> None:
    """Through HTTP and the database: no decision takes exposure past max_exposure, open
    positions stay within the limits, and realised P&L (the positions API's summary, the
    outcomes written back on the signals) equals the sum over the closed positions."""
    risk = {"max_exposure": float(max_exposure), "max_open_positions": max_open,
            "daily_loss_limit": 30, "position_notional": 999}
    owner, _ = deliver(signals_client, db, risk, data.draw(arrivals(batch)))
    with db.unit_of_work() as session:
        entries = session.scalars(select(Decision).where(
            Decision.user_id == owner, Decision.action.in_(["ENTER", "REVERSE"]))).all()
        outcomes = session.scalars(select(Signal.profit_loss).where(
            Signal.user_id == owner, Signal.profit_loss.is_not(None))).all()
    assert all(Decimal(d.inputs["gates"]["exposure_after"]) <= max_exposure for d in entries)
    rows = stored_positions(db, owner)
    opened = [r for r in rows if r.status == "open"]
    assert sum((r.quantity * r.entry_price for r in opened), Decimal(0)) <= max_exposure
    assert max_open is None or len(opened) <= max_open
    closed = [r for r in rows if r.status == "closed"]
    recomputed = sum((pnl(Lot(r.symbol, r.side, r.quantity, r.entry_price), r.exit_price)
                      for r in closed), Decimal(0))
    assert sum((r.realized_pnl for r in closed), Decimal(0)) == recomputed
    assert sum(outcomes, Decimal(0)) == recomputed
    with db.unit_of_work() as session:
        totals = position_totals(session=session, owner_id=owner)
    assert totals.realized_pnl == recomputed and totals.open_positions == len(opened)
