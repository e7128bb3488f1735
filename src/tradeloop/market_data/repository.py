"""Market data's statements on the DBAPI connection (tradeloop.driver), for hot paths that
ask on every signal: the version of a symbol's series."""

from __future__ import annotations

from typing import Any

from sqlalchemy import bindparam, select

from tradeloop.driver import DriverRepository, Statement
from tradeloop.market_data.models import BarSeries

_SERIES = BarSeries.__table__.c
_VERSIONS = Statement(
    select(_SERIES.timeframe, _SERIES.fingerprint, _SERIES.last_ts, _SERIES.synthetic)
    .where(_SERIES.symbol == bindparam("symbol"),
           _SERIES.timeframe.in_(bindparam("timeframes", expanding=True))))


class SeriesStore(DriverRepository):
    """Bar series rows, read on one driver connection."""

    def versions(self, symbol: str, timeframes: list[str]) -> list[Any]:
        """(timeframe, fingerprint, last_ts, synthetic) of the symbol's stored series."""
        return self._connection.rows(_VERSIONS, {"symbol": symbol, "timeframes": timeframes})
