"""Market data's queries for hot paths that ask on every signal: the version of a symbol's
series, which market data owns and bumps whenever bars are written."""

from __future__ import annotations

from sqlalchemy import bindparam, select

from tradeloop.market_data.models import BarSeries

_SERIES = BarSeries.__table__.c
# The versions as a subquery that another domain's statement may join, for a caller asking on
# every signal for more than this (the context cache: these and the user's latest GEX in one
# round trip). Binds `series_symbol` (normalised) and `timeframes`.
SERIES_VERSIONS = (
    select(_SERIES.timeframe, _SERIES.fingerprint, _SERIES.last_ts, _SERIES.synthetic)
    .where(_SERIES.symbol == bindparam("series_symbol"),
           _SERIES.timeframe.in_(bindparam("timeframes", expanding=True)))
    .subquery("series_versions"))
