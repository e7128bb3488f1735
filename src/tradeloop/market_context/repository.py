"""Market context on the DBAPI connection (tradeloop.driver): what processing asks for every
signal (the latest GEX snapshot, the series versions) and writes (its decision's context)."""

from __future__ import annotations

import uuid
from datetime import datetime
from typing import Any

from sqlalchemy import Table, bindparam, insert, select, true

from tradeloop.db import utcnow
from tradeloop.driver import DriverRepository, Statement
from tradeloop.market_context.models import ContextSnapshot, GexSignal
from tradeloop.market_data.repository import SERIES_VERSIONS

_GEX: Table = GexSignal.__table__
_LATEST_GEX = (select(_GEX.c.id, _GEX.c.as_of)
               .where(_GEX.c.user_id == bindparam("owner_id"),
                      _GEX.c.symbol == bindparam("symbol"))
               .order_by(_GEX.c.as_of.desc()).limit(1))
_GEX_HEAD = select(
    _LATEST_GEX.with_only_columns(_GEX.c.id).scalar_subquery().label("gex_id"),
    _LATEST_GEX.with_only_columns(_GEX.c.as_of).scalar_subquery().label("gex_as_of"),
).subquery("latest_gex")
# A one-row head (the GEX snapshot's id and time, null when none) left-joined to the series
# versions: one round trip whether either exists or not.
_STAMP = Statement(
    select(_GEX_HEAD.c.gex_id, _GEX_HEAD.c.gex_as_of, SERIES_VERSIONS.c.timeframe,
           SERIES_VERSIONS.c.fingerprint, SERIES_VERSIONS.c.last_ts, SERIES_VERSIONS.c.synthetic)
    .select_from(_GEX_HEAD.outerjoin(SERIES_VERSIONS, true())))
_INSERT_SNAPSHOT = Statement(insert(ContextSnapshot.__table__))


class ContextStore(DriverRepository):
    """GEX heads and context snapshots, on one driver connection."""

    def stamp(self, owner_id: uuid.UUID, symbol: str, series_symbol: str,
              timeframes: list[str]) -> tuple[list[Any], uuid.UUID | None, datetime | None]:
        """What a cached context was built from: the versions of `series_symbol`'s series in
        `timeframes` (timeframe, fingerprint, last_ts, synthetic; those that exist), and the
        id and time of the owner's latest GEX snapshot of `symbol` (None, None: none)."""
        rows = self._connection.rows(_STAMP, {
            "owner_id": owner_id, "symbol": symbol, "series_symbol": series_symbol,
            "timeframes": timeframes})
        versions = [row for row in rows if row.timeframe is not None]
        return versions, rows[0].gex_id, rows[0].gex_as_of

    def store_snapshot(self, row: dict[str, Any]) -> None:
        """Keep the context one decision used (a context_snapshots row)."""
        self._connection.execute(_INSERT_SNAPSHOT, {"id": uuid.uuid4(), "created_at": utcnow(),
                                                    **row})
