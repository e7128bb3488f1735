"""`tradeloop data`: import and list market data bars."""

from __future__ import annotations

import json
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Annotated

import typer
from rich.table import Table

from tradeloop.cli.common import (
    console,
    describe_import_error,
    fail,
    open_database,
    progress_bar,
)
from tradeloop.db import Database
from tradeloop.settings import Settings, get_settings

data_app = typer.Typer(help="Market data: import and list bars.", no_args_is_help=True)


@data_app.command("import")
def data_import(path: Annotated[Path, typer.Argument(exists=True, dir_okay=False,
                                                     readable=True)],
                symbol: Annotated[str, typer.Option(help="Symbol these bars belong to")],
                timeframe: Annotated[str, typer.Option(help="1m 5m 15m 30m 1h 4h 1d 1w")] = "1d",
                ) -> None:
    """Import a CSV or Parquet file (Yahoo, TradingView or plain OHLCV); all rows or none."""
    from tradeloop.errors import AppError
    from tradeloop.market_data import service as market_data

    settings = get_settings()
    db = open_database(settings)
    try:
        with _event_reactions(settings, db), progress_bar() as progress:
            reading = progress.add_task(f"reading {path.name}", total=None)
            parsed = market_data.parse_bars_file(
                path, filename=path.name, timeframe=timeframe,
                progress=lambda done, total: progress.update(reading, completed=done,
                                                             total=total))
            writing = progress.add_task(f"writing {symbol.upper()} {timeframe}", total=None)
            with db.unit_of_work() as session:
                result = market_data.import_bars(
                    session=session, symbol=symbol, timeframe=timeframe, parsed=parsed,
                    source=f"file:{path.name}",
                    progress=lambda done, total: progress.update(writing, completed=done,
                                                                 total=total))
    except AppError as exc:
        raise fail(describe_import_error(exc)) from exc
    console.print(
        f"{result.symbol} {result.timeframe} ({result.layout} layout): {result.received} bars, "
        f"{result.inserted} new, {result.updated} changed, {result.unchanged} unchanged"
        + (f", {result.dropped_duplicates} exact duplicates dropped"
           if result.dropped_duplicates else "")
        + (" — replaced synthetic demo bars" if result.replaced_synthetic else ""))


@contextmanager
def _event_reactions(settings: Settings, db: Database) -> Iterator[None]:
    """Deliver data events (new bars → marks, live strategies) from this command, and wait
    for the reactions to finish before the process exits."""
    import concurrent.futures

    from tradeloop.app import build_task_runner
    from tradeloop.events import set_event_delivery
    from tradeloop.tasks import set_task_runner

    runner = build_task_runner(settings, db)
    set_task_runner(runner)
    set_event_delivery(settings.events_enabled)
    try:
        yield
        while futures := list(getattr(runner, "futures", {}).values()):
            concurrent.futures.wait(futures)
    finally:
        set_event_delivery(False)
        runner.shutdown()


@data_app.command("list")
def data_list(as_json: Annotated[bool, typer.Option("--json")] = False) -> None:
    """Show every stored series: symbol, timeframe, range, row count, origin."""
    from tradeloop.market_data import service as market_data

    db = open_database(get_settings())
    with db.unit_of_work() as session:
        series = market_data.list_series(session=session)
        rows = [{"symbol": s.symbol, "timeframe": s.timeframe, "rows": s.row_count,
                 "first": s.first_ts.isoformat() if s.first_ts else None,
                 "last": s.last_ts.isoformat() if s.last_ts else None,
                 "source": s.source, "synthetic": s.synthetic} for s in series]
    if as_json:
        console.print_json(json.dumps(rows))
        return
    table = Table("symbol", "timeframe", "rows", "first", "last", "source", title="Bars")
    for row in rows:
        source = ("[yellow]synthetic[/] " if row["synthetic"] else "") + str(row["source"])
        table.add_row(row["symbol"], row["timeframe"], str(row["rows"]), row["first"] or "",
                      row["last"] or "", source)
    console.print(table if rows else "No bars yet: `tradeloop data import` or `seed --demo`.")
