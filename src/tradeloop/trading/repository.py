"""The paper book on the DBAPI connection (tradeloop.driver): what a decision reads and writes.

Processing's reads and writes are Core statements built once, with bound parameters: the
ORM's per-object bookkeeping (identity map, flushes, change tracking) and SQLAlchemy's
execution layer cost more CPU than the statements themselves, and processing must keep up
with 100 signals/s.
"""

from __future__ import annotations

import uuid
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from typing import Any

from sqlalchemy import Table, bindparam, func, insert, select, update

from tradeloop.db import utcnow
from tradeloop.driver import DriverRepository, Statement
from tradeloop.signals.models import Signal
from tradeloop.signals.repository import ClaimedSignal
from tradeloop.trading.models import Decision, Position, PositionStatus
from tradeloop.trading.rules import (
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

_POSITIONS: Table = Position.__table__
_SIGNALS: Table = Signal.__table__
_DECISIONS: Table = Decision.__table__

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
_OPEN_ROWS = Statement(
    select(_POSITIONS.c.id, _POSITIONS.c.symbol, _POSITIONS.c.side, _POSITIONS.c.quantity,
           _POSITIONS.c.entry_price, _POSITIONS.c.signal_id, _SIGNALS.c.stop_loss,
           _LAST_ENTRY.label("last_entry"), _REALIZED_TODAY.label("realized"))
    .select_from(_POSITIONS.outerjoin(_SIGNALS, _SIGNALS.c.id == _POSITIONS.c.signal_id))
    .where(_POSITIONS.c.user_id == bindparam("owner_id"),
           _POSITIONS.c.status == PositionStatus.OPEN.value)
    .order_by(_POSITIONS.c.opened_at))
_BOOK_FIGURES = Statement(
    select(_LAST_ENTRY.label("last_entry"), _REALIZED_TODAY.label("realized")))
_INSERT_POSITION = Statement(insert(_POSITIONS))
_INSERT_DECISION = Statement(insert(_DECISIONS))
# SET columns come from the parameters passed with the statement.
_UPDATE_POSITION = Statement(update(_POSITIONS).where(_POSITIONS.c.id == bindparam("row_id")))
_UPDATE_SIGNAL = Statement(update(_SIGNALS).where(_SIGNALS.c.id == bindparam("row_id")))


@dataclass(frozen=True)
class OpenRow:
    """An open position as processing reads it: its lot, and the signal that opened it (whose
    outcome closing it writes, with that signal's stop for the R multiple)."""

    id: uuid.UUID
    lot: Lot
    signal_id: uuid.UUID | None
    stop_loss: Decimal | None


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


class PositionBook(DriverRepository):
    """One user's paper book as processing reads and writes it, on one driver connection."""

    def load(self, owner_id: uuid.UUID, symbol: str,
             at: datetime) -> tuple[Book, dict[str, OpenRow]]:
        """The owner's book as a decision on `symbol` at `at` sees it, and its open rows.

        `last_entry` holds `symbol`'s only: the cooldown gate reads no other, and the latest
        entry of every symbol would be a query over the owner's whole position history.
        """
        day_start = datetime(at.year, at.month, at.day, tzinfo=at.tzinfo)
        params = {"owner_id": owner_id, "symbol": symbol, "day_start": day_start,
                  "day_end": day_start + timedelta(days=1)}
        rows = self._connection.rows(_OPEN_ROWS, params)
        figures = rows[0] if rows else self._connection.rows(_BOOK_FIGURES, params)[0]
        open_rows = {row.symbol: OpenRow(row.id, Lot(row.symbol, row.side, row.quantity,
                                                     row.entry_price),
                                         row.signal_id, row.stop_loss) for row in rows}
        book = Book(open={name: row.lot for name, row in open_rows.items()},
                    last_entry={symbol: _aware(figures.last_entry)}
                    if figures.last_entry is not None else {},
                    realized_by_day={at.date(): Decimal(figures.realized or 0)})
        return book, open_rows


    def execute_plan(self, signal: ClaimedSignal, plan: Plan, order: Order,
                     closed: Closed | None, open_rows: dict[str, OpenRow]) -> dict[str, Any]:
        """Write what the plan did: close the open row, insert the new one. Returns what the
        processed signal itself gets (execution price and outcome when it opened one)."""
        if closed is not None:
            self.close_open_row(open_rows[order.symbol], closed.exit_price, order.at,
                                closing_signal_id=signal.id)
        if plan.open is None:
            return {}
        self._connection.execute(_INSERT_POSITION, {
            "id": uuid.uuid4(), "user_id": signal.user_id, "symbol": order.symbol,
            "side": plan.open.side, "quantity": plan.open.quantity,
            "entry_price": plan.open.entry_price, "opened_at": order.at,
            "status": PositionStatus.OPEN.value, "mark_price": order.price,
            "marked_at": order.at, "unrealized_pnl": Decimal(0), "signal_id": signal.id})
        return {"execution_price": order.price, "outcome": "open"}

    def close_open_row(self, row: OpenRow, price: Decimal, at: datetime, *,
                       closing_signal_id: uuid.UUID | None) -> None:
        """Close one position read by `load`, and write the outcome on its opening signal."""
        price = price.quantize(MONEY)
        self._connection.execute(_UPDATE_POSITION, {
            "row_id": row.id, **closing_values(row.lot, price, at, closing_signal_id)})
        if row.signal_id is not None:
            self._connection.execute(_UPDATE_SIGNAL, {
                "row_id": row.signal_id, **outcome_values(row.lot, price, at, row.stop_loss)})

    def record_decision(self, signal: ClaimedSignal, plan: Plan, *, inputs: dict,
                        degraded: bool, latency_ms: float) -> uuid.UUID:
        """Store the decision with every input it used; returns its id."""
        decision_id = uuid.uuid4()
        self._connection.execute(_INSERT_DECISION, {
            "id": decision_id, "user_id": signal.user_id, "signal_id": signal.id,
            "action": plan.action.value, "reasons": plan.reasons,
            "inputs": {**inputs, "gates": plan.gates}, "degraded": degraded,
            "latency_ms": round(latency_ms, 3), "created_at": utcnow()})
        return decision_id


def _aware(ts: datetime | str) -> datetime:
    # func.max bypasses the column type on SQLite, which then hands back naive UTC text.
    value = datetime.fromisoformat(ts) if isinstance(ts, str) else ts
    return value if value.tzinfo else value.replace(tzinfo=UTC)
