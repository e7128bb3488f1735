"""The `tradeloop` command line."""

from __future__ import annotations

import json
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Annotated, Any

import typer
from rich.console import Console
from rich.table import Table

from tradeloop import migrate
from tradeloop.db import Database
from tradeloop.settings import Settings, get_settings

app = typer.Typer(help="tradeloop: strategies, backtests, live signals and LLM analysis.",
                  no_args_is_help=True, pretty_exceptions_enable=False)
db_app = typer.Typer(help="Database migrations.", no_args_is_help=True)
user_app = typer.Typer(help="User accounts.", no_args_is_help=True)
tasks_app = typer.Typer(help="Background tasks and schedules.", no_args_is_help=True)
data_app = typer.Typer(help="Market data: import and list bars.", no_args_is_help=True)
backtest_app = typer.Typer(help="Backtests and parameter sweeps.", no_args_is_help=True)
app.add_typer(db_app, name="db")
app.add_typer(backtest_app, name="backtest")
app.add_typer(data_app, name="data")
app.add_typer(user_app, name="user")
app.add_typer(tasks_app, name="tasks")
prompts_app = typer.Typer(help="Prompt templates as reviewable files.", no_args_is_help=True)
app.add_typer(prompts_app, name="prompts")

console = Console(soft_wrap=True)
err_console = Console(stderr=True, soft_wrap=True)


def _database(settings: Settings) -> Database:
    return Database.from_url(settings.effective_database_url,
                             connect_timeout_s=settings.db_connect_timeout_s)


def _fail(message: str, code: int = 1) -> typer.Exit:
    err_console.print(f"[bold red]error:[/] {message}")
    return typer.Exit(code)


def prepare_database(settings: Settings, db: Database) -> None:
    """Migrate the embedded database; refuse to run on an outdated explicit one."""
    if settings.is_embedded_database:
        migrate.upgrade(settings.effective_database_url)
        return
    if not migrate.is_up_to_date(db.engine):
        current = migrate.current_revision(db.engine) or "empty"
        raise _fail(f"the database schema is at {current}, not {migrate.head_revision()}. "
                    "Run `tradeloop db upgrade` first (after a backup), then start again.")


def announce_first_start(settings: Settings, db: Database) -> None:
    """Create the first admin if none exists and print its credentials once."""
    from tradeloop.accounts import service as accounts

    with db.unit_of_work() as session:
        created = accounts.ensure_admin(session=session)
    if created:
        email, password = created
        console.print("[bold green]Created the first admin account[/] (shown only once):")
        console.print(f"  email:    {email}\n  password: {password}")
    _seed_prompt_templates(db)
    load_or_extend_demo(db, load_when_empty=settings.load_demo_on_first_start)
    console.print(f"Default webhook secret (WEBHOOK_SECRET): {settings.secret('WEBHOOK_SECRET')}")


def load_or_extend_demo(db: Database, *, load_when_empty: bool) -> None:
    """On a database without bars, load the demo universe and strategies (first start, when
    asked); else bring a loaded demo's series up to the last completed day."""
    from tradeloop.market_data.demo_bars import load_demo_bars
    from tradeloop.seeding import needs_demo

    with db.unit_of_work() as session:
        empty = needs_demo(session)
    if empty and load_when_empty:
        console.print("First start: loading the synthetic demo universe and demo strategies…")
        _seed_demo_with_progress(db)
    elif not empty:
        with db.unit_of_work() as session:
            added = load_demo_bars(session=session, only_stored=True).new_bars
        if added:
            console.print(f"Demo bars brought up to the last completed day: {added} new")


def _seed_demo_with_progress(db: Database) -> None:
    from tradeloop.seeding import seed_demo

    with _progress() as progress, db.unit_of_work() as session:
        task_id = progress.add_task("demo bars", total=None)
        report = seed_demo(session=session, progress=lambda done, total: progress.update(
            task_id, completed=done, total=total))
    for result in report.bars.series:
        console.print(f"  {result.symbol:8} {result.timeframe:3} {result.received:>7} bars "
                      f"({result.inserted} new, {result.updated} changed)")
    for skipped in report.bars.skipped_real:
        console.print(f"  {skipped}: holds real bars, left alone")
    if report.owner_email:
        names = ", ".join(report.strategies_created) or "already present"
        console.print(f"  demo strategies for {report.owner_email}: {names}")
    else:
        console.print("  no admin yet: demo strategies are created with the first admin")


def _progress() -> Any:
    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn

    return Progress(TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn(),
                    console=err_console, transient=True)


