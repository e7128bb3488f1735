"""Mark-to-market of open paper positions at the latest stored close.

Runs for every user at once (a system job: after each import that wrote bars, and every
minute). Each position is updated by one conditional UPDATE — still open, and not marked at a
later instant — so a signal closing or reversing the position meanwhile always wins, and an
older bar never overwrites a fresher fill price. Flushes, never commits.
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime
from decimal import Decimal

import structlog
from sqlalchemy import or_, select, update
from sqlalchemy.orm import Session

from tradeloop.db import utcnow
from tradeloop.market_data import service as market_data
from tradeloop.trading.models import Position, PositionStatus
from tradeloop.trading.rules import MONEY, pnl
from tradeloop.trading.service import lot_of

log = structlog.get_logger(__name__)


def mark_open_positions(*, session: Session, symbols: Sequence[str] | None = None,
                        now: datetime | None = None) -> int:
    """Mark open positions (of `symbols`, default all) at their symbol's latest close:
    mark_price, unrealized_pnl (exact Decimal) and marked_at (when that bar closed, at most
    now). Returns how many positions were marked; symbols without bars are left alone."""
    now = now or utcnow()
    query = select(Position).where(Position.status == PositionStatus.OPEN.value)
    if symbols is not None:
        query = query.where(Position.symbol.in_([s.strip().upper() for s in symbols]))
    rows = list(session.scalars(query))
    if not rows:
        return 0
    closes = market_data.latest_closes(session=session, symbols=sorted({r.symbol for r in rows}))
    marked = 0
    for row in rows:
        latest = closes.get(row.symbol)
        if latest is not None:
            marked += _mark(session, row, Decimal(str(latest.close)).quantize(MONEY),
                            min(latest.bar_end, now))
    log.info("positions_marked", marked=marked, open=len(rows))
    return marked


def _mark(session: Session, row: Position, price: Decimal, at: datetime) -> int:
    result = session.execute(
        update(Position)
        .where(Position.id == row.id, Position.status == PositionStatus.OPEN.value,
               or_(Position.marked_at.is_(None), Position.marked_at <= at))
        .values(mark_price=price, unrealized_pnl=pnl(lot_of(row), price), marked_at=at)
        .execution_options(synchronize_session="fetch"))
    return int(getattr(result, "rowcount", 0) or 0)
