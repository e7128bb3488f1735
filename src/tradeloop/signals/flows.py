"""Signal processing (seed 004), one readable flow per signal:

market hours → context → decision with risk gates → paper position → outcome → status.

Each signal is one unit of work: the decision, the position change and the signal's new
status commit together or not at all, so a crash mid-way leaves the claim to be requeued.

And the flow after new bars: live strategies on the newest bar → their signals queued (then
processed like webhooks) → open positions marked at the latest close.
"""

from __future__ import annotations

import functools
import time
import uuid
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from decimal import Decimal

import structlog
from sqlalchemy.orm import Session

from tradeloop.db import Database
from tradeloop.market_context.cache import ContextCache, ContextPolicy, store_snapshot
from tradeloop.market_data.calendar import MarketCalendar, calendar_from_settings
from tradeloop.market_data.timeframes import DAILY_TIMEFRAMES, TIMEFRAME_SECONDS
from tradeloop.schema_types import plain_decimal
from tradeloop.settings import Settings, get_settings
from tradeloop.signals.live_strategies import evaluate_new_bar
from tradeloop.signals.models import ProcessingError, Signal, SignalOrigin, SignalStatus
from tradeloop.signals.repository import (
    ClaimedSignal,
    SignalQueue,
    batched_writes,
    requeue_abandoned,
)
from tradeloop.trading.marks import mark_open_positions
from tradeloop.trading.models import DecisionAction
from tradeloop.trading.regime import regime
from tradeloop.trading.repository import PositionBook
from tradeloop.trading.rules import MONEY, Order, Plan, RiskGates, apply, decide
from tradeloop.trading.service import lock_book
from tradeloop.webhooks import endpoints
from tradeloop.webhooks.service import DEFAULT_REPLAY_WINDOW

log = structlog.get_logger(__name__)

ABANDONED_AFTER = timedelta(minutes=5)


@dataclass(frozen=True)
class ProcessingConfig:
    """What processing needs from the settings: market hours, whether they apply, and the
    process's context cache (with its TTL and staleness limits), and the replay window (how
    old a bar may be and still produce live strategy signals)."""

    calendar: MarketCalendar
    market_hours_enforced: bool = True
    contexts: ContextCache = field(default_factory=ContextCache)
    replay_window: timedelta = DEFAULT_REPLAY_WINDOW

    @classmethod
    def from_settings(cls, settings: Settings) -> ProcessingConfig:
        policy = ContextPolicy(ttl_s=settings.context_cache_ttl_s,
                               stale_after_bars=settings.context_stale_after_bars,
                               gex_max_age=timedelta(seconds=settings.gex_max_age_s))
        return cls(calendar_from_settings(settings), settings.market_hours_enforced,
                   ContextCache(policy), timedelta(seconds=settings.signal_replay_window_s))


@functools.cache
def default_config() -> ProcessingConfig:
    """The process's config, built once: calendars are costly and settings need a restart."""
    return ProcessingConfig.from_settings(get_settings())


def process_signal_queue(db: Database, config: ProcessingConfig | None = None,
                         batch: int = 100) -> int:
    """Process queued signals until none is left; returns how many.

    Claims a crashed processor abandoned are not requeued here: the start of `serve` does it
    at once (requeue_interrupted) and the every-minute sweep after ABANDONED_AFTER
    (requeue_abandoned_claims), so the drain that follows every accepted webhook skips that
    UPDATE.
    """
    config = config or default_config()
    done = 0
    # One connection for the whole drain: no pool checkout per claim and per signal, which
    # on PostgreSQL is also a pre-ping round trip each.
    with db.pinned() as pinned:
        while True:
            # One claim per (user, symbol) at a time keeps each symbol in arrival order. The
            # claim is one statement, committed on its own.
            with SignalQueue.autocommit(pinned) as queue:
                claimed = queue.claim(limit=batch)
            if not claimed:
                return done
            for signal in claimed:
                process_signal(pinned, signal.id, config, claimed=signal)
                done += 1


def requeue_abandoned_claims(db: Database) -> int:
    """Requeue claims older than ABANDONED_AFTER (a crashed worker's); returns how many."""
    with db.unit_of_work() as session:
        return requeue_abandoned(session=session, older_than=ABANDONED_AFTER)


