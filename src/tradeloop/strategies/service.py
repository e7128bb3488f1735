"""Strategies: create, read, update with optimistic locking, version, validate, syntax-test.

Every stored definition is valid (create and update refuse invalid ones with every error),
so whatever is stored can be backtested and run. Only drafts take definition edits: a version
that was backtested or activated stays exactly what was tested; change it through a new
version. Updates are conditional on the caller's `lock_version` in one UPDATE statement, so
two concurrent edits can never both win.
"""

from __future__ import annotations

import time
import uuid
from dataclasses import dataclass
from datetime import datetime
from typing import Any

import numpy as np
import structlog
from sqlalchemy import func, select, update
from sqlalchemy.orm import Session

from tradeloop.db import utcnow
from tradeloop.errors import AppError, ConflictError, NotFoundError
from tradeloop.market_data import service as market_data
from tradeloop.ownership import OwnedRepository
from tradeloop.strategies.compiler import SIGNAL_NAMES, CompiledStrategy, compile_strategy
from tradeloop.strategies.definition import (
    StrategyDefinition,
    StrategyDefinitionError,
    parse_definition,
)
from tradeloop.strategies.models import Strategy, StrategyStatus

log = structlog.get_logger(__name__)

RECENT_SIGNALS = 10


class StrategyRepository(OwnedRepository[Strategy]):
    model = Strategy
    label = "Strategy"


class InvalidDefinitionError(AppError):
    status_code = 422
    code = "invalid_definition"

    def __init__(self, exc: StrategyDefinitionError):
        super().__init__("The strategy definition is invalid",
                         details={"errors": [e.as_dict() for e in exc.errors]})


def checked_definition(text: str) -> StrategyDefinition:
    """The parsed definition, or a 422 listing every error with its line and column."""
    try:
        return parse_definition(text)
    except StrategyDefinitionError as exc:
        raise InvalidDefinitionError(exc) from None


def compiled(strategy: Strategy, params: dict[str, Any] | None = None) -> CompiledStrategy:
    """The stored strategy bound to `params` (its own params by default)."""
    return compile_definition(strategy.definition, params)


def compile_definition(definition: str,
                       params: dict[str, Any] | None = None) -> CompiledStrategy:
    """A definition's text bound to `params`; 422 listing every error otherwise."""
    try:
        return compile_strategy(parse_definition(definition), params)
    except StrategyDefinitionError as exc:
        raise InvalidDefinitionError(exc) from None


def create_strategy(*, session: Session, owner_id: uuid.UUID, definition: str,
                    metadata: dict[str, Any] | None = None) -> Strategy:
    """Store version 1 of a new strategy named by its definition."""
    parsed = checked_definition(definition)
    repository = StrategyRepository(session, owner_id)
    _ensure_name_free(repository, parsed.name, 1)
    return repository.add(Strategy(name=parsed.name, version=1, definition=definition,
                                   metadata_=metadata or {},
                                   status=StrategyStatus.DRAFT.value, lock_version=1))


def _ensure_name_free(repository: StrategyRepository, name: str, version: int,
                      ignore: uuid.UUID | None = None) -> None:
    clash = repository.list(Strategy.name == name, Strategy.version == version,
                            *([Strategy.id != ignore] if ignore else []), limit=1)
    if clash:
        raise ConflictError(
            f"You already have version {version} of a strategy named '{name}'; rename it or "
            "create a new version of the existing one", code="name_taken",
            details={"name": name, "version": version, "existing_id": str(clash[0].id)})


def get_strategy(*, session: Session, owner_id: uuid.UUID, strategy_id: uuid.UUID) -> Strategy:
    return StrategyRepository(session, owner_id).get(strategy_id)


def find_by_name_or_id(*, session: Session, owner_id: uuid.UUID, name_or_id: str) -> Strategy:
    """A strategy by id, or the latest version with that name."""
    repository = StrategyRepository(session, owner_id)
    try:
        return repository.get(uuid.UUID(name_or_id))
    except ValueError:
        pass
    found = repository.list(Strategy.name == name_or_id, order_by=[Strategy.version.desc()],
                            limit=1)
    if not found:
        raise NotFoundError("Strategy not found", details={"id": name_or_id})
    return found[0]


