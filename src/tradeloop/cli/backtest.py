"""`tradeloop backtest`: run a backtest in this process, or rank a parameter sweep."""

from __future__ import annotations

import json
import uuid
from typing import Annotated, Any

import typer
from rich.table import Table

from tradeloop.cli.common import (
    acting_user_id,
    console,
    describe,
    fail,
    open_database,
    progress_bar,
)
from tradeloop.db import Database
from tradeloop.settings import get_settings

backtest_app = typer.Typer(help="Backtests and parameter sweeps.", no_args_is_help=True)

StrategyOption = Annotated[str, typer.Option("--strategy", help="Strategy name or id")]
SymbolsOption = Annotated[str | None, typer.Option(help="Comma-separated; default: the "
                                                        "definition's symbols")]
UserOption = Annotated[str | None, typer.Option("--user", help="Act as this user (email); "
                                                               "default: the first admin")]
EndFillOption = Annotated[str, typer.Option(
    help="Where a trade still open at the end closes: the last bar's open (backtesting.py's "
         "finalize_trades) or close")]


def _run_request(strategy: str, symbols: str | None, start: str | None, end: str | None,
                 params: list[str] | None, options: dict[str, Any]) -> Any:
    from datetime import datetime

    from pydantic import TypeAdapter, ValidationError

    from tradeloop.backtest.engine import BacktestOptions
    from tradeloop.backtest.service import RunRequest
    from tradeloop.schema_types import UTCTimestamp

    def moment(option: str, value: str | None) -> datetime | None:
        """A date or time read as the API reads it (docs/api.md)."""
        try:
            return TypeAdapter(UTCTimestamp).validate_python(value) if value else None
        except ValidationError as exc:
            raise fail(f"{option} {value!r}: {exc.errors()[0]['msg']}") from None

    pairs = [_split_param(p) for p in params or []]
    return RunRequest(strategy=strategy, symbols=[s for s in (symbols or "").split(",") if s],
                      start=moment("--start", start), end=moment("--end", end),
                      params={k: float(v) for k, v in pairs} or None,
                      options=BacktestOptions(**options))


def _split_param(text: str) -> tuple[str, str]:
    name, sep, value = text.partition("=")
    if not sep or not name:
        raise fail(f"--param takes name=value, got {text!r}")
    return name, value


@backtest_app.command("run")
def backtest_run(
    strategy: StrategyOption, symbols: SymbolsOption = None,
    start: Annotated[str | None, typer.Option(help="ISO date, e.g. 2020-01-01")] = None,
    end: Annotated[str | None, typer.Option(help="ISO date")] = None,
    param: Annotated[list[str] | None, typer.Option(help="Override a param: name=value")] = None,
    cash: float = 10_000.0, commission: float = 0.0, commission_fixed: float = 0.0,
    slippage_bps: float = 0.0, fill: str = "open", size_units: str = "whole",
    end_fill: EndFillOption = "open", user: UserOption = None,
    as_json: Annotated[bool, typer.Option("--json")] = False,
) -> None:
    """Backtest a strategy now, in this process, and print its metrics (cached when known)."""
    from tradeloop.backtest import service
    from tradeloop.backtest.presenters import run_detail
    from tradeloop.errors import AppError

    settings = get_settings()
    db = open_database(settings)
    owner_id = acting_user_id(db, user)
    options = {"cash": cash, "commission": commission, "commission_fixed": commission_fixed,
               "slippage_bps": slippage_bps, "fill": fill, "size_units": size_units,
               "end_fill": end_fill}
    try:
        request = _run_request(strategy, symbols, start, end, param, options)
        with db.unit_of_work() as session:
            submitted = service.submit_run(session=session, owner_id=owner_id, request=request,
                                           max_running=settings.max_concurrent_backtests,
                                           schedule=False)
            run_id, cached, total = submitted.run.id, submitted.cached, len(
                submitted.run.symbol_list)
        if not cached:
            with progress_bar() as progress:
                task_id = progress.add_task("backtest", total=total)
                service.execute_run(db=db, run_id=run_id, progress=lambda symbol: progress.update(
                    task_id, advance=1, description=f"backtest {symbol}"))
        with db.unit_of_work() as session:
            detail = run_detail(session, service.get_run(session=session, owner_id=owner_id,
                                                         run_id=run_id), cached=cached)
    except (AppError, ValueError, TypeError) as exc:
        raise fail(describe(exc) if isinstance(exc, AppError) else str(exc)) from exc
    if as_json:
        console.print_json(detail.model_dump_json())
        return
    _print_run(detail)
    if detail.status == "failed":
        raise fail(detail.error or "the backtest failed")


