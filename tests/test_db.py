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