def list_strategies(*, session: Session, owner_id: uuid.UUID, status: str | None = None,
                    name: str | None = None, limit: int = 50,
                    offset: int = 0) -> tuple[list[Strategy], int]:
    """The owner's strategies, newest first, and how many match in all."""
    return StrategyRepository(session, owner_id).page(
        {Strategy.status: status, Strategy.name: name},
        order_by=[Strategy.updated_at.desc(), Strategy.id], limit=limit, offset=offset)


@dataclass(frozen=True)
class StrategyChanges:
    lock_version: int
    definition: str | None = None
    metadata: dict[str, Any] | None = None
    status: str | None = None


def update_strategy(*, session: Session, owner_id: uuid.UUID, strategy_id: uuid.UUID,
                    changes: StrategyChanges) -> Strategy:
    """Apply `changes` if `lock_version` is still current; 409 version_conflict otherwise."""
    repository = StrategyRepository(session, owner_id)
    strategy = repository.get(strategy_id)
    # Computed by the database from the stored value: the caller's number, at the top of its
    # range, must not overflow the column before the comparison refuses it.
    values: dict[str, Any] = {"lock_version": Strategy.lock_version + 1, "updated_at": utcnow()}
    if changes.definition is not None and changes.definition != strategy.definition:
        values |= _definition_change(repository, strategy, changes.definition)
    if changes.metadata is not None:
        values["metadata_"] = changes.metadata
    if changes.status is not None:
        _check_status_change(strategy, changes.status)
        values["status"] = changes.status
    result = session.execute(
        update(Strategy)
        .where(Strategy.id == strategy_id, Strategy.user_id == owner_id,
               Strategy.lock_version == changes.lock_version)
        .values(**values).execution_options(synchronize_session=False))
    if result.rowcount == 0:  # type: ignore[attr-defined]
        session.refresh(strategy)
        raise ConflictError(
            "This strategy was changed since you loaded it (someone else, or another tab). "
            "Reload it, reapply your edit and save again",
            code="version_conflict",
            details={"current_lock_version": strategy.lock_version,
                     "your_lock_version": changes.lock_version})
    session.refresh(strategy)
    return strategy


def _definition_change(repository: StrategyRepository, strategy: Strategy,
                       definition: str) -> dict[str, Any]:
    if strategy.status != StrategyStatus.DRAFT:
        raise ConflictError(
            f"Version {strategy.version} is {strategy.status}, so its definition is frozen; "
            f"create a new version (POST /api/v1/strategies/{strategy.id}/versions) to change it",
            code="not_editable", details={"status": strategy.status})
    parsed = checked_definition(definition)
    if parsed.name != strategy.name:
        _ensure_name_free(repository, parsed.name, strategy.version, ignore=strategy.id)
    return {"definition": definition, "name": parsed.name}


def _check_status_change(strategy: Strategy, status: str) -> None:
    if strategy.status == StrategyStatus.ARCHIVED and status != StrategyStatus.ARCHIVED:
        raise ConflictError("An archived version stays archived; create a new version instead",
                            code="archived")


def set_status(*, session: Session, strategy: Strategy, status: StrategyStatus) -> Strategy:
    """Change the status as the system (activation), bumping lock_version like any edit."""
    strategy.status = status.value
    strategy.lock_version += 1
    strategy.updated_at = utcnow()
    session.flush()
    return strategy


def active_strategies_for(*, session: Session, symbol: str,
                          timeframe: str) -> list[tuple[Strategy, CompiledStrategy]]:
    """Every user's active strategies that trade `symbol` on `timeframe`, compiled.

    Not user-scoped on purpose: live evaluation on new bars serves all owners at once; each
    result carries its strategy, whose `user_id` owns whatever it produces.
    """
    symbol = market_data.normalize_symbol(symbol)
    found = []
    for strategy in session.scalars(select(Strategy).where(
            Strategy.status == StrategyStatus.ACTIVE.value).order_by(Strategy.id)):
        try:
            compiled_strategy = compiled(strategy)
        except InvalidDefinitionError as exc:  # stored valid, refused by a stricter parser
            log.error("active_strategy_invalid", strategy_id=str(strategy.id),
                      errors=exc.details.get("errors"))
            continue
        definition = compiled_strategy.definition
        if definition.timeframe == timeframe and symbol in definition.symbols:
            found.append((strategy, compiled_strategy))
    return found


