"""Market context on the DBAPI connection (tradeloop.driver): what processing asks for every
signal (the latest GEX snapshot's id) and writes (the context snapshot of its decision)."""

from __future__ import annotations

import uuid
from datetime import datetime
from typing import Any

from sqlalchemy import Table, bindparam, insert, select

from tradeloop.db import utcnow
from tradeloop.driver import DriverRepository, Statement
from tradeloop.market_context.models import ContextSnapshot, GexSignal

_GEX: Table = GexSignal.__table__
_LATEST_GEX = Statement(select(_GEX.c.id, _GEX.c.as_of)
                        .where(_GEX.c.user_id == bindparam("owner_id"),
                               _GEX.c.symbol == bindparam("symbol"))
                        .order_by(_GEX.c.as_of.desc()).limit(1))
_INSERT_SNAPSHOT = Statement(insert(ContextSnapshot.__table__))


class ContextStore(DriverRepository):
    """GEX heads and context snapshots, on one driver connection."""

    def latest_gex(self, owner_id: uuid.UUID,
                   symbol: str) -> tuple[uuid.UUID | None, datetime | None]:
        """The id and time of the owner's latest GEX snapshot of `symbol` (None, None: none)."""
        rows = self._connection.rows(_LATEST_GEX, {"owner_id": owner_id, "symbol": symbol})
        return (rows[0].id, rows[0].as_of) if rows else (None, None)

    def store_snapshot(self, row: dict[str, Any]) -> None:
        """Keep the context one decision used (a context_snapshots row)."""
        self._connection.execute(_INSERT_SNAPSHOT, {"id": uuid.uuid4(), "created_at": utcnow(),
                                                    **row})
