"""Properties of the decision core under the outbox's guarantees, in memory and on the DB.

The outbox deduplicates by idempotency key and keeps each (user, symbol) in arrival order,
but interleaves symbols however workers happen to claim them. The simulation below does the
same, with hypothesis choosing the repetitions and the interleaving.
"""

from __future__ import annotations

import json
import random
from collections import deque
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from decimal import Decimal

from hypothesis import given, settings
from hypothesis import strategies as st
from sqlalchemy import select

from tests.signals.conftest import signal_body, user_id
from tradeloop.db import Database
from tradeloop.market_data.calendar import MarketCalendar
from tradeloop.signals import flows, service
from tradeloop.signals.auth import EndpointAuth
from tradeloop.signals.models import Position
from tradeloop.signals.trading import Book, Closed, Order, RiskGates, apply, decide, pnl

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
def batches(draw: st.DrawFn) -> list[Sig]:
    """Up to 14 distinct signals, timestamped in arrival order."""
    count = draw(st.integers(1, 14))
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
