"""Database plumbing: units of work pinned to one connection."""

from __future__ import annotations

from pathlib import Path

import pytest
from sqlalchemy import event, text

from tradeloop.db import Database


def test_pinned_units_of_work_share_one_checkout_and_stay_separate(tmp_path: Path) -> None:
    db = Database.from_url(f"sqlite:///{tmp_path / 'pinned.db'}")
    with db.engine.begin() as connection:
        connection.execute(text("CREATE TABLE items (name TEXT)"))
    checkouts: list[object] = []
    event.listen(db.engine, "checkout", lambda *_args: checkouts.append(1))
    try:
        with db.pinned() as pinned:
            with pinned.unit_of_work() as session:
                session.execute(text("INSERT INTO items VALUES ('kept')"))
            with pytest.raises(RuntimeError), pinned.unit_of_work() as session:
                session.execute(text("INSERT INTO items VALUES ('rolled back')"))
                raise RuntimeError("the unit fails")
            with pinned.unit_of_work() as session:
                names = session.scalars(text("SELECT name FROM items")).all()
        assert names == ["kept"]
        assert len(checkouts) == 1
        # Other units of work see what the pinned ones committed.
        with db.unit_of_work() as session:
            assert session.scalars(text("SELECT name FROM items")).all() == ["kept"]
    finally:
        db.dispose()


def test_a_read_session_refuses_to_write(db: Database) -> None:
    from tradeloop.accounts.models import User
    from tradeloop.db import ReadOnlySessionError
    with pytest.raises(ReadOnlySessionError), db.read_session() as session:
        session.add(User(email="reader@example.com", hashed_password="x"))
        session.flush()


def test_a_read_session_reads_while_another_connection_holds_the_write_lock(
        tmp_path: Path) -> None:
    import sqlite3
    import time
    database = Database.from_url(f"sqlite:///{tmp_path / 'locked.db'}")
    with database.unit_of_work() as session:
        session.execute(text("CREATE TABLE t (x INTEGER)"))
        session.execute(text("INSERT INTO t VALUES (1)"))
    holder = sqlite3.connect(tmp_path / "locked.db", isolation_level=None)
    holder.execute("BEGIN IMMEDIATE")
    try:
        started = time.monotonic()
        with database.read_session() as session:
            assert session.execute(text("SELECT x FROM t")).scalar_one() == 1
        assert time.monotonic() - started < 1
    finally:
        holder.execute("ROLLBACK")
        holder.close()
        database.dispose()


def test_a_write_whose_commit_fails_is_not_answered_as_a_success(
        db: Database, settings) -> None:
    from fastapi.testclient import TestClient
    from sqlalchemy.orm import Session

    from tradeloop.app import create_app

    def refuse_commit(session: Session) -> None:
        raise RuntimeError("the disk is full")

    app = create_app(settings, db)
    with TestClient(app, raise_server_exceptions=False) as client:
        event.listen(Session, "before_commit", refuse_commit)
        try:
            response = client.post("/api/v1/auth/register", json={
                "email": "late@example.com", "password": "a long enough password"})
        finally:
            event.remove(Session, "before_commit", refuse_commit)
    # The request's unit of work commits before the answer leaves: a 201 would promise a row
    # that was never stored.
    assert response.status_code == 500
