"""Paper positions and decisions in the database: the book a decision reads, what it writes.

Services flush but never commit; the flow and the API own the units of work.
"""

from __future__ import annotations

import uuid
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from decimal import Decimal

from sqlalchemy import func, select
from sqlalchemy.orm import Session

from tradeloop.accounts.models import User
from tradeloop.db import utcnow
from tradeloop.errors import ConflictError, FieldValidationError
from tradeloop.ownership import OwnedRepository
from tradeloop.signals.context import build_context
from tradeloop.signals.models import Decision, Position, PositionStatus, Signal
from tradeloop.signals.trading import (
    MONEY,
    Book,
    Closed,
    Lot,
    Order,
    Plan,
    outcome_of,
    pnl,
    r_multiple,
)


class PositionRepository(OwnedRepository[Position]):
    model = Position
    label = "Position"


class DecisionRepository(OwnedRepository[Decision]):
    model = Decision
    label = "Decision"


def lock_book(session: Session, owner_id: uuid.UUID) -> None:
    """Serialise changes to one user's book until commit (PostgreSQL; SQLite units of work
    are serial already): gates such as max_exposure read every open position, so two workers
    deciding on two symbols at once could each pass a limit they pass together."""
    session.execute(select(User.id).where(User.id == owner_id).with_for_update())


def lot_of(position: Position) -> Lot:
    return Lot(position.symbol, position.side, position.quantity, position.entry_price)


def open_positions(session: Session, owner_id: uuid.UUID) -> dict[str, Position]:
    """The owner's open positions by symbol (processing keeps at most one per symbol)."""
    rows = PositionRepository(session, owner_id).list(
        Position.status == PositionStatus.OPEN.value, order_by=[Position.opened_at])
    return {row.symbol: row for row in rows}


def load_book(session: Session, owner_id: uuid.UUID, at: datetime) -> Book:
    """The owner's book as the decision at `at` sees it."""
    opened = open_positions(session, owner_id)
    last_entry = {symbol: ts for symbol, ts in session.execute(
        select(Position.symbol, func.max(Position.opened_at))
        .where(Position.user_id == owner_id).group_by(Position.symbol))}
    day_start = datetime(at.year, at.month, at.day, tzinfo=at.tzinfo)
    realized = session.scalar(select(func.sum(Position.realized_pnl)).where(
        Position.user_id == owner_id, Position.closed_at >= day_start,
        Position.closed_at < day_start + timedelta(days=1)))
    return Book(open={symbol: lot_of(row) for symbol, row in opened.items()},
                last_entry={symbol: _aware(ts) for symbol, ts in last_entry.items()},
                realized_by_day={at.date(): Decimal(realized or 0)})


def _aware(ts: datetime | str) -> datetime:
    # func.max bypasses the column type on SQLite, which then hands back naive UTC text.
    value = datetime.fromisoformat(ts) if isinstance(ts, str) else ts
    return value if value.tzinfo else value.replace(tzinfo=UTC)


def execute_plan(session: Session, signal: Signal, plan: Plan, order: Order,
                 closed: Closed | None) -> Position | None:
    """Write what the plan did: close the open row, open the new one; returns the new one."""
    if closed is not None:
        row = open_positions(session, signal.user_id)[order.symbol]
        close_row(session, row, closed.exit_price, order.at, closing_signal_id=signal.id)
    if plan.open is None:
        return None
    signal.execution_price, signal.outcome = order.price, "open"
    return PositionRepository(session, signal.user_id).add(Position(
        symbol=order.symbol, side=plan.open.side, quantity=plan.open.quantity,
        entry_price=plan.open.entry_price, opened_at=order.at,
        status=PositionStatus.OPEN.value, mark_price=order.price, marked_at=order.at,
        unrealized_pnl=Decimal(0), signal_id=signal.id))


def close_row(session: Session, row: Position, price: Decimal, at: datetime, *,
              closing_signal_id: uuid.UUID | None = None) -> Position:
    """Close one position and write the outcome back on the signal that opened it."""
    price = price.quantize(MONEY)
    lot = lot_of(row)
    row.status, row.exit_price, row.closed_at = PositionStatus.CLOSED.value, price, at
    row.realized_pnl, row.unrealized_pnl = pnl(lot, price), None
    row.mark_price, row.marked_at, row.closing_signal_id = price, at, closing_signal_id
    opening = session.get(Signal, row.signal_id) if row.signal_id else None
    if opening is not None:
        opening.outcome, opening.profit_loss = outcome_of(row.realized_pnl), row.realized_pnl
        opening.exit_price, opening.exit_time = price, at
        opening.actual_r_multiple = r_multiple(lot, price, opening.stop_loss)
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
    return close_row(session, row, price, now)


def record_decision(session: Session, signal: Signal, plan: Plan, *, inputs: dict,
                    degraded: bool, latency_ms: float) -> Decision:
    """Store the decision with every input it used."""
    return DecisionRepository(session, signal.user_id).add(Decision(
        signal_id=signal.id, action=plan.action.value, reasons=plan.reasons,
        inputs={**inputs, "gates": plan.gates}, degraded=degraded,
        latency_ms=round(latency_ms, 3)))


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
