"""Backtest API (SPEC §5): run (cached), results, trades, equity, sweeps, cache metrics, and
strategy activation (it needs a finished backtest, so it lives here, at the strategies URL)."""

from __future__ import annotations

import uuid
from typing import Annotated, Any

from fastapi import APIRouter, Query, Response, status
from fastapi.responses import JSONResponse

from tradeloop.accounts.dependencies import AggregateScopeDep, CurrentUser
from tradeloop.backtest import service, sweeps
from tradeloop.backtest.engine import BacktestOptions
from tradeloop.backtest.presenters import run_detail, strategy_ref
from tradeloop.backtest.schemas import (
    EquityCurve,
    EquityPoint,
    RunAccepted,
    RunCreate,
    RunDetail,
    RunList,
    RunOptions,
    RunSummary,
    SweepAccepted,
    SweepCreate,
    SweepReport,
    TradeList,
    TradeRead,
)
from tradeloop.deps import SessionDep, SettingsDep
from tradeloop.errors import error_responses
from tradeloop.market_data.service import utc_datetime
from tradeloop.schema_types import Limit, Offset
from tradeloop.strategies.schemas import StrategyRead

# The module's router is composed at the bottom from these two: activation first, where the
# strategies router ended before it moved here, so the OpenAPI document keeps its order.
activation = APIRouter(prefix="/api/v1/strategies", tags=["strategies"])
backtests = APIRouter(tags=["backtests"])
PREFIX = "/api/v1/backtest"


def run_request(body: RunCreate) -> service.RunRequest:
    options = BacktestOptions(**body.model_dump(include=set(RunOptions.model_fields)))
    return service.RunRequest(strategy=body.strategy_ref, symbols=body.symbols,
                              start=body.start_date, end=body.end_date, params=body.params,
                              options=options)


@backtests.post(f"{PREFIX}/run", status_code=status.HTTP_202_ACCEPTED,
             responses={200: {"model": RunDetail, "description": "Cached result"},
                        **error_responses(404)})
def run(body: RunCreate, user: CurrentUser, session: SessionDep,
        settings: SettingsDep) -> Any:
    """Queue a backtest (202 with its id), or answer 200 with the stored identical result."""
    submitted = service.submit_run(session=session, owner_id=user.id,
                                   request=run_request(body),
                                   max_running=settings.max_concurrent_backtests)
    if submitted.cached:
        detail = run_detail(session, submitted.run, cached=True)
        return JSONResponse(detail.model_dump(mode="json"))
    return RunAccepted(id=submitted.run.id, status=submitted.run.status, cached=False)


@backtests.get(f"{PREFIX}/results")
def list_results(user: CurrentUser, session: SessionDep,
                 limit: Limit = 20,
                 offset: Offset = 0,
                 before: Annotated[str | None, Query(
                     max_length=200, description="next_cursor of the previous page")] = None,
                 strategy_id: uuid.UUID | None = None, symbol: str | None = None,
                 status_: Annotated[str | None, Query(alias="status")] = None) -> RunList:
    """The caller's runs, newest first, with headline metrics; page with `before=` (the
    previous page's `next_cursor`, constant time at any depth) or `offset=`."""
    page = service.list_runs(
        session=session, owner_id=user.id, limit=limit, offset=offset,
        before=service.Cursor.decode(before) if before else None, strategy_id=strategy_id,
        symbol=symbol, status=status_)
    return RunList(results=[RunSummary(
        id=run.id, status=run.status, strategy=strategy_ref(run), symbols=run.symbol_list,
        timeframe=run.timeframe, params=run.params, inserted_at=run.inserted_at,
        duration_ms=run.duration_ms, summary=summary) for run, summary in page.rows],
        limit=limit, offset=offset, next_cursor=page.next_cursor)


@backtests.get(f"{PREFIX}/results/{{run_id}}")
def get_result(run_id: uuid.UUID, user: CurrentUser, session: SessionDep) -> RunDetail:
    """One run: status, options, error, and its metrics grouped by category."""
    return run_detail(session, service.get_run(session=session, owner_id=user.id, run_id=run_id))


