"""Revision b4c1d2e3f401 indexes the symbols of runs stored before it and gives sweeps stored
before it one point per run, so old runs and sweeps keep working after an upgrade; revision
d3e8f1a2b604 records how old runs closed their last trade (end_fill)."""

from __future__ import annotations

import uuid
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import MetaData, Table, insert, inspect, select, text, types

from tests.conftest import fresh_postgres_database
from tradeloop import migrate
from tradeloop.db import create_db_engine

BEFORE = "8b4d2f6a1c37"


def _filler(column: Any) -> Any:
    """A value of the column's type, for the NOT NULL columns a test does not care about."""
    kind = column.type
    if isinstance(kind, types.Uuid):
        return uuid.uuid4().hex
    if isinstance(kind, types.Boolean):
        return False
    if isinstance(kind, types.Integer):
        return 1
    if isinstance(kind, types.Float | types.Numeric):
        return 1.0
    if isinstance(kind, types.DateTime):
        return datetime(2026, 1, 1, tzinfo=UTC)
    if isinstance(kind, types.JSON):
        return {}
    if isinstance(kind, types.LargeBinary):
        return b""
    return "x"


def _row(table: Table, **values: Any) -> dict[str, Any]:
    return {**{c.name: _filler(c) for c in table.columns
               if not c.nullable and c.server_default is None}, **values}


def test_upgrade_indexes_old_runs_and_gives_old_sweeps_points(tmp_path: Path) -> None:
    # Reflected SQLite tables see Uuid columns as CHAR(32): ids are written and read as hex.
    url = f"sqlite:///{tmp_path / 'old.db'}"
    migrate.upgrade(url, BEFORE)
    engine = create_db_engine(url)
    meta = MetaData()
    meta.reflect(engine)
    users, strategies = meta.tables["users"], meta.tables["strategies"]
    runs, sweeps = meta.tables["backtest_runs"], meta.tables["backtest_sweeps"]
    user_id, strategy_id, sweep_id = uuid.uuid4().hex, uuid.uuid4().hex, uuid.uuid4().hex
    run_ids = [uuid.uuid4(), uuid.uuid4()]
    inserted = datetime(2026, 5, 1, 12, tzinfo=UTC)
    with engine.begin() as connection:
        connection.execute(insert(users), [_row(users, id=user_id, email="old@example.com")])
        connection.execute(insert(strategies), [_row(strategies, id=strategy_id,
                                                     user_id=user_id)])
        connection.execute(insert(runs), [
            _row(runs, id=run_id.hex, user_id=user_id, strategy_id=strategy_id, symbols=symbols,
                 params={"fast": fast}, cache_key=f"key-{fast}", inserted_at=inserted)
            for run_id, symbols, fast in zip(run_ids, [",AAA,BBB,", ",BBB,"], [5, 8],
                                             strict=True)])
        connection.execute(insert(sweeps), [_row(
            sweeps, id=sweep_id, user_id=user_id, strategy_id=strategy_id,
            metric="sharpe_ratio", grid={"fast": [5, 8]},
            run_ids=[str(i) for i in run_ids])])
    engine.dispose()

    migrate.upgrade(url)
    engine = create_db_engine(url)
    meta = MetaData()
    meta.reflect(engine)
    symbols, points = meta.tables["backtest_run_symbols"], meta.tables["backtest_sweep_points"]
    with engine.connect() as connection:
        indexed = connection.execute(select(symbols.c.run_id, symbols.c.symbol,
                                            symbols.c.user_id)).all()
        sweep = connection.execute(select(meta.tables["backtest_sweeps"])).one()
        rows = connection.execute(select(points).order_by(points.c.seq)).all()
    engine.dispose()
    assert sorted((r.run_id, r.symbol) for r in indexed) == sorted(
        [(run_ids[0].hex, "AAA"), (run_ids[0].hex, "BBB"), (run_ids[1].hex, "BBB")])
    assert {r.user_id for r in indexed} == {user_id}
    assert (sweep.method, sweep.total, sweep.top) == ("runs", 2, 2)
    assert sweep.ranked_at is not None and sweep.id == sweep_id
    assert [(p.seq, p.run_id, p.params) for p in rows] == [
        (0, run_ids[0].hex, {"fast": 5}), (1, run_ids[1].hex, {"fast": 8})]


END_FILL_BEFORE = "a9c3d5e7f901"


@pytest.fixture(params=["sqlite", "postgresql"])
def old_database_url(request: pytest.FixtureRequest, tmp_path: Path) -> str:
    if request.param == "sqlite":
        return f"sqlite:///{tmp_path / 'old.db'}"
    return fresh_postgres_database("end_fill")


def test_upgrade_marks_old_runs_end_fill_close_and_downgrades(old_database_url: str) -> None:
    """Runs stored before revision d3e8f1a2b604 were computed closing open trades at the last
    close: they get end_fill "close"; new runs take the model's default, "open"."""
    url = old_database_url
    migrate.upgrade(url, END_FILL_BEFORE)
    engine = create_db_engine(url)
    meta = MetaData()
    meta.reflect(engine)
    users, strategies, runs = (meta.tables[name] for name in
                               ("users", "strategies", "backtest_runs"))
    # Reflected SQLite tables see Uuid columns as CHAR(32); PostgreSQL's as UUID.
    sqlite = engine.dialect.name == "sqlite"
    user_id, strategy_id, run_id = (uuid.uuid4() for _ in range(3))

    def ident(value: uuid.UUID) -> Any:
        return value.hex if sqlite else value

    with engine.begin() as connection:
        connection.execute(insert(users), [_row(users, id=ident(user_id),
                                                email="old@example.com")])
        connection.execute(insert(strategies), [_row(strategies, id=ident(strategy_id),
                                                     user_id=ident(user_id))])
        connection.execute(insert(runs), [_row(runs, id=ident(run_id), user_id=ident(user_id),
                                               strategy_id=ident(strategy_id), cache_key="k")])
        # A row that references the run: altering the table must not cascade-delete it.
        connection.execute(insert(meta.tables["backtest_run_symbols"]), [_row(
            meta.tables["backtest_run_symbols"], run_id=ident(run_id), user_id=ident(user_id),
            symbol="AAA")])
    engine.dispose()

    migrate.upgrade(url)
    engine = create_db_engine(url)
    meta = MetaData()
    meta.reflect(engine)
    column = meta.tables["backtest_runs"].c.end_fill
    with engine.connect() as connection:
        stored = connection.execute(select(column)).scalars().all()
    engine.dispose()
    assert stored == ["close"] and not column.nullable
    assert symbol_rows(url) == 1

    migrate.downgrade(url, END_FILL_BEFORE)
    engine = create_db_engine(url)
    try:
        assert "end_fill" not in {c["name"] for c in inspect(engine).get_columns("backtest_runs")}
    finally:
        engine.dispose()
    assert symbol_rows(url) == 1


def symbol_rows(url: str) -> int:
    engine = create_db_engine(url)
    try:
        with engine.connect() as connection:
            return len(connection.execute(text("SELECT * FROM backtest_run_symbols")).all())
    finally:
        engine.dispose()
