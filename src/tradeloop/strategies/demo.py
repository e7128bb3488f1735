"""The demo strategies loaded with the demo universe, owned by the first admin."""

from __future__ import annotations

import uuid

from sqlalchemy.orm import Session

from tradeloop.strategies import service
from tradeloop.strategies.models import Strategy

SMA_CROSS = """\
name: sma_cross
description: Long when the fast moving average crosses above the slow one; out on the cross back.
timeframe: 1d
symbols: [ACME, GLOBX, INITECH, UMBRL, BTCUSD]
params: {fast: 10, slow: 30}
indicators:
  fast_ma: sma(close, fast)
  slow_ma: sma(close, slow)
entry: {long: crossover(fast_ma, slow_ma)}
exit:  {long: crossunder(fast_ma, slow_ma)}
risk:  {stop_loss_pct: 8, take_profit_pct: 25, position_size_pct: 100}
"""

# Seed 002's strategy: a break of market structure. Highest/lowest include the current bar,
# so the prior N bars' extremes are those values shifted by one bar.
MARKET_STRUCTURE = """\
name: MarketStructure
description: >-
  Break of market structure - a close above the highest high of the prior N bars enters long,
  a close below the lowest low of the prior N bars exits and goes short.
timeframe: 1d
symbols: [ACME, GLOBX, INITECH, UMBRL, BTCUSD]
params: {lookback: 20}
indicators:
  prior_high: shift(highest(high, lookback), 1)
  prior_low: shift(lowest(low, lookback), 1)
entry:
  long: close > prior_high
  short: close < prior_low
exit:
  long: close < prior_low
  short: close > prior_high
risk: {position_size_pct: 100}
"""

DEMO_DEFINITIONS = (SMA_CROSS, MARKET_STRUCTURE)


def ensure_demo_strategies(*, session: Session, owner_id: uuid.UUID) -> list[Strategy]:
    """Create the demo strategies the owner does not have yet (by name); return the new ones."""
    created = []
    for definition in DEMO_DEFINITIONS:
        name = service.checked_definition(definition).name
        existing, _ = service.list_strategies(session=session, owner_id=owner_id, name=name,
                                              limit=1)
        if not existing:
            created.append(service.create_strategy(
                session=session, owner_id=owner_id, definition=definition,
                metadata={"demo": True}))
    return created
