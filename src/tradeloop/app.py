"""The FastAPI application factory."""

from __future__ import annotations

import functools
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path

from fastapi import Depends, FastAPI
from fastapi.staticfiles import StaticFiles

from tradeloop import domains
from tradeloop.accounts.dependencies import SESSION_COOKIE
from tradeloop.csrf import CSRF_COOKIE, CsrfMiddleware
from tradeloop.db import Database
from tradeloop.deps import refuse_unstorable_values
from tradeloop.errors import document_error_responses, install_error_handlers
from tradeloop.events import set_event_delivery
from tradeloop.llm import log_writer
from tradeloop.logs import CorrelationIdMiddleware, configure_logging
from tradeloop.market_data.api import MAX_UPLOAD_BYTES
from tradeloop.nul_parameters import RejectNulParameters
from tradeloop.ratelimit import RateLimiter
from tradeloop.request_bodies import RequestBodyGuard
from tradeloop.security_headers import SecurityHeadersMiddleware
from tradeloop.settings import Settings, get_settings
from tradeloop.tasks import (
    CeleryTaskRunner,
    InlineTaskRunner,
    TaskRunner,
    get_task_runner,
    load_task_modules,
    set_task_runner,
)
from tradeloop.web.assets import mount_vendor_assets
from tradeloop.web.pages import install_page_auth
from tradeloop.webhooks.writer import WebhookWriter

LOG_FLUSH_TIMEOUT_S = 5.0
# Cookies a browser sends by itself: a state-changing request with one needs CSRF proof.
BROWSER_COOKIES = (SESSION_COOKIE, CSRF_COOKIE)
# The webhooks authenticate each request themselves (HMAC or secret, no cookie): no CSRF check,
# and they keep their own body limit (webhooks.service.MAX_BODY_BYTES, a WebhookAnswer 413).
WEBHOOK_PATHS = ("/webhook",)
ROUTE_BODY_LIMITS: dict[str, int | None] = {"/webhook": None, "/api/v1/bars": MAX_UPLOAD_BYTES}


def build_task_runner(settings: Settings, db: Database) -> TaskRunner:
    """Celery when a broker is configured, else the in-process pool and scheduler."""
    load_task_modules(domains.TASK_MODULES)
    if settings.uses_celery:
        from tradeloop.celery_app import make_celery_app

        return CeleryTaskRunner(make_celery_app(settings))
    return InlineTaskRunner(db, settings.task_pool_size)


def add_middleware(app: FastAPI, settings: Settings) -> None:
    """The middleware stack. Each `add_middleware` wraps the ones added before it, so from the
    outside in: security headers on every response (errors included), the correlation id and
    access line, NUL characters in the path or query refused (nul_parameters), body limits,
    then the CSRF check (it may read a form body: inside the limits).
    """
    app.add_middleware(
        CsrfMiddleware, secret_key=functools.partial(settings.secret, "SECRET_KEY"),
        public_url=settings.public_url, cookie_names=BROWSER_COOKIES, exempt_paths=WEBHOOK_PATHS)
    app.add_middleware(RequestBodyGuard, max_bytes=settings.request_body_max_bytes,
                       timeout_s=settings.request_body_timeout_s, route_limits=ROUTE_BODY_LIMITS)
    app.add_middleware(RejectNulParameters)
    app.add_middleware(CorrelationIdMiddleware)
    app.add_middleware(SecurityHeadersMiddleware)


def create_app(settings: Settings | None = None, db: Database | None = None, *,
               run_background: bool = False) -> FastAPI:
    """Build the app. `run_background` starts the in-process scheduler (what `serve` does)."""
    settings = settings or get_settings()
    configure_logging(settings.log_level, settings.log_format)
    db = db or Database.from_url(settings.effective_database_url,
                                 connect_timeout_s=settings.db_connect_timeout_s)

    @asynccontextmanager
    async def lifespan(_app: FastAPI) -> AsyncIterator[None]:
        # The webhook writer (group commit) keeps a connection of its own until shutdown.
        writer = _app.state.webhook_writer = WebhookWriter(db, settings)
        if run_background:
            get_task_runner().start()
        try:
            yield
        finally:
            if run_background:
                get_task_runner().shutdown()
            # Write the execution rows still queued (bounded wait; atexit is the fallback).
            log_writer.shutdown(db, LOG_FLUSH_TIMEOUT_S)
            writer.close()

    # /docs and /redoc are tradeloop's own pages (web/docs.py): assets from npm, no CDN.
    app = FastAPI(title="tradeloop", version="0.1.0", lifespan=lifespan,
                  description="Strategies, backtests, live signals and LLM analysis.",
                  docs_url=None, redoc_url=None,
                  dependencies=[Depends(refuse_unstorable_values)])
    app.state.settings = settings
    app.state.db = db
    app.state.rate_limiter = RateLimiter(settings.rate_limit_storage_url)
    set_task_runner(build_task_runner(settings, db))
    set_event_delivery(settings.events_enabled)
    install_error_handlers(app)
    install_page_auth(app)
    add_middleware(app, settings)
    # Before /static: the first mount that matches a path wins.
    mount_vendor_assets(app, settings.node_modules_dir)
    app.mount("/static", StaticFiles(directory=Path(__file__).parent / "web" / "static"),
              name="static")
    routers = domains.routers()
    for router in routers:
        app.include_router(router)
    document_error_responses(app, routers)
    return app