def requeue_interrupted(db: Database) -> int:
    """Requeue every claim still `processing`, at once; returns how many.

    Only for the start of the in-process runner, the one processor of a `serve` without
    Celery, before it takes requests: any claim then belongs to a process that died, and
    waiting ABANDONED_AFTER would leave its signals (and their symbols) stuck for minutes.
    """
    with db.unit_of_work() as session:
        return requeue_abandoned(session=session, older_than=timedelta(0))


class AlreadyFinishedError(Exception):
    """Another processor finished the signal first; this unit of work must roll back."""


def process_signal(db: Database, signal_id: uuid.UUID, config: ProcessingConfig | None = None,
                   *, claimed: ClaimedSignal | None = None) -> DecisionAction | None:
    """Decide on one signal and apply it; a failure marks it `failed`, never lost.

    `claimed` is the row SignalQueue.claim returned for it (committed as `processing`), which
    spares reading it again; without it the signal is read and skipped unless it is still
    queued or processing.
    """
    config = config or default_config()
    started = time.perf_counter()
    try:
        with db.unit_of_work() as session:
            signal = claimed or SignalQueue.of_session(session).unfinished(signal_id)
            if signal is None:
                return None  # deleted, or already finished by another worker
            action, degraded = decide_and_apply(session, signal, config, started)
    except AlreadyFinishedError:
        log.warning("signal_already_finished", signal_id=str(signal_id))
        return None
    except Exception as exc:
        log.exception("signal_processing_failed", signal_id=str(signal_id))
        record_failure(db, signal_id, exc)
        return None
    log.info("signal_processed", signal_id=str(signal_id), action=action.value,
             degraded=degraded)
    return action


def decide_and_apply(session: Session, signal: ClaimedSignal, config: ProcessingConfig,
                     started: float) -> tuple[DecisionAction, bool]:
    """The flow of one signal inside its unit of work; returns the action and whether the
    context was degraded. Raises AlreadyFinishedError when another processor finished it first."""
    # 1. Market hours (crypto trades 24/7), judged at the signal's own timestamp.
    market_open, hours = market_hours(config, signal)
    # 2. Context (bars + GEX, cached); missing or stale data degrades, never stops. First in
    # the unit of work: a failing read needs no savepoint, and the book is locked shorter.
    context = config.contexts.lookup(
        session=session, owner_id=signal.user_id, symbol=signal.symbol,
        timeframe=signal.timeframe, at=signal.signal_time, calendar=config.calendar)
    # The repositories run Core statements on the session's DBAPI connection, in its
    # transaction: processing skips the ORM and SQLAlchemy's execution layer.
    positions = PositionBook.of_session(session)
    lock_book(session, signal.user_id)
    gates = risk_gates(session, signal)
    price = fill_price(signal, context.market.latest_close)
    found = regime(context.gex, price, gates.gex_wall_buffer_pct) \
        if context.gex is not None and price is not None else None
    order = Order(signal.symbol, signal.direction, price, signal.signal_time,
                  signal.score, signal.confidence, context.market.trend, found)
    # 3. Decision: the risk gates against the user's book.
    book, open_rows = positions.load(signal.user_id, signal.symbol, order.at)
    plan = decide(order, book, gates) if market_open \
        else Plan(DecisionAction.REJECT, [hours])
    _, closed = apply(book, plan, order)
    status = SignalStatus.REJECTED if plan.action is DecisionAction.REJECT \
        else SignalStatus.PROCESSED
    # Only the last write's answer is read: on PostgreSQL they go out pipelined, in two round
    # trips instead of six.
    with batched_writes(session):
        # 4. Paper position opened / closed / reversed; 5. outcome on the opening signal.
        own_outcome = positions.execute_plan(signal, plan, order, closed, open_rows)
        decision_id = positions.record_decision(
            signal, plan, degraded=context.degraded,
            latency_ms=(time.perf_counter() - started) * 1000,
            inputs={"market_open": market_open, "market_hours": hours,
                    "fill_price": _text(order.price), "context": context.as_json(),
                    "gex_regime": found.as_json() if found else None,
                    "degraded_reasons": context.problems})
        store_snapshot(session, signal, decision_id, context)
        # 6. The signal's final status, only if nobody finished it meanwhile.
        finished = SignalQueue.of_session(session).finish(signal.id, status, **own_outcome)
    if not finished:
        raise AlreadyFinishedError(str(signal.id))
    return plan.action, context.degraded


