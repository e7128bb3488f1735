"""One task declaration, run inline, through the in-process pool, and on a real Celery worker."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
import uuid
from datetime import timedelta
from pathlib import Path

import pytest
from sqlalchemy import func, select

from tests.conftest import make_settings, require_service
from tradeloop import domains, migrate
from tradeloop.accounts import service
from tradeloop.accounts.models import TokenContext, UserToken
from tradeloop.db import Database
from tradeloop.tasks import (
    InlineTaskRunner,
    enqueue,
    load_task_modules,
    registered_schedules,
    run_task,
    set_task_runner,
)

load_task_modules(domains.TASK_MODULES)


def add_user_with_expired_token(db: Database, email: str) -> None:
    with db.unit_of_work() as session:
        user = service.create_user(session=session, email=email, password="long enough pass")
        service.issue_token(session=session, user=user, context=TokenContext.API,
                            lifetime=timedelta(seconds=-1))
        service.issue_token(session=session, user=user, context=TokenContext.API)


def count_tokens(db: Database) -> int:
    with db.unit_of_work() as session:
        return int(session.scalar(select(func.count()).select_from(UserToken)) or 0)


def test_task_runs_inline(db: Database) -> None:
    add_user_with_expired_token(db, "inline@example.com")
    assert run_task(db, "purge_expired_tokens") == 1
    assert count_tokens(db) == 1


def test_schedule_is_declared_daily() -> None:
    spec = registered_schedules()["purge-expired-tokens-daily"]
    assert spec.task_name == "purge_expired_tokens"
    first = spec.next_run()
    assert spec.next_run(first) - first == timedelta(days=1)


def test_unknown_task_is_a_clear_error(db: Database) -> None:
    with pytest.raises(KeyError, match="purge_expired_tokens"):
        run_task(db, "no_such_task")


class TestEnqueueAfterCommit:
    def run_with_pool(self, db: Database, *, fail: bool) -> None:
        runner = InlineTaskRunner(db, pool_size=1, run_schedules=False)
        set_task_runner(runner)
        try:
            with db.unit_of_work() as session:
                enqueue(session, "purge_expired_tokens")
                if fail:
                    raise RuntimeError("request failed")
        except RuntimeError:
            pass
        finally:
            runner.shutdown()

    def test_job_runs_after_commit(self, db: Database) -> None:
        add_user_with_expired_token(db, "commit@example.com")
        self.run_with_pool(db, fail=False)
        assert count_tokens(db) == 1

    def test_job_is_dropped_on_rollback(self, db: Database) -> None:
        add_user_with_expired_token(db, "rollback@example.com")
        self.run_with_pool(db, fail=True)
        assert count_tokens(db) == 2


@pytest.mark.celery
def test_task_runs_on_a_real_celery_worker(tmp_path: Path) -> None:
    redis_url = require_service("TEST_REDIS_URL", "Celery")
    database_url = f"sqlite:///{tmp_path / 'celery.db'}"
    migrate.upgrade(database_url)
    db = Database.from_url(database_url)
    add_user_with_expired_token(db, "celery@example.com")

    queue = f"tradeloop-test-{uuid.uuid4().hex[:8]}"
    env = {**os.environ, "CELERY_BROKER_URL": redis_url, "CELERY_RESULT_BACKEND": redis_url,
           "DATABASE_URL": database_url, "TRADELOOP_DATA_DIR": str(tmp_path / "data"),
           "CELERY_QUEUE": queue}
    worker = subprocess.Popen(
        [sys.executable, "-m", "tradeloop.cli", "worker", "--pool", "solo", "--concurrency", "1"],
        env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    try:
        from tradeloop.celery_app import make_celery_app
        from tradeloop.tasks import CeleryTaskRunner

        settings = make_settings(tmp_path / "producer", celery_broker_url=redis_url,
                                 celery_result_backend=redis_url, celery_queue=queue,
                                 database_url=database_url)
        celery_app = make_celery_app(settings)
        job_id = CeleryTaskRunner(celery_app).submit("purge_expired_tokens")
        started = time.monotonic()
        assert celery_app.AsyncResult(job_id).get(timeout=60) == 1
        assert time.monotonic() - started < 60
        assert count_tokens(db) == 1
    finally:
        worker.terminate()
        output, _ = worker.communicate(timeout=30)
        db.dispose()
    assert "purge_expired_tokens" in output
    # The worker keeps our logging: structlog's events and Celery's own records are JSON
    # lines (Celery's default handler would have printed the events as Python dicts).
    lines = [json.loads(line) for line in output.splitlines() if line.startswith("{")]
    finished = [line for line in lines if line["event"] == "task_finished"]
    assert finished and finished[0]["logger"] == "tradeloop.tasks"
    assert finished[0]["task"] == "purge_expired_tokens"
    assert any(line["logger"].startswith("celery.") for line in lines)
