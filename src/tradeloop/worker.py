"""Entry point for Celery processes: `celery -A tradeloop.worker worker` or `tradeloop worker`."""

from __future__ import annotations

from typing import Any

from celery.signals import setup_logging

from tradeloop import domains
from tradeloop.celery_app import make_celery_app
from tradeloop.logs import configure_logging
from tradeloop.settings import get_settings
from tradeloop.tasks import CeleryTaskRunner, load_task_modules, set_task_runner

settings = get_settings()
if not settings.uses_celery:
    raise SystemExit("CELERY_BROKER_URL is not set: without it, tasks run inside `tradeloop "
                     "serve` and no separate worker or beat is needed")
configure_logging(settings.log_level, settings.log_format)


@setup_logging.connect
def _keep_tradeloop_logging(loglevel: int | None = None, **_: Any) -> None:
    """With a receiver connected, Celery leaves the root logger alone instead of replacing our
    handler with its own format (which printed structlog's events as Python dicts) and
    redirecting stdout/stderr into it; its --loglevel still applies."""
    configure_logging(loglevel or settings.log_level, settings.log_format)


load_task_modules(domains.TASK_MODULES)
celery_app = make_celery_app(settings)
# Tasks that queue further tasks (a sweep chunk starts the top runs, the lease sweeper restarts
# queues) send them through the same broker.
set_task_runner(CeleryTaskRunner(celery_app))
