"""Accounts' statements on the DBAPI connection (tradeloop.driver), for other domains' hot
paths: the default webhook's owner, and the per-user lock of signal processing."""

from __future__ import annotations

import uuid

from sqlalchemy import bindparam, select

from tradeloop.accounts.models import User
from tradeloop.driver import DriverRepository, Statement

_USERS = User.__table__.c
# The default webhook asks on every request, and only needs the id.
_FIRST_ADMIN_ID = Statement(select(_USERS.id).where(_USERS.is_admin.is_(True))
                            .order_by(_USERS.inserted_at, _USERS.id).limit(1))
# FOR NO KEY UPDATE, not FOR UPDATE: it serialises lockers of one user just as well, but
# FOR UPDATE also blocks the FOR KEY SHARE lock that every INSERT referencing the user takes
# for its foreign key check, so each accepted webhook would wait for the processing in flight.
_LOCK_USER = Statement(select(_USERS.id).where(_USERS.id == bindparam("user_id"))
                       .with_for_update(key_share=True))


class AccountStore(DriverRepository):
    """Users as other domains' fast paths read them, on one driver connection."""

    def first_admin_id(self) -> uuid.UUID | None:
        """The id of the earliest admin, without loading the user."""
        rows = self._connection.rows(_FIRST_ADMIN_ID)
        return rows[0][0] if rows else None

    def lock_user(self, user_id: uuid.UUID) -> None:
        """Row-lock the user until commit (PostgreSQL; a SQLite unit of work holds the
        database's write lock from its first statement, BEGIN IMMEDIATE, so it is serial)."""
        if self._connection.dialect.name != "sqlite":
            self._connection.rows(_LOCK_USER, {"user_id": user_id})
