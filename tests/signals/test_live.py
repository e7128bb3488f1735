"""After new bars: mark-to-market of open positions, and active strategies producing signals
through the webhook pipeline (SPEC §3 activation, §6 live signals)."""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from typing import Any

import numpy as np
import pandas as pd
import pytest
from fastapi.testclient import TestClient
from sqlalchemy import func, select

from tests.conftest import wait_for_tasks
from tests.signals.conftest import build_app, user_id
from tests.signals.test_processing import CONFIG, MONDAY, positions_of, send
from tradeloop.db import Database
from tradeloop.events import BARS_CHANGED, event_delivery_enabled, reactions, set_event_delivery
from tradeloop.market_data import service as market_data
from tradeloop.market_data.bar_files import ParsedBars
from tradeloop.market_data.calendar import MarketCalendar
from tradeloop.settings import Settings
from tradeloop.signals import flows, live_strategies
from tradeloop.signals.models import Direction, Signal
from tradeloop.strategies.compiler import StrategySignals
from tradeloop.tasks import registered_schedules, run_task
from tradeloop.trading.marks import mark_open_positions
from tradeloop.trading.models import Decision, Position

LIVE_CONFIG = flows.ProcessingConfig(MarketCalendar(), market_hours_enforced=True)
CROSS = """\
name: live_cross
timeframe: 1h
symbols: [BTCUSD]
params: {fast: 2, slow: 4}
indicators:
  fast_ma: sma(close, fast)
  slow_ma: sma(close, slow)
entry: {long: crossover(fast_ma, slow_ma)}
exit:  {long: crossunder(fast_ma, slow_ma)}
"""


def import_frame(db: Database, symbol: str, timeframe: str, ts: list[datetime],
                 close: list[float]) -> market_data.ImportResult:
    """Import bars with the given closes straight through the market data service."""
    values = np.asarray(close, dtype=float)
    frame = pd.DataFrame({"ts": pd.DatetimeIndex(ts), "open": values, "high": values * 1.01,
                          "low": values * 0.99, "close": values,
                          "volume": np.full(len(values), 10.0)})
    with db.unit_of_work() as session:
        return market_data.import_bars(session=session, symbol=symbol, timeframe=timeframe,
                                       parsed=ParsedBars("plain", frame, 0), source="test")


def bar_rows(ts: list[datetime], close: list[float]) -> list[dict[str, Any]]:
    return [{"ts": t.isoformat(), "open": c, "high": c * 1.01, "low": c * 0.99, "close": c,
             "volume": 10.0} for t, c in zip(ts, close, strict=True)]


def hour_floor(moment: datetime) -> datetime:
    return moment.replace(minute=0, second=0, microsecond=0)


# --- mark-to-market --------------------------------------------------------------------------

class TestMarkToMarket:
    def test_marks_open_positions_exactly_at_the_latest_close(self, db: Database,
                                                              alice: dict, bob: dict) -> None:
        alice_id, bob_id = user_id(db, "alice@example.com"), user_id(db, "bob@example.com")
        send(db, alice_id, "LONG", price=100.0)  # 10 units
        send(db, bob_id, "SHORT", price=100.0)  # bob's book is his own, marked all the same
        send(db, alice_id, "LONG", symbol="QQQ", price=50.0, at=MONDAY)
        send(db, alice_id, "EXIT", symbol="QQQ", price=55.0, at=MONDAY + timedelta(minutes=1))
        later = [MONDAY + timedelta(minutes=5 * k) for k in range(1, 4)]
        import_frame(db, "SPY", "5m", later, [101.0, 102.5, 103.123456789])
        with db.unit_of_work() as session:
            assert mark_open_positions(session=session) == 2
        [spy] = positions_of(db, alice_id, "open")
        assert spy.mark_price == Decimal("103.12345679")
        assert spy.unrealized_pnl == Decimal("31.2345679")  # 10 x 3.12345679, exact
        assert spy.marked_at == later[-1] + timedelta(minutes=5)  # when that bar closed
        [short] = positions_of(db, bob_id, "open")
        assert short.unrealized_pnl == Decimal("-31.2345679")
        [qqq] = positions_of(db, alice_id, "closed")
        assert (qqq.mark_price, qqq.unrealized_pnl) == (Decimal("55"), None)

    def test_an_older_bar_never_overwrites_a_fresher_mark(self, db: Database,
                                                         alice: dict) -> None:
        owner = user_id(db, "alice@example.com")
        send(db, owner, "LONG", price=100.0)
        import_frame(db, "SPY", "5m", [MONDAY - timedelta(hours=1)], [90.0])
        with db.unit_of_work() as session:
            assert mark_open_positions(session=session, symbols=["spy"]) == 0
        [position] = positions_of(db, owner, "open")
        assert (position.mark_price, position.unrealized_pnl) == (Decimal(100), Decimal(0))

    def test_the_freshest_series_gives_the_mark(self, db: Database) -> None:
        day = datetime(2026, 3, 2, tzinfo=UTC)
        import_frame(db, "SPY", "1d", [day], [100.0])  # ends 2026-03-03 00:00
        import_frame(db, "SPY", "1h", [day + timedelta(hours=20)], [101.0])  # ends 21:00
        with db.unit_of_work() as session:
            assert market_data.latest_closes(session=session)["SPY"].close == 100.0
        import_frame(db, "SPY", "1h", [day + timedelta(hours=23)], [102.0])  # ends 00:00 too
        with db.unit_of_work() as session:
            latest = market_data.latest_closes(session=session, symbols=["spy"])["SPY"]
        assert (latest.timeframe, latest.close) == ("1h", 102.0)  # the finer one wins a tie

    def test_periodic_task_is_scheduled_and_runs_by_name(self, db: Database,
                                                         alice: dict) -> None:
        import tradeloop.trading.tasks  # noqa: F401 - declares the tasks and schedules

        schedule = registered_schedules()["mark-positions"]
        assert (schedule.task_name, schedule.cron) == ("mark_positions", "* * * * *")
        owner = user_id(db, "alice@example.com")
        send(db, owner, "LONG", price=100.0)
        import_frame(db, "SPY", "5m", [MONDAY + timedelta(minutes=5)], [99.5])
        assert run_task(db, "mark_positions", symbol="QQQ") == 0
        assert run_task(db, "mark_positions") == 1
        [position] = positions_of(db, owner, "open")
        assert position.unrealized_pnl == Decimal("-5")


