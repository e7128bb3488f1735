"""The signals outbox: queued rows a processor claims one (user, symbol) group at a time.

Order within a (user, symbol) group is arrival order (received_at, then id). Two requests
committing in the opposite order of their arrival can still swap places by milliseconds;
nothing stronger is possible without serialising every webhook on one lock.
"""

from __future__ import annotations

from datetime import datetime, timedelta
from typing import Any

from sqlalchemy import and_, exists, func, or_, select, update
from sqlalchemy.orm import Session, aliased

from tradeloop.db import utcnow
from tradeloop.signals.models import Signal, SignalStatus


def _group_heads() -> Any:
    """Queued signals that are the oldest of their (user, symbol) and whose group is idle."""
    earlier, busy = aliased(Signal), aliased(Signal)
    older_queued = exists().where(
        earlier.user_id == Signal.user_id, earlier.symbol == Signal.symbol,
        earlier.status == SignalStatus.QUEUED.value,
        or_(earlier.received_at < Signal.received_at,
            and_(earlier.received_at == Signal.received_at, earlier.id < Signal.id)))
    in_progress = exists().where(
        busy.user_id == Signal.user_id, busy.symbol == Signal.symbol,
        busy.status == SignalStatus.PROCESSING.value)
    return (select(Signal).where(Signal.status == SignalStatus.QUEUED.value,
                                 ~older_queued, ~in_progress)
            .order_by(Signal.received_at, Signal.id))


def next_queued(*, session: Session, limit: int = 100) -> list[Signal]:
    """The signals a processor may take now, oldest first, without claiming them."""
    return list(session.scalars(_group_heads().limit(limit)))


def claim_signals(*, session: Session, limit: int = 100,
                  now: datetime | None = None) -> list[Signal]:
    """Mark up to `limit` signals `processing` and return them, oldest first.

    At most one per (user, symbol), and none from a group that is still processing, so each
    symbol's signals are handled one at a time in arrival order. On PostgreSQL, SKIP LOCKED
    lets several workers claim at once without taking the same row.
    """
    rows = list(session.scalars(_group_heads().limit(limit)
                                .with_for_update(skip_locked=True, of=Signal)))
    claimed_at = now or utcnow()
    for signal in rows:
        signal.status, signal.claimed_at = SignalStatus.PROCESSING.value, claimed_at
    session.flush()
    return rows


def finish_signal(*, session: Session, signal: Signal,
                  status: SignalStatus = SignalStatus.PROCESSED,
                  now: datetime | None = None) -> Signal:
    """End a claimed signal's processing (processed, rejected or failed)."""
    signal.status, signal.processed_at = status.value, now or utcnow()
    session.flush()
    return signal


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
