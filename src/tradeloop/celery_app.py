"""The Celery application: every declared task and schedule, under the same names."""

from __future__ import annotations

from typing import Any

from celery import Celery
from celery.schedules import crontab

from tradeloop.db import Database
from tradeloop.settings import Settings
from tradeloop.tasks import registered_schedules, registered_tasks, run_task


def make_celery_app(settings: Settings, db: Database | None = None) -> Celery:
    """A Celery app whose tasks call the registered task functions in a unit of work.

    The database is opened lazily in the worker process, so the producer side never connects.
    """
    app = Celery("tradeloop", broker=settings.celery_broker_url,
                 backend=settings.celery_result_backend or settings.celery_broker_url)
    app.conf.update(
        task_serializer="json", result_serializer="json", accept_content=["json"],
        timezone="UTC", enable_utc=True, task_acks_late=True, task_reject_on_worker_lost=True,
        worker_prefetch_multiplier=1, task_default_queue=settings.celery_queue,
        broker_connection_retry_on_startup=True, result_expires=24 * 3600,
        beat_schedule={
            spec.name: {"task": spec.task_name, "schedule": crontab(*spec.cron.split()),
                        "args": list(spec.args)}
            for spec in registered_schedules().values()
        },
    )
    state: dict[str, Database] = {"db": db} if db else {}

    def worker_db() -> Database:
        if "db" not in state:
            state["db"] = Database.from_url(settings.effective_database_url,
                                            connect_timeout_s=settings.db_connect_timeout_s)
        return state["db"]

    for name in registered_tasks():
        _register(app, name, worker_db)
    return app


def _register(app: Celery, name: str, worker_db: Any) -> None:
    @app.task(name=name)
    def run(*args: Any, **kwargs: Any) -> Any:
        return run_task(worker_db(), name, *args, **kwargs)
