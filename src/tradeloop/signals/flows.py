"""Signal processing (seed 004), one readable flow per signal:

market hours → context → decision with risk gates → paper position → outcome → status.

Each signal is one unit of work: the decision, the position change and the signal's new
status commit together or not at all, so a crash mid-way leaves the claim to be requeued.
"""

from __future__ import annotations

import functools
import time
import uuid
from dataclasses import dataclass
from datetime import timedelta
from decimal import Decimal
from typing import Any

import structlog
from sqlalchemy.orm import Session

from tradeloop.db import Database
from tradeloop.market_data.calendar import MarketCalendar, calendar_from_settings
from tradeloop.settings import Settings, get_settings
from tradeloop.signals.context import build_context
from tradeloop.signals.models import (
    DecisionAction,
    ProcessingError,
    Signal,
    SignalStatus,
    WebhookEndpoint,
)
from tradeloop.signals.outbox import claim_signals, finish_signal, requeue_abandoned
from tradeloop.signals.positions import execute_plan, load_book, lock_book, record_decision
from tradeloop.signals.trading import MONEY, Order, Plan, RiskGates, apply, decide

log = structlog.get_logger(__name__)

ABANDONED_AFTER = timedelta(minutes=5)


@dataclass(frozen=True)
class ProcessingConfig:
    """What processing needs from the settings: market hours and whether they apply."""

    calendar: MarketCalendar
    market_hours_enforced: bool = True

    @classmethod
    def from_settings(cls, settings: Settings) -> ProcessingConfig:
        return cls(calendar_from_settings(settings), settings.market_hours_enforced)


@functools.cache
def default_config() -> ProcessingConfig:
    """The process's config, built once: calendars are costly and settings need a restart."""
    return ProcessingConfig.from_settings(get_settings())


def process_signal_queue(db: Database, config: ProcessingConfig | None = None,
                         batch: int = 100) -> int:
    """Requeue abandoned claims, then process queued signals until none is left."""
    config = config or default_config()
    with db.unit_of_work() as session:
        requeue_abandoned(session=session, older_than=ABANDONED_AFTER)
    done = 0
    while True:
        # One claim per (user, symbol) at a time keeps each symbol in arrival order.
        with db.unit_of_work() as session:
            claimed = [signal.id for signal in claim_signals(session=session, limit=batch)]
        if not claimed:
            return done
        for signal_id in claimed:
            process_signal(db, signal_id, config)
            done += 1


def requeue_interrupted(db: Database) -> int:
    """Requeue every claim still `processing`, at once; returns how many.

    Only for the start of the in-process runner, the one processor of a `serve` without
    Celery, before it takes requests: any claim then belongs to a process that died, and
    waiting ABANDONED_AFTER would leave its signals (and their symbols) stuck for minutes.
    """
    with db.unit_of_work() as session:
        return requeue_abandoned(session=session, older_than=timedelta(0))


def process_signal(db: Database, signal_id: uuid.UUID,
                   config: ProcessingConfig | None = None) -> DecisionAction | None:
    """Decide on one claimed signal and apply it; a failure marks it `failed`, never lost."""
    config = config or default_config()
    started = time.perf_counter()
    try:
        with db.unit_of_work() as session:
            signal = session.get(Signal, signal_id)
            if signal is None or signal.status not in (SignalStatus.QUEUED.value,
                                                       SignalStatus.PROCESSING.value):
                return None  # deleted, or already finished by another worker
            lock_book(session, signal.user_id)
            # 1. Market hours (crypto trades 24/7), judged at the signal's own timestamp.
            market_open, hours = market_hours(config, signal)
            # 2. Context from stored bars; missing bars degrade, they do not stop us.
            context = build_context(session=session, symbol=signal.symbol,
                                    timeframe=signal.timeframe, at=signal.signal_time)
            order = Order(signal.symbol, signal.direction,
                          fill_price(signal, context.latest_close), signal.signal_time,
                          signal.score, signal.confidence)
            # 3. Decision: the risk gates against the user's book.
            book = load_book(session, signal.user_id, order.at)
            plan = decide(order, book, risk_gates(session, signal)) if market_open \
                else Plan(DecisionAction.REJECT, [hours])
            # 4. Paper position opened / closed / reversed; 5. outcome on the opening signal.
            _, closed = apply(book, plan, order)
            execute_plan(session, signal, plan, order, closed)
            record_decision(session, signal, plan, degraded=context.degraded,
                            latency_ms=(time.perf_counter() - started) * 1000,
                            inputs={"market_open": market_open, "market_hours": hours,
                                    "fill_price": _text(order.price),
                                    "context": context.as_json()})
            # 6. The signal's final status.
            rejected = plan.action is DecisionAction.REJECT
            finish_signal(session=session, signal=signal, status=SignalStatus.REJECTED
                          if rejected else SignalStatus.PROCESSED)
        log.info("signal_processed", signal_id=str(signal_id), action=plan.action.value,
                 degraded=context.degraded)
        return plan.action
    except Exception as exc:
        log.exception("signal_processing_failed", signal_id=str(signal_id))
        record_failure(db, signal_id, exc)
        return None


def market_hours(config: ProcessingConfig, signal: Signal) -> tuple[bool, str]:
    """Whether the signal's market trades at its timestamp, and why, in words."""
    exchange = config.calendar.exchange_for(signal.symbol)
    if not config.market_hours_enforced:
        return True, "market hours not enforced (MARKET_HOURS_ENFORCED=false)"
    at = signal.signal_time.isoformat()
    if config.calendar.is_open(signal.symbol, signal.signal_time):
        return True, f"{signal.symbol} ({exchange}) open at {at}"
    return False, f"market closed: {signal.symbol} ({exchange}) is not trading at {at}"


def fill_price(signal: Signal, latest_close: Decimal | None) -> Decimal | None:
    """The signal's own price, else the latest stored close."""
    price = signal.price if signal.price is not None else latest_close
    return None if price is None else price.quantize(MONEY)


def risk_gates(session: Session, signal: Signal) -> RiskGates:
    """The gates of the endpoint the signal came through; none for the default webhook."""
    endpoint = session.get(WebhookEndpoint, signal.endpoint_id) if signal.endpoint_id else None
    return RiskGates.from_json(endpoint.risk if endpoint else None)


def record_failure(db: Database, signal_id: uuid.UUID, exc: Exception) -> None:
    """Mark the signal `failed` with a processing_errors row, in a fresh unit of work."""
    with db.unit_of_work() as session:
        signal = session.get(Signal, signal_id)
        if signal is None:
            return
        finish_signal(session=session, signal=signal, status=SignalStatus.FAILED)
        session.add(ProcessingError(
            user_id=signal.user_id, endpoint_id=signal.endpoint_id, signal_id=signal.id,
            correlation_id=signal.correlation_id, stage="processing",
            error_type=type(exc).__name__, message=str(exc)[:4000] or type(exc).__name__,
            details={"symbol": signal.symbol, "direction": signal.direction}))


def _text(value: Any) -> str | None:
    return None if value is None else str(value)