# --- reacting to imported bars ----------------------------------------------------------------

@pytest.fixture
def live_settings(settings: Settings, monkeypatch: pytest.MonkeyPatch) -> Iterator[Settings]:
    """Settings that deliver data events; the reactions process with a test config."""
    monkeypatch.setattr(flows, "default_config", lambda: LIVE_CONFIG)
    yield settings.model_copy(update={"events_enabled": True})
    # A later test without an app of its own must not publish into this test's runner.
    set_event_delivery(False)


@pytest.fixture
def live_client(db: Database, live_settings: Settings) -> Iterator[TestClient]:
    with TestClient(build_app(live_settings, db)) as client:
        assert event_delivery_enabled() and reactions(BARS_CHANGED) == ("react_to_new_bars",)
        yield client


def post_bars(client: TestClient, admin: dict, symbol: str, timeframe: str,
              rows: list[dict[str, Any]]) -> dict:
    response = client.post("/api/v1/bars", json={"symbol": symbol, "timeframe": timeframe,
                                                 "bars": rows}, headers=admin)
    assert response.status_code == 201, response.text
    wait_for_tasks()  # the reactions run in the task pool, after the import's commit
    return response.json()


def test_imported_bars_mark_positions_shown_by_the_api(db: Database, live_client: TestClient,
                                                       admin: dict, alice: dict) -> None:
    owner = user_id(db, "alice@example.com")
    send(db, owner, "LONG", price=100.0)
    send(db, owner, "SHORT", symbol="QQQ", price=40.0)
    post_bars(live_client, admin, "SPY", "5m",
              bar_rows([MONDAY + timedelta(minutes=5)], [104.25]))
    listed = live_client.get("/api/v1/positions?status=open", headers=alice).json()
    by_symbol = {row["symbol"]: row for row in listed["positions"]}
    assert Decimal(by_symbol["SPY"]["mark_price"]) == Decimal("104.25")
    assert Decimal(by_symbol["SPY"]["unrealized_pnl"]) == Decimal("42.5")
    assert by_symbol["SPY"]["marked_at"].startswith("2026-03-02T15:10")
    assert Decimal(by_symbol["QQQ"]["unrealized_pnl"]) == 0  # no QQQ bars: still at its fill
    summary = listed["summary"]
    assert summary["open_positions"] == 2
    assert Decimal(summary["unrealized_pnl"]) == Decimal("42.5")
    assert Decimal(summary["exposure"]) == Decimal("2000")
    single = live_client.get(f"/api/v1/positions/{by_symbol['SPY']['id']}", headers=alice)
    assert Decimal(single.json()["unrealized_pnl"]) == Decimal("42.5")


