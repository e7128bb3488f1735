"""The pure core of signal processing: risk gates, the decision and the paper book.

No database here: `decide` and `apply` work on an immutable `Book`, so the flow persists what
they return and the property tests replay thousands of signals in memory.
"""

from __future__ import annotations

from dataclasses import dataclass, field, replace
from datetime import date, datetime
from decimal import ROUND_DOWN, ROUND_HALF_EVEN, Decimal
from typing import Any

from tradeloop.schema_types import plain_decimal
from tradeloop.signals.models import Direction
from tradeloop.trading.models import DecisionAction
from tradeloop.trading.regime import Regime, gex_refusal

MONEY = Decimal("1e-8")  # Numeric(20, 8)
QUANTITY = Decimal("1e-10")  # Numeric(28, 10)
DEFAULT_NOTIONAL = Decimal(1000)
DEFAULT_WALL_BUFFER_PCT = Decimal("0.5")


def _decimal(value: Any) -> Decimal | None:
    # Via str: a float from JSON becomes the decimal it prints as, not its binary expansion.
    return None if value is None else Decimal(str(value))


@dataclass(frozen=True)
class RiskGates:
    """An endpoint's `risk` JSON; None switches a gate off."""

    min_score: float | None = None
    min_confidence: float | None = None
    max_open_positions: int | None = None
    max_exposure: Decimal | None = None
    cooldown_seconds: int | None = None
    daily_loss_limit: Decimal | None = None
    position_notional: Decimal = DEFAULT_NOTIONAL
    # The GEX regime gate (regime.py); on unless an endpoint turns it off.
    gex_gate: bool = True
    gex_wall_buffer_pct: Decimal = DEFAULT_WALL_BUFFER_PCT

    @classmethod
    def from_json(cls, risk: dict[str, Any] | None) -> RiskGates:
        """Gates from stored JSON; unknown keys are ignored."""
        risk = risk or {}
        return cls(min_score=risk.get("min_score"), min_confidence=risk.get("min_confidence"),
                   max_open_positions=risk.get("max_open_positions"),
                   max_exposure=_decimal(risk.get("max_exposure")),
                   cooldown_seconds=risk.get("cooldown_seconds"),
                   daily_loss_limit=_decimal(risk.get("daily_loss_limit")),
                   position_notional=_decimal(risk.get("position_notional"))
                   or DEFAULT_NOTIONAL,
                   gex_gate=risk.get("gex_gate") is not False,
                   gex_wall_buffer_pct=_decimal(risk.get("gex_wall_buffer_pct"))
                   or DEFAULT_WALL_BUFFER_PCT)

    def as_json(self) -> dict[str, Any]:
        return {name: (plain_decimal(value) if isinstance(value, Decimal) else value)
                for name, value in self.__dict__.items()}


@dataclass(frozen=True)
class Lot:
    """An open paper position as the decision sees it."""

    symbol: str
    side: str  # LONG | SHORT
    quantity: Decimal
    entry_price: Decimal

    @property
    def exposure(self) -> Decimal:
        return abs(self.quantity * self.entry_price)


@dataclass(frozen=True)
class Closed:
    """A position closed by `apply`, with its realised P&L."""

    lot: Lot
    exit_price: Decimal
    pnl: Decimal
    at: datetime


@dataclass(frozen=True)
class Book:
    """One user's paper account: open lots by symbol, last entries, realised P&L per day."""

    open: dict[str, Lot] = field(default_factory=dict)
    last_entry: dict[str, datetime] = field(default_factory=dict)
    realized_by_day: dict[date, Decimal] = field(default_factory=dict)

    @property
    def exposure(self) -> Decimal:
        return sum((lot.exposure for lot in self.open.values()), Decimal(0))

    def realized_on(self, day: date) -> Decimal:
        return self.realized_by_day.get(day, Decimal(0))


@dataclass(frozen=True)
class Order:
    """What the decision asks for, at one fill price."""

    symbol: str
    direction: str  # LONG | SHORT | EXIT
    price: Decimal | None
    at: datetime
    score: float | None = None
    confidence: float | None = None
    trend: str | None = None  # the bars' trend: up | down | sideways
    regime: Regime | None = None  # from the latest GEX snapshot, when there is one


@dataclass(frozen=True)
class Plan:
    """The decision: its action and reasons, whether to close, what to open."""

    action: DecisionAction
    reasons: list[str]
    close: bool = False
    open: Lot | None = None
    gates: dict[str, Any] = field(default_factory=dict)


def pnl(lot: Lot, exit_price: Decimal) -> Decimal:
    """Realised P&L of closing `lot` at `exit_price`, to the cent's hundred-millionth."""
    move = exit_price - lot.entry_price
    signed = move if lot.side == Direction.LONG.value else -move
    return (signed * lot.quantity).quantize(MONEY, ROUND_HALF_EVEN)


def quantity_for(notional: Decimal, price: Decimal) -> Decimal:
    """Units bought with `notional`; rounded down so exposure never exceeds the notional."""
    return (notional / price).quantize(QUANTITY, ROUND_DOWN)


