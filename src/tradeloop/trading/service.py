"""Paper positions and decisions through the ORM: closing by hand, the book's lock, reads
and totals (processing's reads and writes are trading.repository.PositionBook).

Services flush but never commit; the flow and the API own the units of work.
"""

from __future__ import annotations

import uuid
from dataclasses import dataclass
from datetime import datetime
from decimal import Decimal

from sqlalchemy import select
from sqlalchemy.orm import Session

from tradeloop.accounts import service as accounts
from tradeloop.db import utcnow
from tradeloop.errors import ConflictError, FieldValidationError
from tradeloop.market_context.service import build_context
from tradeloop.ownership import OwnedRepository
from tradeloop.signals.models import PRICE_LIMIT, Signal
from tradeloop.trading.models import Decision, Position, PositionStatus
from tradeloop.trading.repository import closing_values, outcome_values
from tradeloop.trading.rules import (
    MONEY,
    Lot,
    pnl,
)


class PositionRepository(OwnedRepository[Position]):
    model = Position
    label = "Position"


class DecisionRepository(OwnedRepository[Decision]):
    model = Decision
    label = "Decision"


def lock_book(session: Session, owner_id: uuid.UUID) -> None:
    """Serialise changes to one user's book until commit: gates such as max_exposure read
    every open position, so two workers deciding on two symbols at once could each pass a
    limit they pass together."""
    accounts.lock_user(session, owner_id)


def lot_of(position: Position) -> Lot:
    return Lot(position.symbol, position.side, position.quantity, position.entry_price)


def open_positions(session: Session, owner_id: uuid.UUID) -> dict[str, Position]:
    """The owner's open positions by symbol (processing keeps at most one per symbol)."""
    rows = PositionRepository(session, owner_id).list(
        Position.status == PositionStatus.OPEN.value, order_by=[Position.opened_at])
    return {row.symbol: row for row in rows}


def close_row(session: Session, row: Position, price: Decimal, at: datetime, *,
              closing_signal_id: uuid.UUID | None = None) -> Position:
    """Close one loaded position and write the outcome back on the signal that opened it."""
    price = price.quantize(MONEY)
    lot = lot_of(row)
    for name, value in closing_values(lot, price, at, closing_signal_id).items():
        setattr(row, name, value)
    opening = session.get(Signal, row.signal_id) if row.signal_id else None
    if opening is not None:
        for name, value in outcome_values(lot, price, at, opening.stop_loss).items():
            setattr(opening, name, value)
    session.flush()
    return row


def close_position(*, session: Session, owner_id: uuid.UUID, position_id: uuid.UUID,
                   price: Decimal | None = None, now: datetime | None = None) -> Position:
    """Close by hand at `price`, else at the latest stored close of the symbol."""
    row = PositionRepository(session, owner_id).get(position_id)
    lock_book(session, owner_id)
    session.refresh(row)  # a signal may have closed it while we waited for the lock
    if row.status != PositionStatus.OPEN.value:
        raise ConflictError("Position is already closed", details={"id": str(row.id)})
    now = now or utcnow()
    if price is None:
        opening = session.get(Signal, row.signal_id) if row.signal_id else None
        context = build_context(session=session, symbol=row.symbol,
                                timeframe=opening.timeframe if opening else "1d", at=now)
        price = context.latest_close
    if price is None or price <= 0:
        raise FieldValidationError(
            [{"field": "price", "type": "missing",
              "message": f"required: no stored bars for {row.symbol}"}],
            f"No stored bars for {row.symbol}: give the closing price")
    _check_storable_pnl(lot_of(row), price)
    return close_row(session, row, price, now)


def _check_storable_pnl(lot: Lot, price: Decimal) -> None:
    """422 on `price` when the P&L of closing `lot` there would not fit its Numeric(20, 8)
    column (PostgreSQL refuses it with a 500; SQLite would store it inexactly)."""
    if abs(pnl(lot, price.quantize(MONEY))) >= PRICE_LIMIT:
        raise FieldValidationError(
            [{"field": "price", "type": "out_of_range",
              "message": f"closing {lot.quantity} {lot.side} at {price} gives a P&L beyond "
                         f"±{PRICE_LIMIT:,} that cannot be stored"}],
            "The closing price gives a P&L too large to store")


def list_decisions(*, session: Session, owner_id: uuid.UUID, signal_id: uuid.UUID | None = None,
                   action: str | None = None, limit: int = 50,
                   offset: int = 0) -> tuple[list[Decision], int]:
    """The owner's decisions, newest first."""
    return DecisionRepository(session, owner_id).page(
        {Decision.signal_id: signal_id, Decision.action: action},
        order_by=[Decision.created_at.desc(), Decision.id.desc()], limit=limit, offset=offset)


def list_positions(*, session: Session, owner_id: uuid.UUID, status: str | None = None,
                   symbol: str | None = None, limit: int = 50,
                   offset: int = 0) -> tuple[list[Position], int]:
    """The owner's positions, newest first."""
    return PositionRepository(session, owner_id).page(
        {Position.status: status, Position.symbol: symbol.strip().upper() if symbol else None},
        order_by=[Position.opened_at.desc(), Position.id.desc()], limit=limit, offset=offset)


def get_position(*, session: Session, owner_id: uuid.UUID, position_id: uuid.UUID) -> Position:
    return PositionRepository(session, owner_id).get(position_id)


@dataclass(frozen=True)
class PositionTotals:
    """Totals of the owner's positions (one symbol, or all), summed exactly in Decimal."""

    open_positions: int
    exposure: Decimal  # open quantity x entry price
    unrealized_pnl: Decimal  # at the latest marks
    realized_pnl: Decimal  # over closed positions
    last_marked_at: datetime | None


def position_totals(*, session: Session, owner_id: uuid.UUID,
                    symbol: str | None = None) -> PositionTotals:
    """Exposure, unrealised and realised P&L of the owner's positions."""
    query = select(Position.status, Position.quantity, Position.entry_price,
                   Position.unrealized_pnl, Position.realized_pnl, Position.marked_at
                   ).where(Position.user_id == owner_id)
    if symbol:
        query = query.where(Position.symbol == symbol.strip().upper())
    # Summed here rather than by SUM(): SQLite adds NUMERIC columns as binary floats.
    opened, closed = [], []
    for row in session.execute(query):
        (opened if row.status == PositionStatus.OPEN.value else closed).append(row)
    marks = [row.marked_at for row in opened if row.marked_at is not None]
    return PositionTotals(
        open_positions=len(opened),
        exposure=sum((row.quantity * row.entry_price for row in opened), Decimal(0))
        .quantize(MONEY),
        unrealized_pnl=sum((row.unrealized_pnl or Decimal(0) for row in opened), Decimal(0)),
        realized_pnl=sum((row.realized_pnl or Decimal(0) for row in closed), Decimal(0)),
        last_marked_at=max(marks, default=None))
