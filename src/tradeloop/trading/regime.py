"""The gamma regime of a symbol from its latest GEX snapshot, and the GEX risk gate (pure).

Dealers hedging options push the underlying back toward calm when their net gamma is
positive (they sell rallies, buy dips: a dampened, mean-reverting market, where the call wall
caps rallies and the put wall holds dips) and amplify moves when it is negative (they chase
the move: a trending market). The rule the decision applies (docs/signals.md):

* positive gamma: a LONG entry at or within `buffer_pct` below the call wall, or a SHORT entry
  at or within `buffer_pct` above the put wall, is refused — the move it bets on is capped;
* negative gamma: an entry against the bars' trend (LONG in a down trend, SHORT in an up
  trend) is refused — amplified moves run over counter-trend entries;
* a stale snapshot is recorded but never refuses anything: old walls mislead.
"""

from __future__ import annotations

from dataclasses import dataclass
from decimal import Decimal
from typing import Any

from tradeloop.market_context.gex import GexLevels
from tradeloop.schema_types import plain_decimal
from tradeloop.signals.models import Direction

HUNDRED = Decimal(100)


@dataclass(frozen=True)
class Regime:
    """The levels, judged at one price."""

    levels: GexLevels
    price: Decimal
    gamma: str  # positive | negative | neutral
    behaviour: str  # dampened | amplified | neutral
    flip_side: str  # above | below | at
    near_call_wall: bool
    near_put_wall: bool

    def as_json(self) -> dict[str, Any]:
        return {"gamma": self.gamma, "behaviour": self.behaviour, "flip_side": self.flip_side,
                "near_call_wall": self.near_call_wall, "near_put_wall": self.near_put_wall,
                "price": plain_decimal(self.price), **self.levels.as_json()}


def regime(levels: GexLevels, price: Decimal, buffer_pct: Decimal) -> Regime:
    """Classify `price` against the snapshot; `buffer_pct` is how near counts as "at" a wall."""
    if levels.net_gex > 0:
        gamma, behaviour = "positive", "dampened"
    elif levels.net_gex < 0:
        gamma, behaviour = "negative", "amplified"
    else:
        gamma, behaviour = "neutral", "neutral"
    flip_side = "above" if price > levels.gamma_flip else "below" \
        if price < levels.gamma_flip else "at"
    buffer = buffer_pct / HUNDRED
    return Regime(levels, price, gamma, behaviour, flip_side,
                  near_call_wall=price >= levels.call_wall * (1 - buffer),
                  near_put_wall=price <= levels.put_wall * (1 + buffer))


def gex_refusal(direction: str, found: Regime, trend: str | None) -> str | None:
    """Why the GEX gate refuses an entry in `direction`, or None when it lets it pass."""
    if found.levels.stale:
        return None
    long, short = direction == Direction.LONG.value, direction == Direction.SHORT.value
    if found.gamma == "positive":
        if long and found.near_call_wall:
            return (f"gex_gate: positive gamma (dampened) and price {found.price} at the call "
                    f"wall {found.levels.call_wall}: the rally is likely capped")
        if short and found.near_put_wall:
            return (f"gex_gate: positive gamma (dampened) and price {found.price} at the put "
                    f"wall {found.levels.put_wall}: the drop is likely held")
    if found.gamma == "negative" and ((long and trend == "down") or (short and trend == "up")):
        return (f"gex_gate: negative gamma (amplified) and {direction} against the {trend} "
                f"trend")
    return None
