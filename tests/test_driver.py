"""Statements on the DBAPI connection (tradeloop.driver) store and read values exactly as
SQLAlchemy does, on SQLite and PostgreSQL, inside the caller's unit of work."""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from datetime import UTC, datetime
from decimal import Decimal
from pathlib import Path

import pytest
from sqlalchemy import bindparam, column, select, table, text, update

from tests.conftest import fresh_postgres_database
from tradeloop.accounts.repository import AccountStore
from tradeloop.db import Database
from tradeloop.driver import Statement, StatementBuiltPerCallError
from tradeloop.signals.models import ProcessingError, Signal

SIGNALS = Signal.__table__
ERRORS = ProcessingError.__table__
# Driver statements are module-level constants (tradeloop.driver.Statement).
INSERT_SIGNAL = Statement(SIGNALS.insert())
INSERT_ERROR = Statement(ERRORS.insert())
SIGNALS_BY_KEYS = Statement(select(SIGNALS.c.id, SIGNALS.c.signal_time, SIGNALS.c.price,
                                   SIGNALS.c.metadata).where(
    SIGNALS.c.user_id == bindparam("owner"),
    SIGNALS.c.idempotency_key.in_(bindparam("keys", expanding=True))
).order_by(SIGNALS.c.idempotency_key))
_BY_ID = SIGNALS.c.id == bindparam("row_id")
UPDATE_SIGNAL = Statement(update(SIGNALS).where(_BY_ID))
UPDATE_SIGNAL_RETURNING = Statement(
    update(SIGNALS).where(_BY_ID).returning(SIGNALS.c.id, SIGNALS.c.price))


def admin_id(db: Database) -> uuid.UUID:
    with db.unit_of_work() as session:
        owner = AccountStore.of_session(session).first_admin_id()
    assert owner is not None
    return owner


def signal_row(owner: uuid.UUID, key: str) -> dict[str, object]:
    now = datetime(2026, 11, 26, 17, 30, 1, 123456, tzinfo=UTC)
    return {"id": uuid.uuid4(), "user_id": owner, "endpoint_id": None, "origin": "webhook",
            "source": "test", "symbol": "SPY", "direction": "LONG", "raw_direction": "buy",
            "timeframe": "5m", "signal_time": now, "price": Decimal("487.12345678"),
            "score": 85.5, "confidence": 0.85, "metadata": {"score": 85.5, "note": "ü"},
            "idempotency_key": key, "body_hash": "0" * 64, "status": "queued",
            "received_at": now, "ingest_ms": 0.25, "correlation_id": "c1",
            "inserted_at": now, "updated_at": now}


def test_rows_written_on_the_driver_read_back_through_the_orm(db: Database,
                                                                admin: dict) -> None:
    row = signal_row(admin_id(db), "driver-1")
    with db.driver_unit_of_work() as connection:
        assert connection.execute_many(INSERT_SIGNAL, [row]) == 1
    with db.unit_of_work() as session:
        signal = session.get(Signal, row["id"])
        assert signal is not None
        assert (signal.user_id, signal.signal_time, signal.price, signal.metadata_,
                signal.score, signal.received_at.tzinfo) == (
            row["user_id"], row["signal_time"], row["price"], row["metadata"], 85.5, UTC)


def test_orm_rows_read_back_on_the_driver_with_expanded_in_lists(db: Database,
                                                                   admin: dict) -> None:
    owner = admin_id(db)
    rows = [signal_row(owner, f"orm-{n}") for n in range(3)]
    with db.unit_of_work() as session:
        session.execute(SIGNALS.insert(), rows)
    with db.driver_unit_of_work() as connection:
        found = connection.rows(SIGNALS_BY_KEYS, {"owner": owner, "keys": ["orm-0", "orm-2", "x"]})
    assert found == [(r["id"], r["signal_time"], r["price"], r["metadata"])
                     for r in (rows[0], rows[2])]


def test_pipelined_updates_set_only_the_named_columns_and_return_named_rows(
        db: Database, admin: dict) -> None:
    row = signal_row(admin_id(db), "pipelined")
    with db.driver_unit_of_work() as connection:
        connection.execute_many(INSERT_SIGNAL, [row])
        with connection.pipeline():
            connection.execute(UPDATE_SIGNAL, {"row_id": row["id"], "price": Decimal("1.5")})
            [returned] = connection.rows(UPDATE_SIGNAL_RETURNING,
                                         {"row_id": row["id"], "status": "processed"})
    assert (returned.id, returned.price) == (row["id"], Decimal("1.5"))
    with db.unit_of_work() as session:
        signal = session.get(Signal, row["id"])
        assert signal is not None
        assert (signal.price, signal.status, signal.metadata_) == (
            Decimal("1.5"), "processed", row["metadata"])