def market_hours(config: ProcessingConfig, signal: ClaimedSignal) -> tuple[bool, str]:
    """Whether the signal's market trades at its timestamp, and why, in words."""
    exchange = config.calendar.exchange_for(signal.symbol)
    if not config.market_hours_enforced:
        return True, "market hours not enforced (MARKET_HOURS_ENFORCED=false)"
    at = signal.signal_time.isoformat()
    if signal.origin == SignalOrigin.STRATEGY.value and signal.timeframe in DAILY_TIMEFRAMES:
        return daily_bar_hours(config, signal, exchange)
    if config.calendar.is_open(signal.symbol, signal.signal_time):
        return True, f"{signal.symbol} ({exchange}) open at {at}"
    return False, f"market closed: {signal.symbol} ({exchange}) is not trading at {at}"


def daily_bar_hours(config: ProcessingConfig, signal: ClaimedSignal,
                    exchange: str) -> tuple[bool, str]:
    """A strategy signal of a daily or weekly bar is stamped with the bar's date at 00:00
    UTC, never inside a session: it is tradable when the market had a session in that bar."""
    start = signal.signal_time
    end = start + timedelta(seconds=TIMEFRAME_SECONDS[signal.timeframe])
    bar = f"{signal.timeframe} bar of {start.date().isoformat()}"
    if config.calendar.next_open(signal.symbol, start) < end:
        return True, f"{signal.symbol} ({exchange}) traded during the {bar}"
    return False, f"market closed: {signal.symbol} ({exchange}) had no session in the {bar}"


def react_to_new_bars(db: Database, *, symbol: str, timeframe: str, last_written: str,
                      series_last: str, config: ProcessingConfig | None = None,
                      ) -> dict[str, int]:
    """After an import wrote bars: when it wrote the newest one, run the live strategies on
    it, queue their signals and process the queue; then mark open positions of the symbol."""
    config = config or default_config()
    signals = processed = 0
    newest = datetime.fromisoformat(series_last)
    if datetime.fromisoformat(last_written) == newest:
        with db.unit_of_work() as session:
            results = evaluate_new_bar(session=session, symbol=symbol, timeframe=timeframe,
                                       bar_time=newest, replay_window=config.replay_window)
            signals = sum(result.status == "ACCEPTED" for result in results)
        if signals:
            # Committed first, like an accepted webhook; this job already runs in the
            # background, so it drains the queue itself instead of enqueueing another.
            processed = process_signal_queue(db, config)
    with db.unit_of_work() as session:
        marked = mark_open_positions(session=session, symbols=[symbol])
    return {"strategy_signals": signals, "processed": processed, "marked": marked}


def fill_price(signal: ClaimedSignal, latest_close: Decimal | None) -> Decimal | None:
    """The signal's own price, else the latest stored close."""
    price = signal.price if signal.price is not None else latest_close
    return None if price is None else price.quantize(MONEY)


DEFAULT_GATES = RiskGates.from_json(None)


def risk_gates(session: Session, signal: ClaimedSignal) -> RiskGates:
    """The gates of the endpoint the signal came through; none for the default webhook.
    Read for every signal: an endpoint's risk settings apply from their next signal on."""
    if signal.endpoint_id is None:
        return DEFAULT_GATES
    return RiskGates.from_json(endpoints.endpoint_risk(session=session,
                                                       endpoint_id=signal.endpoint_id))


def record_failure(db: Database, signal_id: uuid.UUID, exc: Exception) -> None:
    """Mark the signal `failed` with a processing_errors row, in a fresh unit of work —
    unless it was finished meanwhile (by another processor): that outcome stands."""
    with db.unit_of_work() as session:
        signal = session.get(Signal, signal_id)
        if signal is None or not SignalQueue.of_session(session).finish(signal_id,
                                                                        SignalStatus.FAILED):
            return
        session.add(ProcessingError(
            user_id=signal.user_id, endpoint_id=signal.endpoint_id, signal_id=signal.id,
            correlation_id=signal.correlation_id, stage="processing",
            error_type=type(exc).__name__, message=str(exc)[:4000] or type(exc).__name__,
            details={"symbol": signal.symbol, "direction": signal.direction}))


def _text(value: Decimal | None) -> str | None:
    return None if value is None else plain_decimal(value)
