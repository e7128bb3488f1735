"""The demo universe in the database: loaded once, then extended day by day without changing
a stored bar; never started by the daily extension, never written over real bars."""

from __future__ import annotations

from datetime import timedelta

from tests.conftest import store_bars
from tradeloop import domains
from tradeloop.db import Database
from tradeloop.market_data import service
from tradeloop.market_data.demo import last_completed_day
from tradeloop.market_data.demo_bars import load_demo_bars
from tradeloop.tasks import load_task_modules, registered_schedules, run_task

load_task_modules(domains.TASK_MODULES)


def stored(db: Database) -> dict[tuple[str, str], tuple[int, str, bool]]:
    with db.unit_of_work() as session:
        return {(s.symbol, s.timeframe): (s.row_count, s.last_ts.date().isoformat(), s.synthetic)
                for s in service.list_series(session=session)}


def test_a_loaded_demo_is_extended_without_changing_a_bar(db: Database) -> None:
    with db.unit_of_work() as session:
        load_demo_bars(session=session, end=last_completed_day() - timedelta(days=10))
    before = stored(db)
    with db.unit_of_work() as session:
        report = load_demo_bars(session=session, only_stored=True)
    assert {(r.symbol, r.timeframe) for r in report.series} == set(before)
    assert all(r.inserted > 0 and r.updated == 0 for r in report.series), report.series
    after = stored(db)
    bitcoin = after[("BTCUSD", "1d")]
    assert bitcoin[1] == last_completed_day().isoformat() and bitcoin[2]
    assert bitcoin[0] == before[("BTCUSD", "1d")][0] + 10
    # Within a day there is nothing more to add.
    assert run_task(db, "extend_demo_bars") == 0


def test_the_daily_extension_never_starts_a_demo_nor_touches_real_bars(db: Database) -> None:
    assert registered_schedules()["extend-demo-bars-daily"].task_name == "extend_demo_bars"
    assert run_task(db, "extend_demo_bars") == 0
    assert stored(db) == {}
    store_bars(db, "ACME", 30)
    with db.unit_of_work() as session:
        report = load_demo_bars(session=session)
    assert report.skipped_real == ["ACME 1d"]
    assert stored(db)[("ACME", "1d")] == (30, "2020-01-30", False)
