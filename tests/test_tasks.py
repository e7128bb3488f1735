"""One task declaration, run inline, through the in-process pool, and on a real Celery worker."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import threading
import time
import uuid
from collections.abc import Iterator
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
    get_task,
    load_task_modules,
    registered_schedules,
    run_task,
    set_task_runner,
    task,
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


class Drain:
    """A coalescing task that blocks until released, and records its runs."""

    def __init__(self, *, fail_first: bool = False) -> None:
        self.release, self.started = threading.Event(), threading.Event()
        self.lock = threading.Lock()
        self.running = self.most_at_once = self.runs = 0
        self.fail_first = fail_first

    def __call__(self) -> int:
        with self.lock:
            self.running += 1
            self.most_at_once = max(self.most_at_once, self.running)
        self.started.set()
        try:
            assert self.release.wait(30), "the test never released the drain"
            with self.lock:
                self.runs += 1
                if self.fail_first and self.runs == 1:
                    raise RuntimeError("database unreachable")
            return self.runs
        finally:
            with self.lock:
                self.running -= 1


@pytest.fixture
def drain() -> Iterator[Drain]:
    from tradeloop import tasks

    drain = Drain()
    task("test_coalesced_drain", coalesce=True)(drain)
    yield drain
    tasks._TASKS.pop("test_coalesced_drain", None)


def run_pool() -> InlineTaskRunner:
    # The jobs here never touch it: an in-memory database, whatever the suite runs on.
    return InlineTaskRunner(Database.from_url("sqlite://"), pool_size=4, run_schedules=False)


def test_requests_during_a_coalesced_run_make_it_run_once_more(drain: Drain) -> None:
    runner = run_pool()
    try:
        first = runner.submit("test_coalesced_drain")
        assert drain.started.wait(10)
        # Three webhooks while the drain runs: no second drain beside it, one more run after.
        assert {runner.submit("test_coalesced_drain") for _ in range(3)} == {first}
        future = runner.futures[first]
        drain.release.set()
        assert future.result(timeout=10) == 2
        assert (drain.runs, drain.most_at_once) == (2, 1)
        # Once it has ended, a request starts a new run.
        second = runner.submit("test_coalesced_drain")
        assert second != first
        runner.futures.get(second, future).result(timeout=10)
        assert drain.runs == 3
    finally:
        drain.release.set()
        runner.shutdown()


def test_a_failed_coalesced_run_still_runs_again_when_asked(drain: Drain) -> None:
    drain.fail_first = True
    runner = run_pool()
    try:
        job = runner.submit("test_coalesced_drain")
        assert drain.started.wait(10)
        runner.submit("test_coalesced_drain")
        future = runner.futures[job]
        drain.release.set()
        assert future.result(timeout=10) == 2  # the requested run after the failure
    finally:
        drain.release.set()
        runner.shutdown()


def test_a_coalesced_run_that_could_not_start_is_not_waited_on(drain: Drain) -> None:
    runner = run_pool()
    runner.shutdown()
    for _ in range(2):  # the second request must not be folded into the first, never run
        with pytest.raises(RuntimeError):
            runner.submit("test_coalesced_drain")


def test_other_tasks_still_run_side_by_side() -> None:
    from tradeloop import tasks

    drain = Drain()
    task("test_parallel_job")(drain)
    runner = run_pool()
    try:
        jobs = [runner.submit("test_parallel_job") for _ in range(2)]
        assert len(set(jobs)) == 2
        deadline = time.monotonic() + 10
        while drain.most_at_once < 2 and time.monotonic() < deadline:
            time.sleep(0.01)
        assert drain.most_at_once == 2
    finally:
        drain.release.set()
        runner.shutdown()
        tasks._TASKS.pop("test_parallel_job", None)


def test_signal_drains_coalesce_in_process() -> None:
    """One drain per process (plus one requested run): on SQLite parallel drains only fight
    for the write lock, and under the GIL they add no CPU. Celery workers are processes of
    their own and still drain concurrently (SKIP LOCKED keeps their claims apart)."""
    assert get_task("process_signal_queue").coalesce
    assert registered_schedules()["process-signal-queue"].task_name == "sweep_signal_queue"


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
        # Results are not stored (nothing reads them): the task's effect is the answer.
        deadline = time.monotonic() + 60
        while count_tokens(db) != 1 and time.monotonic() < deadline:
            time.sleep(0.2)
        assert count_tokens(db) == 1
        time.sleep(1)  # a result would be stored by now
        assert celery_app.AsyncResult(job_id).state == "PENDING"  # none is kept
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
