"""Backtest runs as the API and the CLI show them: the answer shapes built from stored rows."""

from __future__ import annotations

from sqlalchemy.orm import Session

from tradeloop.backtest import service
from tradeloop.backtest.models import BacktestRun
from tradeloop.backtest.schemas import RunDetail, RunOptions, StrategyRef


def strategy_ref(run: BacktestRun) -> StrategyRef:
    """The strategy version a run tested, as the answers name it."""
    return StrategyRef(id=run.strategy_id, name=run.strategy_name, version=run.strategy_version)


def run_detail(session: Session, run: BacktestRun, *, cached: bool = False) -> RunDetail:
    """One run with its options, status and metrics grouped by category."""
    result = service.get_result(session=session, run=run)
    return RunDetail(
        id=run.id, status=run.status, strategy=strategy_ref(run), params=run.params,
        symbols=run.symbol_list, cached=cached, metrics=service.grouped_metrics(result),
        timeframe=run.timeframe, start=run.start, end=run.end,
        options=RunOptions.model_validate(run, from_attributes=True),
        cache_hits=run.cache_hits, error=run.error, duration_ms=run.duration_ms,
        inserted_at=run.inserted_at, started_at=run.started_at, finished_at=run.finished_at)