def test_closing_by_hand_ends_the_marks_and_writes_the_outcome(
        db: Database, signals_client: TestClient, alice: dict) -> None:
    owner = user_id(db, "alice@example.com")
    opening = send(db, owner, "SHORT", price=100.0, stop_loss="110")
    import_frame(db, "SPY", "5m", [MONDAY + timedelta(minutes=5)], [96.0])
    with db.unit_of_work() as session:
        mark_open_positions(session=session)
    [row] = positions_of(db, owner, "open")
    assert row.unrealized_pnl == Decimal(40)
    closed = signals_client.post(f"/api/v1/positions/{row.id}/close", headers=alice).json()
    assert (closed["status"], Decimal(closed["exit_price"])) == ("closed", Decimal(96))
    assert (Decimal(closed["realized_pnl"]), closed["unrealized_pnl"]) == (Decimal(40), None)
    signal = signals_client.get(f"/api/v1/signals/{opening}", headers=alice).json()
    assert (signal["outcome"], Decimal(signal["profit_loss"])) == ("win", Decimal(40))
    assert Decimal(signal["exit_price"]) == Decimal(96)
    assert signal["exit_time"] == closed["closed_at"]
    assert signal["actual_r_multiple"] == pytest.approx(0.4)  # 4 points won, 10 risked
    with db.unit_of_work() as session:  # a closed position is never marked again
        assert mark_open_positions(session=session) == 0


class TestFiredRule:
    @staticmethod
    def last(**fired: bool) -> StrategySignals:
        names = ("entry_long", "exit_long", "entry_short", "exit_short")
        return StrategySignals(**{n: np.array([True, fired.get(n, False)]) for n in names})

    def test_entries_outrank_exits_and_cancel_each_other(self) -> None:
        rule = live_strategies.fired_rule
        assert rule(self.last()) is None
        assert rule(self.last(entry_long=True, exit_short=True)).direction == "LONG"
        assert rule(self.last(entry_short=True, exit_long=True)).direction == "SHORT"
        assert rule(self.last(exit_long=True)).rule == "exit_long"
        assert rule(self.last(entry_long=True, entry_short=True)) is None
        both = rule(self.last(entry_long=True, entry_short=True, exit_short=True))
        assert (both.rule, both.direction) == ("exit_short", "EXIT")


NOW_HOUR = hour_floor(datetime.now(UTC))
# Falling closes: the fast average stays below the slow one over the whole history.
HISTORY_TS = [NOW_HOUR - timedelta(hours=h) for h in range(40, 1, -1)]


