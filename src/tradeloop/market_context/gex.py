"""GEX snapshots (SPEC §6): record them per user, list them, find the one a decision uses.

A snapshot is keyed by (user, symbol, as_of): a source re-sending the same snapshot gets the
stored row back, the same key with other values is a conflict. Services flush, never commit.
"""

from __future__ import annotations

import uuid
from dataclasses import dataclass
from datetime import datetime, timedelta
from decimal import Decimal
from typing import Any

import structlog
from sqlalchemy import func, select
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session

from tradeloop.db import utcnow
from tradeloop.errors import ConflictError, FieldValidationError
from tradeloop.market_context.models import GexSignal
from tradeloop.market_context.schemas import GexIn
from tradeloop.ownership import OwnedRepository
from tradeloop.schema_types import plain_decimal

log = structlog.get_logger(__name__)

MAX_CLOCK_SKEW = timedelta(minutes=5)
VALUE_FIELDS = ("net_gex", "gamma_flip", "call_wall", "put_wall", "spot_price", "source")


@dataclass(frozen=True)
class GexLevels:
    """One GEX snapshot as the decision sees it."""

    net_gex: Decimal
    gamma_flip: Decimal
    call_wall: Decimal
    put_wall: Decimal
    as_of: datetime
    stale: bool = False
    id: uuid.UUID | None = None  # the gex_signals row

    def as_json(self) -> dict[str, Any]:
        return {"id": str(self.id) if self.id else None, "net_gex": plain_decimal(self.net_gex),
                "gamma_flip": plain_decimal(self.gamma_flip),
                "call_wall": plain_decimal(self.call_wall),
                "put_wall": plain_decimal(self.put_wall), "as_of": self.as_of.isoformat(),
                "stale": self.stale}


class GexRepository(OwnedRepository[GexSignal]):
    model = GexSignal
    label = "GEX snapshot"


@dataclass(frozen=True)
class Recorded:
    row: GexSignal
    created: bool  # False: the same snapshot was already stored


def record_gex(*, session: Session, owner_id: uuid.UUID, data: GexIn,
               now: datetime | None = None) -> Recorded:
    """Store a snapshot; an identical repeat returns the stored row, a different one is 409."""
    now = now or utcnow()
    if data.as_of > now + MAX_CLOCK_SKEW:
        raise FieldValidationError(
            [{"field": "as_of", "type": "future_timestamp",
              "message": "More than 5 minutes in the future; check the source's clock"}],
            "Invalid GEX snapshot")
    existing = _find(session, owner_id, data.symbol, data.as_of)
    if existing is not None:
        return _repeat(existing, data)
    row = GexSignal(id=uuid.uuid4(), user_id=owner_id, symbol=data.symbol, as_of=data.as_of,
                    net_gex=data.net_gex, gamma_flip=data.gamma_flip, call_wall=data.call_wall,
                    put_wall=data.put_wall, spot_price=data.spot_price, source=data.source,
                    received_at=now)
    try:
        with session.begin_nested():
            session.add(row)
    except IntegrityError:
        # A concurrent request stored the same key first: judge against what it stored.
        existing = _find(session, owner_id, data.symbol, data.as_of)
        if existing is None:
            raise
        return _repeat(existing, data)
    log.info("gex_recorded", gex_id=str(row.id), symbol=row.symbol)
    return Recorded(row, created=True)


def _find(session: Session, owner_id: uuid.UUID, symbol: str, as_of: datetime) -> GexSignal | None:
    query = GexRepository(session, owner_id).select().where(
        GexSignal.symbol == symbol, GexSignal.as_of == as_of)
    return session.scalars(query).first()


def _repeat(existing: GexSignal, data: GexIn) -> Recorded:
    differing = [name for name in VALUE_FIELDS if getattr(existing, name) != getattr(data, name)]
    if differing:
        raise ConflictError(
            f"A GEX snapshot of {data.symbol} as of {data.as_of.isoformat()} is already stored "
            "with other values", details={"id": str(existing.id), "differing": differing})
    return Recorded(existing, created=False)


def list_gex(*, session: Session, owner_id: uuid.UUID, symbol: str | None = None,
             limit: int = 50, offset: int = 0) -> tuple[list[GexSignal], int]:
    """The owner's snapshots, newest `as_of` first."""
    return GexRepository(session, owner_id).page(
        {GexSignal.symbol: symbol.strip().upper() if symbol else None},
        order_by=[GexSignal.as_of.desc(), GexSignal.id.desc()], limit=limit, offset=offset)


def get_gex(*, session: Session, owner_id: uuid.UUID, gex_id: uuid.UUID) -> GexSignal:
    return GexRepository(session, owner_id).get(gex_id)


def latest_gex(*, session: Session, owner_id: uuid.UUID, symbol: str,
               at: datetime | None = None) -> GexSignal | None:
    """The owner's newest snapshot of `symbol` (as of `at` or earlier, when given)."""
    query = GexRepository(session, owner_id).select().where(GexSignal.symbol == symbol)
    if at is not None:
        query = query.where(GexSignal.as_of <= at)
    return session.scalars(query.order_by(GexSignal.as_of.desc()).limit(1)).first()


def levels_of(row: GexSignal) -> GexLevels:
    """The snapshot as the decision sees it (a plain value, safe to cache across sessions)."""
    return GexLevels(row.net_gex, row.gamma_flip, row.call_wall, row.put_wall, row.as_of,
                     id=row.id)


@dataclass(frozen=True)
class GexFreshness:
    """System-wide state of the GEX feed, for /health/gex (no user data)."""

    snapshots: int
    symbols: int
    newest_as_of: datetime | None
    newest_received_at: datetime | None


def feed_freshness(session: Session) -> GexFreshness:
    """Counts and newest timestamps over every user's snapshots."""
    snapshots, symbols, newest_as_of, newest_received = session.execute(
        select(func.count(), func.count(func.distinct(GexSignal.symbol)),
               func.max(GexSignal.as_of), func.max(GexSignal.received_at))).one()
    return GexFreshness(int(snapshots or 0), int(symbols or 0), newest_as_of, newest_received)
