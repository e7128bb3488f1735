"""Starting tradeloop: serve (web server), worker and beat (Celery), seed, and the first start
(migrations, first admin, prompt templates, demo data)."""

from __future__ import annotations

from typing import Annotated

import typer

from tradeloop import migrate
from tradeloop.cli.common import (
    console,
    fail,
    open_database,
    progress_bar,
)
from tradeloop.db import Database
from tradeloop.settings import Settings, get_settings


def prepare_database(settings: Settings, db: Database) -> None:
    """Migrate the embedded database; refuse to run on an outdated explicit one."""
    if settings.is_embedded_database:
        migrate.upgrade(settings.effective_database_url)
        return
    if not migrate.is_up_to_date(db.engine):
        current = migrate.current_revision(db.engine) or "empty"
        raise fail(f"the database schema is at {current}, not {migrate.head_revision()}. "
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

    with progress_bar() as progress, db.unit_of_work() as session:
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


def seed(demo: Annotated[bool, typer.Option(
        "--demo", help="Also load the synthetic demo universe and demo strategies")] = False,
         ) -> None:
    """Insert the data a new installation starts with (idempotent; safe to run again)."""
    settings = get_settings()
    db = open_database(settings)
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


def serve(host: str = "127.0.0.1", port: int = 8000,
          workers: Annotated[int, typer.Option(min=1)] = 1) -> None:
    """Start the web server (and, without Celery, the in-process task runner and scheduler)."""
    import uvicorn

    from tradeloop.app import create_app
    from tradeloop.logs import configure_logging

    settings = get_settings()
    configure_logging(settings.log_level, settings.log_format)
    if workers > 1 and not settings.uses_celery:
        raise fail("--workers > 1 needs CELERY_BROKER_URL: the in-process scheduler must run "
                   "in exactly one process")
    db = open_database(settings)
    try:
        prepare_database(settings, db)
    except typer.Exit:
        raise
    except Exception as exc:
        raise fail(f"cannot reach the database: {exc}") from exc
    announce_first_start(settings, db)
    console.print(f"tradeloop on http://{host}:{port}  (API docs: http://{host}:{port}/docs)")
    if workers > 1:
        uvicorn.run("tradeloop.app:create_app", factory=True, host=host, port=port,
                    workers=workers, proxy_headers=True, log_config=None, access_log=False)
        return
    # access_log=False: the app writes its own access line (logs.CorrelationIdMiddleware).
    uvicorn.run(create_app(settings, db, run_background=True), host=host, port=port,
                proxy_headers=True, log_config=None, access_log=False)


def worker(concurrency: Annotated[int, typer.Option(min=1)] = 2,
           pool: str = "prefork", loglevel: str = "INFO") -> None:
    """Run a Celery worker for the declared tasks (needs CELERY_BROKER_URL)."""
    from tradeloop.worker import celery_app, settings

    celery_app.worker_main(["worker", f"--loglevel={loglevel}", f"--concurrency={concurrency}",
                            f"--pool={pool}", "-Q", settings.celery_queue])


def beat(loglevel: str = "INFO") -> None:
    """Run Celery beat, which fires the declared schedules (needs CELERY_BROKER_URL)."""
    from tradeloop.worker import celery_app, settings

    schedule_file = settings.tradeloop_data_dir / "celerybeat-schedule"
    celery_app.start(["beat", f"--loglevel={loglevel}", f"--schedule={schedule_file}"])