def decide(order: Order, book: Book, gates: RiskGates) -> Plan:
    """ENTER, EXIT, REVERSE, HOLD or REJECT for one order against the book and the gates."""
    current = book.open.get(order.symbol)
    if order.price is None or order.price <= 0:
        return Plan(DecisionAction.REJECT, ["no price: the signal has none and no bars are "
                                            "stored for the symbol"])
    if order.direction == Direction.EXIT.value:
        if current is None:
            return Plan(DecisionAction.HOLD, ["EXIT without an open position: nothing to do"])
        return Plan(DecisionAction.EXIT, [f"EXIT closes the open {current.side}"], close=True)
    if current is not None and current.side == order.direction:
        return Plan(DecisionAction.HOLD, [f"already {current.side} {order.symbol}"])
    # An opposite signal closes first; the gates then judge the new leg on the book after it.
    closing = current is not None
    closing_side = current.side if current is not None else ""
    after = apply(book, Plan(DecisionAction.EXIT, [], close=True), order)[0] if closing else book
    lot = Lot(order.symbol, order.direction, quantity_for(gates.position_notional, order.price),
              order.price)
    refusals, values = check_gates(order, after, gates, lot)
    if refusals:
        if closing:
            return Plan(DecisionAction.EXIT, [f"opposite {order.direction} closes the open "
                                              f"{closing_side}; reversal refused", *refusals],
                        close=True, gates=values)
        return Plan(DecisionAction.REJECT, refusals, gates=values)
    if lot.quantity <= 0:
        return Plan(DecisionAction.REJECT, ["position_notional buys less than one unit "
                                            "step"], gates=values)
    if closing:
        return Plan(DecisionAction.REVERSE, [f"opposite {order.direction} closes the open "
                                             f"{closing_side} and reverses"],
                    close=True, open=lot, gates=values)
    return Plan(DecisionAction.ENTER, [f"{order.direction} opens a position"], open=lot,
                gates=values)


def check_gates(order: Order, book: Book, gates: RiskGates,
                lot: Lot) -> tuple[list[str], dict[str, Any]]:
    """Every gate that refuses the new `lot`, and the values the gates looked at."""
    refusals: list[str] = []
    exposure_after = book.exposure + lot.exposure
    last = book.last_entry.get(order.symbol)
    since = (order.at - last).total_seconds() if last else None
    realized = book.realized_on(order.at.date())
    values = {"score": order.score, "confidence": order.confidence,
              "open_positions": len(book.open), "exposure": str(book.exposure),
              "exposure_after": str(exposure_after), "seconds_since_last_entry": since,
              "realized_pnl_today": str(realized), "trend": order.trend,
              "gex": order.regime.as_json() if order.regime else None, **gates.as_json()}
    if gates.min_score is not None and (order.score is None or order.score < gates.min_score):
        refusals.append(f"min_score: score {order.score} below {gates.min_score}")
    if gates.min_confidence is not None and (order.confidence is None
                                             or order.confidence < gates.min_confidence):
        refusals.append(f"min_confidence: confidence {order.confidence} below "
                        f"{gates.min_confidence}")
    if gates.max_open_positions is not None and len(book.open) >= gates.max_open_positions:
        refusals.append(f"max_open_positions: {len(book.open)} open, limit "
                        f"{gates.max_open_positions}")
    if gates.max_exposure is not None and exposure_after > gates.max_exposure:
        refusals.append(f"max_exposure: {exposure_after} would exceed {gates.max_exposure}")
    if gates.cooldown_seconds is not None and since is not None \
            and since < gates.cooldown_seconds:
        refusals.append(f"cooldown_seconds: last entry on {order.symbol} {since:g} s ago, "
                        f"cooldown {gates.cooldown_seconds} s")
    if gates.daily_loss_limit is not None and realized <= -gates.daily_loss_limit:
        refusals.append(f"daily_loss_limit: realised P&L today {realized} reached "
                        f"-{gates.daily_loss_limit}")
    if gates.gex_gate and order.regime is not None:
        refusal = gex_refusal(order.direction, order.regime, order.trend)
        if refusal:
            refusals.append(refusal)
    return refusals, values


def apply(book: Book, plan: Plan, order: Order) -> tuple[Book, Closed | None]:
    """The book after `plan` fills at the order's price, and the position it closed."""
    opened, last_entry, realized = dict(book.open), dict(book.last_entry), \
        dict(book.realized_by_day)
    closed = None
    if plan.close and order.symbol in opened:
        assert order.price is not None
        lot = opened.pop(order.symbol)
        closed = Closed(lot, order.price, pnl(lot, order.price), order.at)
        day = order.at.date()
        realized[day] = realized.get(day, Decimal(0)) + closed.pnl
    if plan.open is not None:
        opened[order.symbol] = plan.open
        last_entry[order.symbol] = order.at
    return replace(book, open=opened, last_entry=last_entry, realized_by_day=realized), closed


def outcome_of(profit: Decimal) -> str:
    """win | loss | breakeven of a realised P&L."""
    return "win" if profit > 0 else "loss" if profit < 0 else "breakeven"


def r_multiple(lot: Lot, exit_price: Decimal, stop: Decimal | None) -> float | None:
    """P&L in units of the initial risk (entry to stop); None without a usable stop."""
    if stop is None or stop == lot.entry_price:
        return None
    return float(pnl(lot, exit_price) / (abs(lot.entry_price - stop) * lot.quantity))
