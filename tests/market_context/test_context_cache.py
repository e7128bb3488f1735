"""The context cache (TTL, hit rate, invalidation by new bars and GEX), context snapshots,
degraded mode and bar staleness."""

from __future__ import annotations

import time
import uuid
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from decimal import Decimal

import pytest
from sqlalchemy import select, text

from tests.conftest import store_bars
from tests.market_context.test_gex import store_gex
from tests.signals.conftest import user_id
from tests.signals.test_processing import MONDAY, decision_of, send
from tradeloop.accounts.models import User
from tradeloop.db import Database
from tradeloop.driver import Statement
from tradeloop.market_context import repository as context_repository
from tradeloop.market_context import service as context
from tradeloop.market_context.cache import ContextCache, ContextPolicy
from tradeloop.market_context.models import ContextSnapshot
from tradeloop.market_context.service import MarketContext, stale_bars
from tradeloop.market_data.calendar import MarketCalendar
from tradeloop.signals import flows
from tradeloop.trading.models import Decision

CALENDAR = MarketCalendar()
# A stamp query the database refuses (a driver statement: module-level, like every one).
BROKEN_GEX_QUERY = Statement(text(
    "SELECT id, as_of FROM no_such_gex_table WHERE user_id = :owner_id AND symbol = :symbol"))


def fresh_config(ttl_s: float = 60.0, clock: Callable[[], float] = time.monotonic,
                 ) -> flows.ProcessingConfig:
    return flows.ProcessingConfig(CALENDAR, True,
                                  ContextCache(ContextPolicy(ttl_s=ttl_s), clock=clock))


@pytest.fixture
def owner(db: Database, alice: dict) -> uuid.UUID:
    return user_id(db, "alice@example.com")


def snapshots(db: Database, owner: uuid.UUID) -> list[ContextSnapshot]:
    with db.unit_of_work() as session:
        return list(session.scalars(select(ContextSnapshot).where(
            ContextSnapshot.user_id == owner).order_by(ContextSnapshot.created_at)))


def hits(db: Database, owner: uuid.UUID) -> list[bool]:
    return [row.cache_hit for row in snapshots(db, owner)]


def test_hit_rate_and_invalidation_by_new_gex_and_new_bars(db: Database,
                                                           owner: uuid.UUID) -> None:
    config = fresh_config()
    store_bars(db, "SPY", end="2026-02-27")
    minute = iter(range(1, 100))

    def signal(direction: str) -> uuid.UUID:
        return send(db, owner, direction, at=MONDAY + timedelta(minutes=next(minute)),
                    config=config)

    signal("LONG")  # miss: first look
    signal("EXIT")  # hit
    signal("LONG")  # hit
    assert hits(db, owner) == [False, True, True]
    assert (config.contexts.stats.hits, config.contexts.stats.misses) == (2, 1)
    assert config.contexts.stats.hit_rate == pytest.approx(2 / 3)

    store_gex(db, owner, MONDAY - timedelta(hours=1))  # new GEX: the entry is outdated
    with_gex = signal("EXIT")
    assert decision_of(db, with_gex).inputs["context"]["gex"]["call_wall"] == "101"
    signal("LONG")
    assert hits(db, owner)[3:] == [False, True]
    assert config.contexts.stats.invalidated == 1

    before = decision_of(db, with_gex).inputs["context"]["latest_close"]
    store_bars(db, "SPY", seed=99, end="2026-02-27")  # re-imported bars with other prices
    after_bars = signal("EXIT")
    assert hits(db, owner)[5:] == [False]
    assert decision_of(db, after_bars).inputs["context"]["latest_close"] != before
    assert config.contexts.stats.invalidated == 2
    assert config.contexts.stats.hit_rate == pytest.approx(3 / 6)


def test_entries_expire_after_the_ttl(db: Database, owner: uuid.UUID) -> None:
    clock = [1000.0]
    config = fresh_config(ttl_s=30, clock=lambda: clock[0])
    send(db, owner, "LONG", symbol="BTCUSD", config=config)
    clock[0] += 29
    send(db, owner, "EXIT", symbol="BTCUSD", at=MONDAY + timedelta(minutes=1), config=config)
    clock[0] += 31  # 60 s after the entry was stored
    send(db, owner, "LONG", symbol="BTCUSD", at=MONDAY + timedelta(minutes=2), config=config)
    assert hits(db, owner) == [False, True, False]
    assert config.contexts.stats.expired == 1
    no_cache = fresh_config(ttl_s=0)
    for minute in (3, 4):
        send(db, owner, "LONG", symbol="BTCUSD", at=MONDAY + timedelta(minutes=minute),
             config=no_cache)
    assert no_cache.contexts.stats.hits == 0 and len(no_cache.contexts) == 0


def test_users_do_not_share_entries(db: Database, owner: uuid.UUID, bob: dict) -> None:
    config = fresh_config()
    other = user_id(db, "bob@example.com")
    store_gex(db, owner, MONDAY - timedelta(hours=1))
    send(db, owner, "LONG", price=98.0, config=config)
    bobs = decision_of(db, send(db, other, "LONG", price=98.0, config=config))
    assert bobs.inputs["context"]["gex"] is None  # Alice's GEX is hers alone
    assert config.contexts.stats.hits == 0