@app.command()
def seed(demo: Annotated[bool, typer.Option(
        "--demo", help="Also load the synthetic demo universe and demo strategies")] = False,
         ) -> None:
    """Insert the data a new installation starts with (idempotent; safe to run again)."""
    settings = get_settings()
    db = _database(settings)
    _seed_prompt_templates(db)
    if not demo:
        console.print("Nothing else to seed yet; use --demo for the demo universe.")
        return
    _seed_demo_with_progress(db)


def _seed_prompt_templates(db: Database) -> None:
    from tradeloop.prompts.seeds import seed_prompt_templates

    with db.unit_of_work() as session:
        created = seed_prompt_templates(session=session)
    console.print(f"Prompt templates: {', '.join(created)} added." if created
                  else "Prompt templates: all 6 defaults present.")


@prompts_app.command("export")
def prompts_export(directory: Annotated[Path, typer.Argument(file_okay=False)]) -> None:
    """Write every global template as DIR/<name>.j2 (text) + DIR/<name>.yaml (metadata)."""
    from tradeloop.prompts.files import export_templates

    db = _database(get_settings())
    with db.unit_of_work() as session:
        written = export_templates(session=session, directory=directory)
    console.print(f"Exported {len(written)} templates to {directory}")


@prompts_app.command("import")
def prompts_import(directory: Annotated[Path, typer.Argument(exists=True, file_okay=False)],
                   ) -> None:
    """Create or update global templates from DIR (a changed text becomes a new version)."""
    from tradeloop.errors import AppError
    from tradeloop.prompts.files import TemplateFileError, import_templates

    db = _database(get_settings())
    try:
        with db.unit_of_work() as session:
            report = import_templates(session=session, directory=directory)
    except TemplateFileError as exc:
        raise _fail(str(exc)) from None
    except AppError as exc:  # e.g. a template text with syntax errors (listed by line)
        raise _fail(_describe_import_error(exc)) from None
    console.print(f"created: {len(report.created)}, new versions: {len(report.new_versions)}, "
                  f"unchanged: {len(report.unchanged)}")
    for name in report.created + report.new_versions:
        console.print(f"  {name}")


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
    db = _database(settings)
    try:
        with _event_reactions(settings, db), _progress() as progress:
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
        raise _fail(_describe_import_error(exc)) from exc
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


def _describe_import_error(exc: Any) -> str:
    errors = exc.details.get("errors") if exc.details else None
    if not errors:
        return _describe(exc)
    lines = [f"  line {e['line']}: {e['message']}" for e in errors[:50]]
    more = f"\n  … and {len(errors) - 50} more" if len(errors) > 50 else ""
    return f"{exc.message}\n" + "\n".join(lines) + more


@data_app.command("list")
def data_list(as_json: Annotated[bool, typer.Option("--json")] = False) -> None:
    """Show every stored series: symbol, timeframe, range, row count, origin."""
    from tradeloop.market_data import service as market_data

    db = _database(get_settings())
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


def _owner_id(db: Database, email: str | None) -> Any:
    """The user the CLI acts for: --user EMAIL, else the first admin."""
    from tradeloop.accounts import service as accounts

    with db.unit_of_work() as session:
        user = (accounts.get_user_by_email(session=session, email=email) if email
                else accounts.first_admin(session=session))
        if user is None:
            raise _fail(f"no user {email}" if email else
                        "no admin yet: create one with `tradeloop user create --admin`")
        return user.id


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
            raise _fail(f"{option} {value!r}: {exc.errors()[0]['msg']}") from None

    pairs = [_split_param(p) for p in params or []]
    return RunRequest(strategy=strategy, symbols=[s for s in (symbols or "").split(",") if s],
                      start=moment("--start", start), end=moment("--end", end),
                      params={k: float(v) for k, v in pairs} or None,
                      options=BacktestOptions(**options))


def _split_param(text: str) -> tuple[str, str]:
    name, sep, value = text.partition("=")
    if not sep or not name:
        raise _fail(f"--param takes name=value, got {text!r}")
    return name, value


StrategyOption = Annotated[str, typer.Option("--strategy", help="Strategy name or id")]
SymbolsOption = Annotated[str | None, typer.Option(help="Comma-separated; default: the "
                                                        "definition's symbols")]
UserOption = Annotated[str | None, typer.Option("--user", help="Act as this user (email); "
                                                               "default: the first admin")]