def test_an_error_in_a_pipeline_fails_the_unit_of_work(db: Database, admin: dict) -> None:
    first, clash = signal_row(admin_id(db), "first"), signal_row(admin_id(db), "clash")
    with pytest.raises(Exception, match=r"(?i)unique"), \
            db.driver_unit_of_work() as connection, connection.pipeline():
        connection.execute(INSERT_SIGNAL, first)
        connection.execute(INSERT_SIGNAL, {**clash, "id": first["id"]})
    with db.unit_of_work() as session:
        assert session.get(Signal, first["id"]) is None


def test_a_failed_driver_unit_of_work_stores_nothing(db: Database) -> None:
    error_id = uuid.uuid4()
    with pytest.raises(RuntimeError), db.driver_unit_of_work() as connection:
        connection.execute(INSERT_ERROR, {"id": error_id, "stage": "test", "error_type": "x",
                                          "message": "m", "details": {}, "received_at":
                                          datetime.now(UTC)})
        raise RuntimeError("the unit fails")
    with db.unit_of_work() as session:
        assert session.get(ProcessingError, error_id) is None


def test_a_pinned_driver_keeps_its_connection_until_a_unit_fails(tmp_path: Path) -> None:
    db = Database.from_url(f"sqlite:///{tmp_path / 'pinned.db'}")
    with db.engine.begin() as connection:
        connection.execute(text("CREATE TABLE items (name TEXT)"))
    pinned = db.pinned_driver()
    seen: list[int] = []
    try:
        for name in ("a", "b"):
            with pinned.unit_of_work() as connection:
                connection.dbapi.execute("INSERT INTO items VALUES (?)", (name,))
                seen.append(id(connection.dbapi))
        with pytest.raises(RuntimeError), pinned.unit_of_work() as connection:
            connection.dbapi.execute("INSERT INTO items VALUES ('rolled back')")
            raise RuntimeError("the unit fails")
        with pinned.unit_of_work() as connection:
            names = [name for (name,) in connection.dbapi.execute("SELECT name FROM items")]
            seen.append(id(connection.dbapi))
        assert names == ["a", "b"]
        assert seen[0] == seen[1]  # one checkout for consecutive units
        assert pinned._pooled is not None
    finally:
        pinned.close()
        db.dispose()


@pytest.fixture(params=["sqlite", "postgresql"])
def items_db(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[Database]:
    """A database of the test's own (not the shared test connection) with one table."""
    url = (f"sqlite:///{tmp_path / 'items.db'}" if request.param == "sqlite"
           else fresh_postgres_database("driver_items"))
    db = Database.from_url(url)
    with db.engine.begin() as connection:
        connection.execute(text("CREATE TABLE items (name TEXT)"))
    yield db
    db.dispose()


ITEMS = table("items", column("name"))
INSERT_ITEM = Statement(ITEMS.insert())


def stored_names(db: Database) -> list[str]:
    with db.engine.connect() as connection:  # another connection: committed rows only
        return sorted(connection.execute(select(ITEMS.c.name)).scalars())


def test_an_autocommit_statement_is_committed_and_the_next_unit_is_a_transaction(
        items_db: Database) -> None:
    with items_db.pinned() as pinned:
        with pinned.autocommit_driver() as connection:
            connection.execute(INSERT_ITEM, {"name": "claimed"})
        assert stored_names(items_db) == ["claimed"]  # visible before the pinned one ends
        with pytest.raises(RuntimeError), pinned.unit_of_work() as session:
            session.execute(ITEMS.insert(), {"name": "rolled back"})
            raise RuntimeError("the unit fails")
    with items_db.autocommit_driver() as connection:
        connection.execute(INSERT_ITEM, {"name": "pooled"})
    assert stored_names(items_db) == ["claimed", "pooled"]


def _select_names_per_call() -> Statement:
    # What the rule forbids: a statement built anew at every call misses every cache.
    return Statement(select(ITEMS.c.name))


def test_a_statement_built_per_call_is_refused(items_db: Database) -> None:
    with pytest.raises(StatementBuiltPerCallError, match="module-level"):
        _select_names_per_call()
    with items_db.driver_unit_of_work() as connection, \
            pytest.raises(StatementBuiltPerCallError, match="Statement constants only"):
        connection.rows(select(ITEMS.c.name))  # type: ignore[arg-type]