def test_a_historical_signal_is_not_served_from_a_newer_entry(db: Database,
                                                              owner: uuid.UUID) -> None:
    config = fresh_config()
    store_bars(db, "SPY", end="2026-02-27")
    send(db, owner, "LONG", config=config)
    earlier = send(db, owner, "EXIT", at=datetime(2026, 2, 3, 15, tzinfo=UTC), config=config)
    decision = decision_of(db, earlier)
    assert decision.inputs["context"]["bar_time"].startswith("2026-02-03")
    assert hits(db, owner) == [False, False]


def test_one_snapshot_per_decision(db: Database, owner: uuid.UUID) -> None:
    config = fresh_config()
    store_bars(db, "SPY", end="2026-02-27")
    ids = [send(db, owner, direction, at=MONDAY + timedelta(minutes=i), config=config)
           for i, direction in enumerate(["LONG", "SHORT", "EXIT"])]
    rows = snapshots(db, owner)
    assert [row.signal_id for row in rows] == ids
    with db.unit_of_work() as session:
        decisions = {row.signal_id: row for row in session.scalars(
            select(Decision).where(Decision.signal_id.in_(ids)))}
    for row in rows:
        decision = decisions[row.signal_id]
        assert row.decision_id == decision.id
        assert row.context == decision.inputs["context"]
        assert (row.symbol, row.timeframe, row.degraded) == ("SPY", "5m", False)
        assert row.build_ms >= 0


def test_a_failing_source_degrades_and_processing_goes_on(
        db: Database, owner: uuid.UUID, monkeypatch: pytest.MonkeyPatch) -> None:
    def broken(**_kwargs: object) -> None:
        raise RuntimeError("bar store unreachable")

    monkeypatch.setattr(context, "load_bars", broken)
    decision = decision_of(db, send(db, owner, "LONG", price=100.0, config=fresh_config()))
    assert decision.action == "ENTER"
    assert decision.degraded
    [reason] = decision.inputs["degraded_reasons"]
    assert reason["kind"] == "context_failed" and "bar store unreachable" in reason["message"]
    [row] = snapshots(db, owner)
    assert row.degraded and row.degraded_reasons == [reason]


def test_a_failing_lookup_query_is_contained(db: Database, owner: uuid.UUID,
                                             monkeypatch: pytest.MonkeyPatch) -> None:
    """A stamp query the database refuses: on PostgreSQL that aborts the transaction unless
    the lookup's savepoint contains it, and the decision after it must still be written."""
    monkeypatch.setattr(context_repository, "_STAMP", BROKEN_GEX_QUERY)
    decision = decision_of(db, send(db, owner, "SHORT", price=100.0, config=fresh_config()))
    assert (decision.action, decision.degraded) == ("ENTER", True)
    [reason] = decision.inputs["degraded_reasons"]
    assert reason["kind"] == "context_failed" and "no_such_gex_table" in reason["message"]


def test_a_failing_lookup_after_other_work_keeps_that_work(
        db: Database, owner: uuid.UUID, monkeypatch: pytest.MonkeyPatch) -> None:
    """Later in a unit of work (as signal generation calls it) the lookup's reads run in a
    savepoint: the work before it still commits, on PostgreSQL too."""
    monkeypatch.setattr(context_repository, "_STAMP", BROKEN_GEX_QUERY)
    config = fresh_config()
    with db.unit_of_work() as session:
        session.add(User(email="written-before@example.com", hashed_password="!"))
        session.flush()
        found = config.contexts.lookup(session=session, owner_id=owner, symbol="SPY",
                                       timeframe="5m", at=MONDAY, calendar=CALENDAR)
    assert [problem["kind"] for problem in found.problems] == ["context_failed"]
    with db.unit_of_work() as session:
        assert session.scalar(select(User.id).where(
            User.email == "written-before@example.com")) is not None


def bars_at(timeframe: str, bar_time: datetime) -> MarketContext:
    return MarketContext(latest_close=Decimal(100), bar_time=bar_time, timeframe=timeframe)


@pytest.mark.parametrize(("symbol", "timeframe", "bar_time", "at", "stale"), [
    # Daily: five days of wall-clock time absorb a weekend.
    ("SPY", "1d", datetime(2026, 2, 27, tzinfo=UTC), MONDAY, False),
    ("SPY", "1d", datetime(2026, 2, 20, tzinfo=UTC), MONDAY, True),
    # Intraday: minutes the market traded since the bar ended (Friday's last 5m bar).
    ("SPY", "5m", datetime(2026, 2, 27, 20, 55, tzinfo=UTC), datetime(2026, 3, 2, 14, 50,
                                                                      tzinfo=UTC), False),
    ("SPY", "5m", datetime(2026, 2, 27, 20, 55, tzinfo=UTC), datetime(2026, 3, 2, 15, 10,
                                                                      tzinfo=UTC), True),
    ("SPY", "5m", datetime(2026, 3, 2, 14, 40, tzinfo=UTC), datetime(2026, 3, 2, 15, 0,
                                                                     tzinfo=UTC), False),
    # Crypto trades around the clock: a weekend gap is stale.
    ("BTCUSD", "5m", datetime(2026, 2, 27, 20, 55, tzinfo=UTC), MONDAY, True),
    ("SPY", "5m", datetime(2026, 1, 2, 20, 55, tzinfo=UTC), MONDAY, True),  # long gone
])
def test_stale_bars(symbol: str, timeframe: str, bar_time: datetime, at: datetime,
                    stale: bool) -> None:
    found = stale_bars(bars_at(timeframe, bar_time), symbol=symbol, at=at, calendar=CALENDAR,
                       after_bars=5)
    assert (found is not None) == stale
    if found:
        assert found["kind"] == "bars_stale"
