"""Paper positions and decisions in the database: the book a decision reads, what it writes.

Services flush but never commit; the flow and the API own the units of work.
"""

from __future__ import annotations

import uuid
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from typing import Any

from sqlalchemy import Table, bindparam, func, insert, select, update
from sqlalchemy.orm import Session

from tradeloop.accounts.models import User
from tradeloop.db import utcnow
from tradeloop.driver import DriverConnection
from tradeloop.errors import ConflictError, FieldValidationError
from tradeloop.ownership import OwnedRepository
from tradeloop.signals.context import build_context
from tradeloop.signals.models import (
    PRICE_LIMIT,
    Decision,
    Position,
    PositionStatus,
    Signal,
)
from tradeloop.signals.outbox import ClaimedSignal
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


# Processing's reads and writes are Core statements built once, with bound parameters, run
# on the DBAPI connection (tradeloop.driver): the ORM's per-object bookkeeping (identity map,
# flushes, change tracking) and SQLAlchemy's execution layer cost more CPU than the
# statements themselves, and processing must keep up with 100 signals/s.
_USERS: Table = User.__table__
_POSITIONS: Table = Position.__table__
_SIGNALS: Table = Signal.__table__
_DECISIONS: Table = Decision.__table__

# FOR NO KEY UPDATE, not FOR UPDATE: it serialises processors of one user just as well, but
# FOR UPDATE also blocks the FOR KEY SHARE lock that every INSERT referencing the user takes
# for its foreign key check, so each accepted webhook waited for the processing in flight.
_LOCK_USER = (select(_USERS.c.id).where(_USERS.c.id == bindparam("owner_id"))
              .with_for_update(key_share=True))
# The book's two figures besides the open rows: the last entry on the order's symbol (the
# cooldown gate) and the day's realised P&L (the daily loss gate).
_LAST_ENTRY = (select(func.max(_POSITIONS.c.opened_at))
               .where(_POSITIONS.c.user_id == bindparam("owner_id"),
                      _POSITIONS.c.symbol == bindparam("symbol")).scalar_subquery())
_REALIZED_TODAY = (select(func.sum(_POSITIONS.c.realized_pnl))
                   .where(_POSITIONS.c.user_id == bindparam("owner_id"),
                          _POSITIONS.c.closed_at >= bindparam("day_start"),
                          _POSITIONS.c.closed_at < bindparam("day_end")).scalar_subquery())
# The open rows carry both figures (uncorrelated subqueries, computed once), so the whole
# book is one round trip; only a book without open positions asks for the figures alone.
_OPEN_ROWS = (
    select(_POSITIONS.c.id, _POSITIONS.c.symbol, _POSITIONS.c.side, _POSITIONS.c.quantity,
           _POSITIONS.c.entry_price, _POSITIONS.c.signal_id, _SIGNALS.c.stop_loss,
           _LAST_ENTRY.label("last_entry"), _REALIZED_TODAY.label("realized"))
    .select_from(_POSITIONS.outerjoin(_SIGNALS, _SIGNALS.c.id == _POSITIONS.c.signal_id))
    .where(_POSITIONS.c.user_id == bindparam("owner_id"),
           _POSITIONS.c.status == PositionStatus.OPEN.value)
    .order_by(_POSITIONS.c.opened_at))
_BOOK_FIGURES = select(_LAST_ENTRY.label("last_entry"), _REALIZED_TODAY.label("realized"))
_INSERT_POSITION = insert(_POSITIONS)
_INSERT_DECISION = insert(_DECISIONS)
# SET columns come from the parameters passed with the statement.
_UPDATE_POSITION = update(_POSITIONS).where(_POSITIONS.c.id == bindparam("row_id"))
_UPDATE_SIGNAL = update(_SIGNALS).where(_SIGNALS.c.id == bindparam("row_id"))


def lock_book(connection: DriverConnection, owner_id: uuid.UUID) -> None:
    """Serialise changes to one user's book until commit: gates such as max_exposure read
    every open position, so two workers deciding on two symbols at once could each pass a
    limit they pass together. PostgreSQL only: a SQLite unit of work holds the database's
    write lock from its first statement (BEGIN IMMEDIATE), so it is serial already."""
    if connection.dialect.name != "sqlite":
        connection.rows(_LOCK_USER, {"owner_id": owner_id})


def lot_of(position: Position) -> Lot:
    return Lot(position.symbol, position.side, position.quantity, position.entry_price)


@dataclass(frozen=True)
class OpenRow:
    """An open position as processing reads it: its lot, and the signal that opened it (whose
    outcome closing it writes, with that signal's stop for the R multiple)."""

    id: uuid.UUID
    lot: Lot
    signal_id: uuid.UUID | None
    stop_loss: Decimal | None


def open_positions(session: Session, owner_id: uuid.UUID) -> dict[str, Position]:
    """The owner's open positions by symbol (processing keeps at most one per symbol)."""
    rows = PositionRepository(session, owner_id).list(
        Position.status == PositionStatus.OPEN.value, order_by=[Position.opened_at])
    return {row.symbol: row for row in rows}


