"""The signals outbox (SignalQueue): queued rows a processor claims one (user, symbol) group
at a time, on the DBAPI connection (tradeloop.driver) — processing's hot path.

Order within a (user, symbol) group is arrival order (received_at, then id). Two requests
committing in the opposite order of their arrival can still swap places by milliseconds;
nothing stronger is possible without serialising every webhook on one lock.
"""

from __future__ import annotations

import uuid
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from datetime import datetime, timedelta
from decimal import Decimal
from typing import Any, Protocol

from sqlalchemy import (
    Integer,
    Select,
    Table,
    and_,
    bindparam,
    exists,
    func,
    or_,
    select,
    update,
)
from sqlalchemy.orm import Session

from tradeloop.db import Database, utcnow
from tradeloop.driver import DriverConnection, DriverRepository, Statement
from tradeloop.signals.models import Signal, SignalStatus

_SIGNALS: Table = Signal.__table__


class ClaimedSignal(Protocol):
    """What processing reads of a signal: a claim returns these columns (CLAIMED_COLUMNS) as
    plain rows, not ORM objects, which would cost more to load than the claim itself."""

    id: uuid.UUID
    user_id: uuid.UUID
    endpoint_id: uuid.UUID | None
    origin: str
    symbol: str
    direction: str
    timeframe: str
    signal_time: datetime
    price: Decimal | None
    score: float | None
    confidence: float | None


CLAIMED_COLUMNS = tuple(_SIGNALS.c[name] for name in ClaimedSignal.__annotations__)


def _group_heads(*columns: Any) -> Select[Any]:
    """Queued signals that are the oldest of their (user, symbol) and whose group is idle."""
    signal, earlier, busy = _SIGNALS, _SIGNALS.alias("earlier"), _SIGNALS.alias("busy")
    older_queued = exists().where(
        earlier.c.user_id == signal.c.user_id, earlier.c.symbol == signal.c.symbol,
        earlier.c.status == SignalStatus.QUEUED.value,
        or_(earlier.c.received_at < signal.c.received_at,
            and_(earlier.c.received_at == signal.c.received_at, earlier.c.id < signal.c.id)))
    in_progress = exists().where(
        busy.c.user_id == signal.c.user_id, busy.c.symbol == signal.c.symbol,
        busy.c.status == SignalStatus.PROCESSING.value)
    return (select(*columns)
            .where(signal.c.status == SignalStatus.QUEUED.value, ~older_queued, ~in_progress)
            .order_by(signal.c.received_at, signal.c.id))


# The claim is one statement, built once down to the LIMIT (a new statement object pays for
# its cache key again at every execute, ~1 ms for this one): the heads' ids are picked, locked
# (SKIP LOCKED on PostgreSQL) and marked in one round trip, which returns what processing
# reads. RETURNING has no order, hence received_at to sort by.
_HEAD_IDS = (_group_heads(_SIGNALS.c.id).limit(bindparam("limit", type_=Integer))
             .with_for_update(skip_locked=True))
_CLAIM = Statement(
    update(_SIGNALS).where(_SIGNALS.c.id.in_(_HEAD_IDS.scalar_subquery()))
    .values(status=SignalStatus.PROCESSING.value, claimed_at=bindparam("claimed_at"))
    .returning(*CLAIMED_COLUMNS, _SIGNALS.c.received_at))
_UNFINISHED = Statement(select(*CLAIMED_COLUMNS).where(
    _SIGNALS.c.id == bindparam("signal_id"),
    _SIGNALS.c.status.in_([SignalStatus.QUEUED.value, SignalStatus.PROCESSING.value])))
# RETURNING rather than the row count: in a pipeline (processing's writes on PostgreSQL) the
# count is not known until a result is fetched.
_FINISH_UNFINISHED = Statement(update(_SIGNALS).where(
    _SIGNALS.c.id == bindparam("signal_id"),
    _SIGNALS.c.status.in_([SignalStatus.QUEUED.value, SignalStatus.PROCESSING.value]),
).returning(_SIGNALS.c.id))


def next_queued(*, session: Session, limit: int = 100) -> Sequence[ClaimedSignal]:
    """The signals a processor may take now, oldest first, without claiming them."""
    return session.connection().execute(_group_heads(*CLAIMED_COLUMNS).limit(limit)).all()


class SignalQueue(DriverRepository):
    """The outbox as processing claims and finishes it, on one driver connection."""

    @classmethod
    @contextmanager
    def autocommit(cls, db: Database) -> Iterator[SignalQueue]:
        """A queue whose every statement commits on its own: a claim is one statement, so it
        needs no BEGIN and COMMIT (two round trips more on PostgreSQL)."""
        with db.autocommit_driver() as connection:
            yield cls(connection)

    def claim(self, *, limit: int = 100, now: datetime | None = None) -> list[ClaimedSignal]:
        """Mark up to `limit` signals `processing` and return them, oldest first.

        At most one per (user, symbol), and none from a group that is still processing, so
        each symbol's signals are handled one at a time in arrival order. On PostgreSQL, SKIP
        LOCKED lets several workers claim at once without taking the same row.
        """
        rows = self._connection.rows(_CLAIM, {"limit": limit, "claimed_at": now or utcnow()})
        return sorted(rows, key=lambda row: (row.received_at, row.id))

    def unfinished(self, signal_id: uuid.UUID) -> ClaimedSignal | None:
        """The signal as processing reads it, if it is still queued or processing."""
        rows = self._connection.rows(_UNFINISHED, {"signal_id": signal_id})
        return rows[0] if rows else None

    def finish(self, signal_id: uuid.UUID, status: SignalStatus, *,
               now: datetime | None = None, **columns: Any) -> bool:
        """Set the final status (and `columns`) of a signal that is still queued or
        processing; False, with nothing written, when it is finished already.

        The condition is what keeps processing exactly-once even when a live claim was taken
        for abandoned and requeued: of two processors of one signal, only the first commit
        counts (the other's unit of work must roll back). On PostgreSQL a concurrent finish
        blocks this UPDATE until it commits, then the condition is judged again on the
        committed row.
        """
        return len(self._connection.rows(_FINISH_UNFINISHED, {
            "signal_id": signal_id, "status": status.value, "processed_at": now or utcnow(),
            **columns})) == 1


@contextmanager
def batched_writes(session: Session) -> Iterator[None]:
    """The block's driver statements on the session's connection go out together: on
    PostgreSQL (psycopg's pipeline mode) without a round trip each, a read waiting only for
    what was sent before it and the end of the block for the rest (raising the first error).
    Elsewhere they run as usual. For writes whose answers are read last."""
    with DriverConnection.of_session(session).pipeline():
        yield


def requeue_abandoned(*, session: Session, older_than: timedelta = timedelta(minutes=5),
                      now: datetime | None = None) -> int:
    """Put claims a crashed processor left behind back in the queue; returns how many."""
    cutoff = (now or utcnow()) - older_than
    result = session.execute(
        update(Signal).where(Signal.status == SignalStatus.PROCESSING.value,
                             Signal.claimed_at < cutoff)
        .values(status=SignalStatus.QUEUED.value, claimed_at=None))
    return int(getattr(result, "rowcount", 0) or 0)


def queue_backlog(*, session: Session) -> tuple[int, datetime | None]:
    """How many signals wait (queued or being processed) and when the oldest arrived."""
    count, oldest = session.execute(
        select(func.count(), func.min(Signal.received_at))
        .where(Signal.status.in_([SignalStatus.QUEUED.value,
                                  SignalStatus.PROCESSING.value]))).one()
    return int(count or 0), oldest