def _print_run(detail: Any) -> None:
    console.print(f"[bold]{detail.strategy.name}[/] v{detail.strategy.version} "
                  f"{','.join(detail.symbols)} {detail.timeframe} params={detail.params} "
                  f"-> {detail.status}{' (cached)' if detail.cached else ''} "
                  f"run {detail.id}")
    for category, values in detail.metrics.items():
        table = Table("metric", "value", title=category)
        for name, value in values.items():
            table.add_row(name, _format_value(value))
        console.print(table)


def _format_value(value: Any) -> str:
    if isinstance(value, float):
        return f"{value:,.4f}"
    return "" if value is None else str(value)


@backtest_app.command("sweep")
def backtest_sweep(
    strategy: StrategyOption,
    param: Annotated[list[str], typer.Option(help="name=start:stop:step or name=a,b,c")],
    metric: str = "sharpe_ratio", symbols: SymbolsOption = None,
    start: str | None = None, end: str | None = None, cash: float = 10_000.0,
    commission: float = 0.0, fill: str = "open", end_fill: EndFillOption = "open",
    top: int = 20, user: UserOption = None,
    as_json: Annotated[bool, typer.Option("--json")] = False,
) -> None:
    """Rank a param grid by a metric as tasks (in-process pool, or Celery workers); the top
    combinations (--top) run in full."""
    from tradeloop.app import build_task_runner
    from tradeloop.backtest import sweeps
    from tradeloop.errors import AppError
    from tradeloop.logs import configure_logging
    from tradeloop.tasks import set_task_runner

    settings = get_settings()
    configure_logging(settings.log_level, "console")  # task logs to stderr, results to stdout
    db = open_database(settings)
    owner_id = acting_user_id(db, user)
    grid = _sweep_grid(param)
    runner = build_task_runner(settings, db)
    set_task_runner(runner)
    try:
        base = _run_request(strategy, symbols, start, end, None,
                            {"cash": cash, "commission": commission, "fill": fill,
                             "end_fill": end_fill})
        with db.unit_of_work() as session:
            created, _ = sweeps.create_sweep(
                session=session, owner_id=owner_id, base=base, grid=grid, metric=metric,
                max_running=settings.max_concurrent_backtests, workers=settings.task_pool_size,
                top=top)
            sweep_id, total = created.id, created.total
        report = _wait_for_sweep(db, owner_id, sweep_id, created.method)
    except (AppError, ValueError) as exc:
        raise fail(describe(exc) if isinstance(exc, AppError) else str(exc)) from exc
    finally:
        runner.shutdown()
    if as_json:
        console.print_json(json.dumps(report, default=str))
        return
    if report["error"]:
        raise fail(f"sweep {sweep_id} failed: {report['error']}")
    _print_sweep(report, metric, sweep_id, total, top)


def _sweep_grid(param: list[str]) -> dict[str, Any]:
    """--param name=start:stop:step (kept as text for the service) or name=a,b,c (values)."""
    grid: dict[str, Any] = {}
    for name, value in (_split_param(p) for p in param):
        grid[name] = [float(v) for v in value.split(",")] if "," in value else value
    return grid


def _wait_for_sweep(db: Database, owner_id: uuid.UUID, sweep_id: uuid.UUID,
                    method: str) -> dict[str, Any]:
    """Poll the sweep's report with a progress bar until it has finished."""
    import time

    from tradeloop.backtest import sweeps

    with progress_bar() as progress:
        task_id = progress.add_task(f"sweep ({method})", total=None)
        while True:
            with db.unit_of_work() as session:
                report = sweeps.sweep_report(session=session, owner_id=owner_id,
                                             sweep_id=sweep_id)
            progress.update(task_id, **report["progress"])
            if report["finished"]:
                return report
            time.sleep(0.2)


def _print_sweep(report: dict[str, Any], metric: str, sweep_id: uuid.UUID, total: int,
                 top: int) -> None:
    """The ranking as a table, best first, with each combination's run (if run in full)."""
    table = Table("rank", metric, "params", "run",
                  title=f"Sweep {sweep_id}: {total} combinations, the top {report['top']} run "
                        "in full")
    for rank, entry in enumerate(report["ranking"][:top], start=1):
        table.add_row(str(rank), _format_value(entry["value"]),
                      " ".join(f"{k}={v:g}" for k, v in entry["params"].items()),
                      str(entry["run_id"] or ""))
    console.print(table)
