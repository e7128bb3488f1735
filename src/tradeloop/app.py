"""The FastAPI application factory."""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import ExitStack, asynccontextmanager
from pathlib import Path

from fastapi import Depends, FastAPI
from fastapi.staticfiles import StaticFiles

from tradeloop import domains
from tradeloop.db import Database
from tradeloop.deps import refuse_non_finite_numbers
from tradeloop.errors import install_error_handlers
from tradeloop.events import set_event_delivery
from tradeloop.llm import log_writer
from tradeloop.logs import CorrelationIdMiddleware, configure_logging
from tradeloop.ratelimit import RateLimiter
from tradeloop.settings import Settings, get_settings
from tradeloop.tasks import (
    CeleryTaskRunner,
    InlineTaskRunner,
    TaskRunner,
    get_task_runner,
    load_task_modules,
    set_task_runner,
)

LOG_FLUSH_TIMEOUT_S = 5.0


def build_task_runner(settings: Settings, db: Database) -> TaskRunner:
    """Celery when a broker is configured, else the in-process pool and scheduler."""
    load_task_modules(domains.TASK_MODULES)
    if settings.uses_celery:
        from tradeloop.celery_app import make_celery_app

        return CeleryTaskRunner(make_celery_app(settings))
    return InlineTaskRunner(db, settings.task_pool_size)


def create_app(settings: Settings | None = None, db: Database | None = None, *,
               run_background: bool = False) -> FastAPI:
    """Build the app. `run_background` starts the in-process scheduler (what `serve` does)."""
    settings = settings or get_settings()
    configure_logging(settings.log_level, settings.log_format)
    db = db or Database.from_url(settings.effective_database_url,
                                 connect_timeout_s=settings.db_connect_timeout_s)

    @asynccontextmanager
    async def lifespan(_app: FastAPI) -> AsyncIterator[None]:
        if run_background:
            get_task_runner().start()
        try:
            yield
        finally:
            if run_background:
                get_task_runner().shutdown()
            # Write the execution rows still queued (bounded wait; atexit is the fallback).
            log_writer.shutdown(db, LOG_FLUSH_TIMEOUT_S)
            _app.state.resources.close()

    app = FastAPI(title="tradeloop", version="0.1.0", lifespan=lifespan,
                  description="Strategies, backtests, live signals and LLM analysis.",
                  dependencies=[Depends(refuse_non_finite_numbers)])
    app.state.settings = settings
    app.state.db = db
    # What the app holds open until shutdown (the webhook writer's connection).
    app.state.resources = ExitStack()
    app.state.rate_limiter = RateLimiter(settings.rate_limit_storage_url)
    set_task_runner(build_task_runner(settings, db))
    set_event_delivery(settings.events_enabled)
    install_error_handlers(app)
    app.add_middleware(CorrelationIdMiddleware)
    app.mount("/static", StaticFiles(directory=Path(__file__).parent / "web" / "static"),
              name="static")
    for router in domains.routers():
        app.include_router(router)
    return app