def delete_strategy(*, session: Session, owner_id: uuid.UUID, strategy_id: uuid.UUID) -> None:
    StrategyRepository(session, owner_id).delete(strategy_id)


def create_version(*, session: Session, owner_id: uuid.UUID,
                   strategy_id: uuid.UUID) -> Strategy:
    """Copy a strategy into a new draft numbered after the newest version of its name."""
    repository = StrategyRepository(session, owner_id)
    source = repository.get(strategy_id)
    newest = session.scalar(select(func.max(Strategy.version)).where(
        Strategy.user_id == owner_id, Strategy.name == source.name)) or source.version
    return repository.add(Strategy(
        name=source.name, version=newest + 1, definition=source.definition,
        metadata_={**source.metadata_, "copied_from": str(source.id)},
        status=StrategyStatus.DRAFT.value, lock_version=1))


@dataclass(frozen=True)
class SyntaxTestOptions:
    symbols: list[str] | None = None
    params: dict[str, Any] | None = None
    start: datetime | None = None
    end: datetime | None = None
    bars: int = 1000


def syntax_test(*, session: Session, owner_id: uuid.UUID, strategy_id: uuid.UUID,
                options: SyntaxTestOptions) -> dict[str, Any]:
    """Evaluate the strategy on stored bars and count the signals it gives per symbol."""
    started = time.perf_counter()
    strategy = get_strategy(session=session, owner_id=owner_id, strategy_id=strategy_id)
    compiled_strategy = compiled(strategy, options.params)
    timeframe = compiled_strategy.definition.timeframe
    symbols = options.symbols or list(compiled_strategy.definition.symbols)
    series = _load_all(session, symbols, timeframe, options)
    reports = [signal_report(bars, compiled_strategy) for bars in series]
    return {"strategy_id": strategy.id, "version": strategy.version, "timeframe": timeframe,
            "params": compiled_strategy.params, "symbols": reports,
            "duration_ms": round((time.perf_counter() - started) * 1000, 1)}


def _load_all(session: Session, symbols: list[str], timeframe: str,
              options: SyntaxTestOptions) -> list[market_data.BarArrays]:
    loaded = [market_data.load_bars(session=session, symbol=s, timeframe=timeframe,
                                    start=options.start, end=options.end, limit=options.bars,
                                    required=False) for s in symbols]
    missing = [bars.symbol for bars in loaded if len(bars) == 0]
    if missing:
        raise market_data.NoBarsError(
            f"No {timeframe} bars for {', '.join(missing)}"
            + (" in the requested range" if options.start or options.end else "")
            + ". Import them (`tradeloop data import FILE --symbol SYMBOL --timeframe "
            f"{timeframe}` or POST /api/v1/bars) or test on other symbols",
            details={"missing": missing, "timeframe": timeframe})
    return loaded


def signal_report(bars: market_data.BarArrays, strategy: CompiledStrategy) -> dict[str, Any]:
    """The syntax test of one symbol: its signals counted, and the most recent ones."""
    signals = strategy.evaluate(bars.as_mapping())
    counts = signals.counts()
    fired = [(index, name) for name in SIGNAL_NAMES
             for index in np.flatnonzero(getattr(signals, name))]
    recent = sorted(fired)[-RECENT_SIGNALS:]
    at = market_data.utc_datetime
    return {
        "symbol": bars.symbol, "bars": len(bars), "first_ts": at(bars.ts[0]),
        "last_ts": at(bars.ts[-1]),
        "entries_long": counts["entry_long"], "exits_long": counts["exit_long"],
        "entries_short": counts["entry_short"], "exits_short": counts["exit_short"],
        "recent_signals": [{"ts": at(bars.ts[i]), "signal": name} for i, name in recent],
    }