EndFillOption = Annotated[str, typer.Option(
    help="Where a trade still open at the end closes: the last bar's open (backtesting.py's "
         "finalize_trades) or close")]


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
    from tradeloop.backtest.api import run_detail
    from tradeloop.errors import AppError

    settings = get_settings()
    db = _database(settings)
    owner_id = _owner_id(db, user)
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
            with _progress() as progress:
                task_id = progress.add_task("backtest", total=total)
                service.execute_run(db=db, run_id=run_id, progress=lambda symbol: progress.update(
                    task_id, advance=1, description=f"backtest {symbol}"))
        with db.unit_of_work() as session:
            detail = run_detail(session, service.get_run(session=session, owner_id=owner_id,
                                                         run_id=run_id), cached=cached)
    except (AppError, ValueError, TypeError) as exc:
        raise _fail(_describe(exc) if isinstance(exc, AppError) else str(exc)) from exc
    if as_json:
        console.print_json(detail.model_dump_json())
        return
    _print_run(detail)
    if detail.status == "failed":
        raise _fail(detail.error or "the backtest failed")


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
    import time

    from tradeloop.app import build_task_runner
    from tradeloop.backtest import sweeps
    from tradeloop.errors import AppError
    from tradeloop.logs import configure_logging
    from tradeloop.tasks import set_task_runner

    settings = get_settings()
    configure_logging(settings.log_level, "console")  # task logs to stderr, results to stdout
    db = _database(settings)
    owner_id = _owner_id(db, user)
    grid: dict[str, Any] = {}
    for name, value in (_split_param(p) for p in param):
        grid[name] = [float(v) for v in value.split(",")] if "," in value else value
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
        with _progress() as progress:
            task_id = progress.add_task(f"sweep ({created.method})", total=None)
            while True:
                with db.unit_of_work() as session:
                    report = sweeps.sweep_report(session=session, owner_id=owner_id,
                                                 sweep_id=sweep_id)
                progress.update(task_id, **report["progress"])
                if report["finished"]:
                    break
                time.sleep(0.2)
    except (AppError, ValueError) as exc:
        raise _fail(_describe(exc) if isinstance(exc, AppError) else str(exc)) from exc
    finally:
        runner.shutdown()
    if as_json:
        console.print_json(json.dumps(report, default=str))
        return
    if report["error"]:
        raise _fail(f"sweep {sweep_id} failed: {report['error']}")
    table = Table("rank", metric, "params", "run",
                  title=f"Sweep {sweep_id}: {total} combinations, the top {report['top']} run "
                        "in full")
    for rank, entry in enumerate(report["ranking"][:top], start=1):
        table.add_row(str(rank), _format_value(entry["value"]),
                      " ".join(f"{k}={v:g}" for k, v in entry["params"].items()),
                      str(entry["run_id"] or ""))
    console.print(table)


@app.command()
def serve(host: str = "127.0.0.1", port: int = 8000,
          workers: Annotated[int, typer.Option(min=1)] = 1) -> None:
    """Start the web server (and, without Celery, the in-process task runner and scheduler)."""
    import uvicorn

    from tradeloop.app import create_app
    from tradeloop.logs import configure_logging

    settings = get_settings()
    configure_logging(settings.log_level, settings.log_format)
    if workers > 1 and not settings.uses_celery:
        raise _fail("--workers > 1 needs CELERY_BROKER_URL: the in-process scheduler must run "
                    "in exactly one process")
    db = _database(settings)
    try:
        prepare_database(settings, db)
    except typer.Exit:
        raise
    except Exception as exc:
        raise _fail(f"cannot reach the database: {exc}") from exc
    announce_first_start(settings, db)
    console.print(f"tradeloop on http://{host}:{port}  (API docs: http://{host}:{port}/docs)")
    if workers > 1:
        uvicorn.run("tradeloop.app:create_app", factory=True, host=host, port=port,
                    workers=workers, proxy_headers=True, log_config=None, access_log=False)
        return
    # access_log=False: the app writes its own access line (logs.CorrelationIdMiddleware).
    uvicorn.run(create_app(settings, db, run_background=True), host=host, port=port,
                proxy_headers=True, log_config=None, access_log=False)


@app.command()
def worker(concurrency: Annotated[int, typer.Option(min=1)] = 2,
           pool: str = "prefork", loglevel: str = "INFO") -> None:
    """Run a Celery worker for the declared tasks (needs CELERY_BROKER_URL)."""
    from tradeloop.worker import celery_app, settings

    celery_app.worker_main(["worker", f"--loglevel={loglevel}", f"--concurrency={concurrency}",
                            f"--pool={pool}", "-Q", settings.celery_queue])