def load_book(connection: DriverConnection, owner_id: uuid.UUID, symbol: str,
              at: datetime) -> tuple[Book, dict[str, OpenRow]]:
    """The owner's book as a decision on `symbol` at `at` sees it, and its open rows.

    `last_entry` holds `symbol`'s only: the cooldown gate reads no other, and the latest
    entry of every symbol would be a query over the owner's whole position history.
    """
    day_start = datetime(at.year, at.month, at.day, tzinfo=at.tzinfo)
    params = {"owner_id": owner_id, "symbol": symbol, "day_start": day_start,
              "day_end": day_start + timedelta(days=1)}
    rows = connection.rows(_OPEN_ROWS, params)
    figures = rows[0] if rows else connection.rows(_BOOK_FIGURES, params)[0]
    open_rows = {row.symbol: OpenRow(row.id, Lot(row.symbol, row.side, row.quantity,
                                                 row.entry_price), row.signal_id, row.stop_loss)
                 for row in rows}
    book = Book(open={name: row.lot for name, row in open_rows.items()},
                last_entry={symbol: _aware(figures.last_entry)}
                if figures.last_entry is not None else {},
                realized_by_day={at.date(): Decimal(figures.realized or 0)})
    return book, open_rows


def _aware(ts: datetime | str) -> datetime:
    # func.max bypasses the column type on SQLite, which then hands back naive UTC text.
    value = datetime.fromisoformat(ts) if isinstance(ts, str) else ts
    return value if value.tzinfo else value.replace(tzinfo=UTC)


def execute_plan(connection: DriverConnection, signal: ClaimedSignal, plan: Plan, order: Order,
                 closed: Closed | None, open_rows: dict[str, OpenRow]) -> dict[str, Any]:
    """Write what the plan did: close the open row, insert the new one. Returns what the
    processed signal itself gets (execution price and outcome when it opened a position)."""
    if closed is not None:
        close_open_row(connection, open_rows[order.symbol], closed.exit_price, order.at,
                       closing_signal_id=signal.id)
    if plan.open is None:
        return {}
    connection.execute(_INSERT_POSITION, {
        "id": uuid.uuid4(), "user_id": signal.user_id, "symbol": order.symbol,
        "side": plan.open.side, "quantity": plan.open.quantity,
        "entry_price": plan.open.entry_price, "opened_at": order.at,
        "status": PositionStatus.OPEN.value, "mark_price": order.price, "marked_at": order.at,
        "unrealized_pnl": Decimal(0), "signal_id": signal.id})
    return {"execution_price": order.price, "outcome": "open"}


def closing_values(lot: Lot, price: Decimal, at: datetime,
                   closing_signal_id: uuid.UUID | None) -> dict[str, Any]:
    """The columns a position gets when it closes at `price` (already quantized)."""
    return {"status": PositionStatus.CLOSED.value, "exit_price": price, "closed_at": at,
            "realized_pnl": pnl(lot, price), "unrealized_pnl": None, "mark_price": price,
            "marked_at": at, "closing_signal_id": closing_signal_id}


def outcome_values(lot: Lot, price: Decimal, at: datetime,
                   stop_loss: Decimal | None) -> dict[str, Any]:
    """What the signal that opened `lot` learns when it closes at `price`."""
    profit = pnl(lot, price)
    return {"outcome": outcome_of(profit), "profit_loss": profit, "exit_price": price,
            "exit_time": at, "actual_r_multiple": r_multiple(lot, price, stop_loss)}


def close_open_row(connection: DriverConnection, row: OpenRow, price: Decimal, at: datetime, *,
                   closing_signal_id: uuid.UUID | None) -> None:
    """Close one position read by load_book, and write the outcome on its opening signal."""
    price = price.quantize(MONEY)
    connection.execute(_UPDATE_POSITION, {
        "row_id": row.id, **closing_values(row.lot, price, at, closing_signal_id)})
    if row.signal_id is not None:
        connection.execute(_UPDATE_SIGNAL, {
            "row_id": row.signal_id, **outcome_values(row.lot, price, at, row.stop_loss)})


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
    lock_book(DriverConnection.of_session(session), owner_id)
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


def record_decision(connection: DriverConnection, signal: ClaimedSignal, plan: Plan, *,
                    inputs: dict, degraded: bool, latency_ms: float) -> uuid.UUID:
    """Store the decision with every input it used; returns its id."""
    decision_id = uuid.uuid4()
    connection.execute(_INSERT_DECISION, {
        "id": decision_id, "user_id": signal.user_id, "signal_id": signal.id,
        "action": plan.action.value, "reasons": plan.reasons,
        "inputs": {**inputs, "gates": plan.gates}, "degraded": degraded,
        "latency_ms": round(latency_ms, 3), "created_at": utcnow()})
    return decision_id


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