class TestActiveStrategies:
    """An active strategy's crossover on a newly imported bar becomes one processed signal."""

    HISTORY_TS = HISTORY_TS
    HISTORY = [200.0 - 2 * k for k in range(len(HISTORY_TS))]
    NEW_TS = NOW_HOUR - timedelta(hours=1)  # the bar that just closed
    NEW_CLOSE = 250.0  # jumps: the fast average crosses above the slow one on this bar

    def activate(self, client: TestClient, headers: dict) -> dict:
        created = client.post("/api/v1/strategies", json={"definition": CROSS},
                              headers=headers)
        assert created.status_code == 201, created.text
        strategy = created.json()
        run = client.post("/api/v1/backtest/run", json={"strategy_id": strategy["id"]},
                          headers=headers)
        assert run.status_code in (200, 202), run.text
        wait_for_tasks()
        activated = client.post(f"/api/v1/strategies/{strategy['id']}/activate",
                                headers=headers)
        assert activated.status_code == 200, activated.text
        return activated.json()

    def strategy_signals(self, db: Database) -> list[Signal]:
        with db.unit_of_work() as session:
            return list(session.scalars(select(Signal).where(Signal.origin == "strategy")))

    def test_crossover_on_the_new_bar_signals_decides_and_opens(
            self, db: Database, live_client: TestClient, admin: dict, alice: dict,
            bob: dict) -> None:
        post_bars(live_client, admin, "BTCUSD", "1h", bar_rows(self.HISTORY_TS, self.HISTORY))
        strategy = self.activate(live_client, alice)
        draft = live_client.post("/api/v1/strategies", json={"definition": CROSS},
                                 headers=bob)
        assert draft.status_code == 201  # bob's copy stays a draft: it never trades
        assert self.strategy_signals(db) == []  # activation replays no history

        post_bars(live_client, admin, "BTCUSD", "1h", bar_rows([self.NEW_TS],
                                                              [self.NEW_CLOSE]))
        [signal] = self.strategy_signals(db)
        assert signal.user_id == user_id(db, "alice@example.com")
        assert (signal.direction, signal.symbol, signal.timeframe, signal.status) == (
            "LONG", "BTCUSD", "1h", "processed")
        assert signal.signal_time == self.NEW_TS and signal.source == "strategy"
        assert signal.metadata_["strategy_id"] == strategy["id"]
        assert signal.metadata_["strategy_version"] == 1
        assert signal.metadata_["rule"] == "entry_long"
        assert signal.idempotency_key == (f"id:strategy:{strategy['id']}:v1:BTCUSD:"
                                          f"{self.NEW_TS.isoformat()}:LONG")
        with db.unit_of_work() as session:
            decision = session.scalars(select(Decision).where(
                Decision.signal_id == signal.id)).one()
        assert decision.action == "ENTER"
        listed = live_client.get("/api/v1/signals?origin=strategy", headers=alice).json()
        assert listed["total"] == 1 and listed["signals"][0]["outcome"] == "open"
        [position] = live_client.get("/api/v1/positions", headers=alice).json()["positions"]
        assert (position["side"], Decimal(position["entry_price"])) == ("LONG", Decimal(250))
        assert Decimal(position["quantity"]) == Decimal(4)  # the default 1000 notional
        # Bob sees none of it.
        assert live_client.get("/api/v1/signals", headers=bob).json()["total"] == 0
        assert live_client.get("/api/v1/positions", headers=bob).json()["total"] == 0

        # The same bar again: nothing is written, so nothing reacts; evaluating the bar
        # once more lands on the idempotency key.
        again = post_bars(live_client, admin, "BTCUSD", "1h",
                          bar_rows([self.NEW_TS], [self.NEW_CLOSE]))
        assert (again["inserted"], again["updated"]) == (0, 0)
        with db.unit_of_work() as session:
            [repeat] = live_strategies.evaluate_new_bar(
                session=session, symbol="BTCUSD", timeframe="1h", bar_time=self.NEW_TS)
        assert repeat.status == "DUPLICATE"
        assert len(self.strategy_signals(db)) == 1
        with db.unit_of_work() as session:
            assert session.scalar(select(func.count()).select_from(Position)) == 1

    def test_paused_strategies_old_bars_and_other_timeframes_give_nothing(
            self, db: Database, live_client: TestClient, admin: dict, alice: dict) -> None:
        post_bars(live_client, admin, "BTCUSD", "1h", bar_rows(self.HISTORY_TS, self.HISTORY))
        strategy = self.activate(live_client, alice)
        set_event_delivery(False)  # store the new bar without reacting: evaluated by hand
        import_frame(db, "BTCUSD", "1h", [self.NEW_TS], [self.NEW_CLOSE])
        with db.unit_of_work() as session:
            evaluate = live_strategies.evaluate_new_bar
            assert evaluate(session=session, symbol="BTCUSD", timeframe="4h",
                            bar_time=self.NEW_TS) == []
            # Seen from two days later, the bar is history: no signal.
            assert evaluate(session=session, symbol="BTCUSD", timeframe="1h",
                            bar_time=self.NEW_TS, now=self.NEW_TS + timedelta(days=2)) == []
        paused = live_client.patch(f"/api/v1/strategies/{strategy['id']}", headers=alice,
                                   json={"lock_version": strategy["lock_version"],
                                         "status": "paused"})
        assert paused.status_code == 200, paused.text
        with db.unit_of_work() as session:
            assert live_strategies.evaluate_new_bar(
                session=session, symbol="BTCUSD", timeframe="1h", bar_time=self.NEW_TS) == []
        assert self.strategy_signals(db) == []

    def test_daily_strategy_signal_trades_when_its_date_had_a_session(
            self, db: Database, alice: dict) -> None:
        """A daily bar is stamped 00:00 UTC, outside any session: its date decides."""
        owner = user_id(db, "alice@example.com")
        strategy_like = _StrategyStub(uuid.uuid4(), owner)
        fired = live_strategies.FiredRule("entry_long", Direction.LONG)
        import_frame(db, "SPY", "1d", [datetime(2026, 2, 27, tzinfo=UTC)], [100.0])
        for day, action in ((datetime(2026, 3, 2, tzinfo=UTC), "ENTER"),  # a Monday
                            (datetime(2026, 3, 1, tzinfo=UTC), "REJECT")):  # a Sunday
            with db.unit_of_work() as session:
                result = live_strategies.ingest_strategy_signal(
                    session=session, strategy=strategy_like,  # type: ignore[arg-type]
                    symbol="SPY", timeframe="1d", bar_time=day, fired=fired,
                    now=day + timedelta(hours=22), replay_window=timedelta(days=2))
            assert result.status == "ACCEPTED" and result.signal_id
            flows.process_signal(db, result.signal_id, CONFIG)
            with db.unit_of_work() as session:
                decision = session.scalars(select(Decision).where(
                    Decision.signal_id == result.signal_id)).one()
            assert decision.action == action, decision.reasons
        assert "had no session in the 1d bar of 2026-03-01" in decision.reasons[0]


class _StrategyStub:
    """The attributes of a Strategy that a strategy signal carries."""

    def __init__(self, strategy_id: uuid.UUID, owner: uuid.UUID):
        self.id, self.user_id, self.version, self.name = strategy_id, owner, 3, "daily"