@app.command()
def beat(loglevel: str = "INFO") -> None:
    """Run Celery beat, which fires the declared schedules (needs CELERY_BROKER_URL)."""
    from tradeloop.worker import celery_app, settings

    schedule_file = settings.tradeloop_data_dir / "celerybeat-schedule"
    celery_app.start(["beat", f"--loglevel={loglevel}", f"--schedule={schedule_file}"])


@db_app.command("upgrade")
def db_upgrade(revision: Annotated[str, typer.Argument()] = "head") -> None:
    """Apply migrations up to REVISION (default: head)."""
    migrate.upgrade(get_settings().effective_database_url, revision)
    console.print(f"database upgraded to {revision}")


@db_app.command("downgrade")
def db_downgrade(revision: str) -> None:
    """Revert migrations down to REVISION (`base` empties the schema)."""
    migrate.downgrade(get_settings().effective_database_url, revision)
    console.print(f"database downgraded to {revision}")


@db_app.command("current")
def db_current() -> None:
    """Show the database's revision and whether it is the latest."""
    db = _database(get_settings())
    current, head = migrate.current_revision(db.engine), migrate.head_revision()
    state = "up to date" if current == head else f"outdated, head is {head}"
    console.print(f"{current or 'empty'} ({state})")


@db_app.command("history")
def db_history() -> None:
    """List every migration, oldest first."""
    for line in migrate.history(get_settings().effective_database_url):
        console.print(line)


@user_app.command("create")
def user_create(email: Annotated[str, typer.Option(prompt=True)],
                password: Annotated[str, typer.Option(prompt=True, hide_input=True,
                                                      confirmation_prompt=True)],
                admin: bool = False) -> None:
    """Create a user account (confirmed), optionally an admin."""
    from tradeloop.accounts import service as accounts
    from tradeloop.db import utcnow
    from tradeloop.errors import AppError

    db = _database(get_settings())
    try:
        with db.unit_of_work() as session:
            user = accounts.create_user(session=session, email=email, password=password,
                                        is_admin=admin)
            user.confirmed_at = utcnow()
    except AppError as exc:
        raise _fail(_describe(exc)) from exc
    console.print(f"created {'admin' if admin else 'user'} {user.email} ({user.id})")


def _describe(exc: Any) -> str:
    fields = exc.details.get("fields") if exc.details else None
    if fields:
        return "; ".join(f"{f['field']}: {f['message']}" for f in fields)
    return str(exc.message)


@tasks_app.command("list")
def tasks_list() -> None:
    """Show declared tasks and their periodic schedules (cron, UTC) with the next run."""
    from tradeloop import domains
    from tradeloop.tasks import load_task_modules, registered_schedules, registered_tasks

    load_task_modules(domains.TASK_MODULES)
    tasks_table = Table("task", "description", title="Tasks")
    for spec in registered_tasks().values():
        tasks_table.add_row(spec.name, spec.description)
    schedules_table = Table("schedule", "task", "cron (UTC)", "next run", title="Schedules")
    for schedule in registered_schedules().values():
        schedules_table.add_row(schedule.name, schedule.task_name, schedule.cron,
                                schedule.next_run().isoformat())
    console.print(tasks_table, schedules_table)


def parse_task_arguments(values: list[str]) -> tuple[list[Any], dict[str, Any]]:
    """`a b key=value` → positional and keyword arguments; JSON values are decoded."""
    args: list[Any] = []
    kwargs: dict[str, Any] = {}
    for value in values:
        key, sep, raw = value.partition("=")
        if sep and key.isidentifier():
            kwargs[key] = _decode(raw)
        else:
            args.append(_decode(value))
    return args, kwargs


def _decode(raw: str) -> Any:
    try:
        return json.loads(raw)
    except json.JSONDecodeError:
        return raw


@tasks_app.command("run")
def tasks_run(name: str, arguments: Annotated[list[str] | None, typer.Argument()] = None) -> None:
    """Run one task now in this process and print its result."""
    from tradeloop import domains
    from tradeloop.logs import configure_logging
    from tradeloop.tasks import load_task_modules, run_task

    settings = get_settings()
    configure_logging(settings.log_level, "console")
    load_task_modules(domains.TASK_MODULES)
    args, kwargs = parse_task_arguments(arguments or [])
    try:
        result = run_task(_database(settings), name, *args, **kwargs)
    except KeyError as exc:
        raise _fail(str(exc.args[0])) from exc
    except TypeError as exc:
        raise _fail(f"bad arguments for {name}: {exc}") from exc
    console.print_json(json.dumps(result, default=str))


def main() -> None:  # pragma: no cover - console entry point
    app(prog_name="tradeloop")


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
