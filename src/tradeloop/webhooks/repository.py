"""The intake's statements on the DBAPI connection (tradeloop.driver): the webhook hot path.

Plain Core statements, built once at import, skip the ORM's and SQLAlchemy's per-execution
work; the intake's few statements are most of a webhook's latency.
"""

from __future__ import annotations

import uuid
from collections.abc import Callable, Collection, Iterator, Mapping
from contextlib import AbstractContextManager, contextmanager
from typing import Any

from sqlalchemy import bindparam, insert, select
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.orm import Session

from tradeloop.accounts.repository import AccountStore
from tradeloop.driver import DriverConnection, DriverRepository, Statement
from tradeloop.signals.models import ProcessingError, Signal
from tradeloop.webhooks.models import WebhookEndpoint

_SIGNALS = Signal.__table__.c
_ENDPOINTS = WebhookEndpoint.__table__.c
# What deduplication needs to know of an owner's stored signals with some keys.
_STORED_BY_KEY = Statement(select(_SIGNALS.id, _SIGNALS.idempotency_key, _SIGNALS.body_hash,
                                  _SIGNALS.status).where(
    _SIGNALS.user_id == bindparam("owner_id"),
    _SIGNALS.idempotency_key.in_(bindparam("keys", expanding=True))))
_SIGNALS_WITH_IDS = Statement(
    select(_SIGNALS.id).where(_SIGNALS.id.in_(bindparam("ids", expanding=True))))
_ACTIVE_ENDPOINTS = Statement(select(
    _ENDPOINTS.endpoint_key, _ENDPOINTS.user_id, _ENDPOINTS.id, _ENDPOINTS.secret,
    _ENDPOINTS.auth_modes, _ENDPOINTS.ip_allowlist).where(
    _ENDPOINTS.endpoint_key.in_(bindparam("keys", expanding=True)),
    _ENDPOINTS.is_active.is_(True)))
# INSERT … ON CONFLICT (user_id, idempotency_key) DO NOTHING, in each dialect's spelling.
_INSERT_UNLESS_KEY_EXISTS = {
    "postgresql": Statement(postgresql.insert(Signal.__table__).on_conflict_do_nothing(
        index_elements=["user_id", "idempotency_key"])),
    "sqlite": Statement(sqlite.insert(Signal.__table__).on_conflict_do_nothing(
        index_elements=["user_id", "idempotency_key"])),
}
_INSERT_ERROR = Statement(insert(ProcessingError.__table__))
_ENDPOINT_RISK = Statement(select(_ENDPOINTS.risk).where(_ENDPOINTS.id == bindparam("endpoint_id")))


class IntakeStore(DriverRepository):
    """The signals, endpoints and processing errors as the intake reads and writes them, in
    the unit of work it was built from."""

    # What opens a driver unit of work: Database.driver_unit_of_work, PinnedDriver.unit_of_work.
    UnitOfWork = Callable[[], AbstractContextManager[DriverConnection]]

    @classmethod
    def of_session(cls, session: Session) -> IntakeStore:
        """On the session's connection, in its transaction; what it holds is flushed first
        (the intake's statements bypass the ORM: they must see it)."""
        session.flush()
        return super().of_session(session)

    @classmethod
    @contextmanager
    def opened(cls, unit_of_work: UnitOfWork) -> Iterator[IntakeStore]:
        """A store in a unit of work of its own: committed when the block ends."""
        with unit_of_work() as connection:
            yield cls(connection)

    def first_admin_id(self) -> uuid.UUID | None:
        """The owner of the default webhook."""
        return AccountStore(self._connection).first_admin_id()

    def active_endpoints(self, keys: Collection[str]) -> list[Any]:
        """(endpoint_key, user_id, id, secret, auth_modes, ip_allowlist) of active endpoints."""
        return self._connection.rows(_ACTIVE_ENDPOINTS, {"keys": list(keys)})

    def insert_new(self, rows: list[dict[str, Any]]) -> set[uuid.UUID]:
        """Insert the signal rows; returns the ids that went in. A row whose key a concurrent
        request stored first is skipped (the unique index decides); any other constraint
        still raises.

        A plain executemany (no RETURNING): the drivers send one small statement with many
        parameter sets, which beats a multi-row statement that psycopg must parse anew for
        every batch size. The row count tells whether every row went in.
        """
        if not rows:
            return set()
        name = self._connection.dialect.name
        if name not in _INSERT_UNLESS_KEY_EXISTS:
            raise NotImplementedError(f"Signal intake supports SQLite and PostgreSQL, not {name}")
        inserted = self._connection.execute_many(_INSERT_UNLESS_KEY_EXISTS[name], rows)
        ids = [row["id"] for row in rows]
        if inserted == len(rows):
            return set(ids)
        return {signal_id for (signal_id,) in self._connection.rows(_SIGNALS_WITH_IDS,
                                                                    {"ids": ids})}

    def stored_by_key(self, owner_id: uuid.UUID, keys: list[str]) -> list[Any]:
        """(id, idempotency_key, body_hash, status) of the owner's signals with these keys."""
        return self._connection.rows(_STORED_BY_KEY, {"owner_id": owner_id, "keys": keys})

    def record_error(self, row: Mapping[str, Any]) -> None:
        """Insert one processing_errors row (only the columns `row` names)."""
        self._connection.execute(_INSERT_ERROR, row)


class EndpointStore(DriverRepository):
    """Webhook endpoints as processing reads them, on one driver connection."""

    def risk(self, endpoint_id: uuid.UUID) -> dict[str, Any] | None:
        """The endpoint's risk settings (None: none, or no such endpoint)."""
        rows = self._connection.rows(_ENDPOINT_RISK, {"endpoint_id": endpoint_id})
        return rows[0].risk if rows else None
