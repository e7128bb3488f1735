"""Live strategies (SPEC §3, §6): a newly arrived bar → every active strategy → signals.

When an import writes the newest bar of a (symbol, timeframe), every user's active strategy
that trades that symbol on that timeframe is evaluated — with the compiled strategy language,
on the stored bars up to that bar — and whatever fires on that bar becomes a signal with
origin `strategy`. It is ingested exactly like a webhook (validation, idempotency key, the
outbox), so processing, decisions and positions treat it like any other signal.

Only the newest bar is evaluated, and only when an import has just written it: activating a
strategy, or loading years of history, never replays old crossovers as new signals. A bar
that ended longer ago than the replay window is history, not news, and is skipped too.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

import structlog
from sqlalchemy.orm import Session

from tradeloop.db import utcnow
from tradeloop.logs import current_correlation_id
from tradeloop.market_data import service as market_data
from tradeloop.market_data.timeframes import TIMEFRAME_SECONDS
from tradeloop.signals.models import Direction, SignalOrigin
from tradeloop.strategies import service as strategies
from tradeloop.strategies.compiler import SIGNAL_NAMES, CompiledStrategy, StrategySignals
from tradeloop.strategies.models import Strategy
from tradeloop.webhooks import service
from tradeloop.webhooks.auth import EndpointAuth

log = structlog.get_logger(__name__)

# Bars loaded before the evaluated one: recursive indicators (EMA, RSI, ATR) then match the
# backtest of the same history to many digits, and evaluation stays a few milliseconds.
LIVE_LOOKBACK = 5_000
SOURCE = "strategy"
# Strategy signals carry no credentials: they never come from outside.
NO_AUTH = EndpointAuth("", frozenset())


@dataclass(frozen=True)
class FiredRule:
    """What a strategy says at the evaluated bar: the rule that fired and the direction."""

    rule: str  # entry_long | entry_short | exit_long | exit_short
    direction: Direction


def fired_rule(signals: StrategySignals) -> FiredRule | None:
    """The signal of the last bar. An entry outranks an exit (a LONG reverses an open SHORT
    by itself); entries both ways at once cancel out, as in the backtest engine."""
    last = {name: bool(getattr(signals, name)[-1]) for name in SIGNAL_NAMES}
    if last["entry_long"] != last["entry_short"]:
        return FiredRule("entry_long", Direction.LONG) if last["entry_long"] \
            else FiredRule("entry_short", Direction.SHORT)
    for rule in ("exit_long", "exit_short"):
        if last[rule]:
            return FiredRule(rule, Direction.EXIT)
    return None


def is_history(bar_time: datetime, timeframe: str, now: datetime,
               replay_window: timedelta) -> bool:
    """Whether the bar ended longer ago than the replay window."""
    ended = bar_time + timedelta(seconds=TIMEFRAME_SECONDS.get(timeframe, 0))
    return ended < now - replay_window


def evaluate_new_bar(*, session: Session, symbol: str, timeframe: str, bar_time: datetime,
                     now: datetime | None = None,
                     replay_window: timedelta = service.DEFAULT_REPLAY_WINDOW,
                     ) -> list[service.IngestResult]:
    """Run every active strategy on (symbol, timeframe) at `bar_time` and ingest what fires;
    returns one ingest result per signal (ACCEPTED, or DUPLICATE for a bar seen before)."""
    now = now or utcnow()
    if is_history(bar_time, timeframe, now, replay_window):
        log.info("live_strategies_skip_history", symbol=symbol, timeframe=timeframe,
                 bar_time=bar_time.isoformat())
        return []
    candidates = strategies.active_strategies_for(session=session, symbol=symbol,
                                                  timeframe=timeframe)
    if not candidates:
        return []
    bars = market_data.load_bars(session=session, symbol=symbol, timeframe=timeframe,
                                 end=bar_time, limit=LIVE_LOOKBACK, required=False)
    if not len(bars) or market_data.utc_datetime(bars.ts[-1]) != bar_time:
        return []  # the bar was deleted or replaced since the import
    results = []
    for strategy, compiled in candidates:
        fired = _evaluate(strategy, compiled, bars)
        if fired is not None:
            results.append(ingest_strategy_signal(
                session=session, strategy=strategy, symbol=bars.symbol, timeframe=timeframe,
                bar_time=bar_time, fired=fired, now=now,
                replay_window=replay_window + timedelta(
                    seconds=TIMEFRAME_SECONDS.get(timeframe, 0))))
    return results


def _evaluate(strategy: Strategy, compiled: CompiledStrategy,
              bars: market_data.BarArrays) -> FiredRule | None:
    try:
        return fired_rule(compiled.evaluate(bars.as_mapping()))
    except Exception:  # one broken strategy must not keep the others from trading
        log.exception("live_strategy_failed", strategy_id=str(strategy.id))
        return None


def strategy_signal_body(strategy: Strategy, symbol: str, timeframe: str, bar_time: datetime,
                         fired: FiredRule) -> dict[str, Any]:
    """The signal as a webhook body. It is the same for the same bar, so a repeat is a
    DUPLICATE; no price, so processing fills at that bar's close, even a corrected one."""
    return {
        "id": strategy_signal_key(strategy, symbol, bar_time, fired.direction),
        "source": SOURCE, "symbol": symbol, "direction": fired.direction.value,
        "timeframe": timeframe, "timestamp": bar_time.isoformat(),
        "metadata": {"strategy_id": str(strategy.id), "strategy_version": strategy.version,
                     "strategy_name": strategy.name, "rule": fired.rule,
                     "bar_time": bar_time.isoformat()},
    }


def strategy_signal_key(strategy: Strategy, symbol: str, bar_time: datetime,
                        direction: Direction) -> str:
    """Strategy id and version, symbol, bar time and direction: one signal per bar and way."""
    return (f"strategy:{strategy.id}:v{strategy.version}:{symbol}:{bar_time.isoformat()}:"
            f"{direction.value}")


def ingest_strategy_signal(*, session: Session, strategy: Strategy, symbol: str,
                           timeframe: str, bar_time: datetime, fired: FiredRule,
                           now: datetime, replay_window: timedelta) -> service.IngestResult:
    """Queue the strategy's signal through the webhook intake, owned by the strategy's user."""
    body = strategy_signal_body(strategy, symbol, timeframe, bar_time, fired)
    raw = json.dumps(body).encode()
    intake = service.Intake(strategy.user_id, None, NO_AUTH, origin=SignalOrigin.STRATEGY)
    result = service.ingest_signal(session=session, intake=intake, raw_body=raw,
                                   parsed=service.parse_body(raw), now=now,
                                   correlation_id=current_correlation_id(),
                                   replay_window=replay_window)
    log.info("strategy_signal", strategy_id=str(strategy.id), symbol=symbol,
             rule=fired.rule, status=result.status, signal_id=str(result.signal_id))
    return result