@backtests.get(f"{PREFIX}/results/{{run_id}}/trades")
def get_trades(run_id: uuid.UUID, user: CurrentUser, session: SessionDep,
               limit: Annotated[int, Query(ge=1, le=5000)] = 500,
               offset: Offset = 0) -> TradeList:
    run = service.get_run(session=session, owner_id=user.id, run_id=run_id)
    trades, total = service.list_trades(session=session, run=run, limit=limit, offset=offset)
    return TradeList(trades=[TradeRead(
        seq=t.seq, symbol=t.symbol, direction="long" if t.direction > 0 else "short",
        size=t.size, entry_time=t.entry_time, exit_time=t.exit_time, entry_price=t.entry_price,
        exit_price=t.exit_price, commission=t.commission, pnl=t.pnl, return_pct=t.return_pct,
        exit_reason=t.exit_reason) for t in trades], total=total, limit=limit, offset=offset)


@backtests.get(f"{PREFIX}/results/{{run_id}}/equity")
def get_equity(run_id: uuid.UUID, user: CurrentUser, session: SessionDep,
               points: Annotated[int | None, Query(ge=2, le=100_000)] = 2000) -> EquityCurve:
    """The equity curve, thinned evenly to at most `points` points for charts."""
    run = service.get_run(session=session, owner_id=user.id, run_id=run_id)
    result = service.get_result(session=session, run=run)
    if result is None:
        return EquityCurve(id=run.id, points=[])
    ts, equity = service.equity_curve(result, points)
    return EquityCurve(id=run.id, points=[EquityPoint(ts=utc_datetime(t), equity=float(e))
                                          for t, e in zip(ts, equity, strict=True)])


@backtests.delete(f"{PREFIX}/results/{{run_id}}", status_code=status.HTTP_204_NO_CONTENT)
def delete_result(run_id: uuid.UUID, user: CurrentUser, session: SessionDep) -> Response:
    service.delete_run(session=session, owner_id=user.id, run_id=run_id)
    return Response(status_code=status.HTTP_204_NO_CONTENT)


@backtests.post(f"{PREFIX}/sweep", status_code=status.HTTP_202_ACCEPTED,
             responses=error_responses(404))
def sweep(body: SweepCreate, user: CurrentUser, session: SessionDep,
          settings: SettingsDep) -> SweepAccepted:
    """Rank a param grid by a metric (vectorised where the metric allows) and run the top
    combinations in full; follow it at GET /api/v1/backtest/sweep/{id}."""
    created, cached = sweeps.create_sweep(
        session=session, owner_id=user.id, base=run_request(body), grid=body.grid,
        metric=body.metric, max_running=settings.max_concurrent_backtests,
        workers=settings.task_pool_size, top=body.top, descending=body.descending)
    return SweepAccepted(id=created.id, combinations=created.total, method=created.method,
                         runs=created.top, top=created.top, cached=cached)


@backtests.get(f"{PREFIX}/sweep/{{sweep_id}}")
def sweep_report(sweep_id: uuid.UUID, user: CurrentUser, session: SessionDep,
                 metric: str | None = None, descending: bool | None = None) -> SweepReport:
    """Progress and the finished runs ranked by the metric, best first."""
    return SweepReport.model_validate(sweeps.sweep_report(
        session=session, owner_id=user.id, sweep_id=sweep_id, metric=metric,
        descending=descending))


@backtests.get("/metrics/backtests")
def backtest_metrics(scope: AggregateScopeDep, session: SessionDep) -> dict[str, Any]:
    """Your runs by status and your result cache's hit rate (every user's: `scope=all`,
    admins and the METRICS_TOKEN)."""
    return {**service.cache_stats(session=session, owner_id=scope.owner_id),
            "scope": scope.label}


@activation.post("/{strategy_id}/activate", responses=error_responses(409))
def activate(strategy_id: uuid.UUID, user: CurrentUser, session: SessionDep) -> StrategyRead:
    """Make this version evaluate live bars; 409 unless a backtest of it finished."""
    strategy = service.activate_strategy(session=session, owner_id=user.id,
                                         strategy_id=strategy_id)
    return StrategyRead.model_validate(strategy)


# The routes themselves, not include_router: that nests the two routers, and the error
# statuses are documented per route (errors.document_error_responses) of `router.routes`.
router = APIRouter()
router.routes.extend([*activation.routes, *backtests.routes])
