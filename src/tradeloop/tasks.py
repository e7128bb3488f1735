"""One way to declare background tasks and periodic schedules, and two runners for them.

A task is a plain function registered with `@task`. Without `CELERY_BROKER_URL` the
`InlineTaskRunner` runs it in a bounded thread pool inside the server process and fires
schedules from an in-process scheduler; with it, `CeleryTaskRunner` sends it to Celery
workers (`tradeloop worker`) and `tradeloop beat` fires the same schedules. Either way the
same function runs, in its own unit of work when it asks for a `session`.
"""

from __future__ import annotations

import contextlib
import importlib
import inspect
import threading
import time
import uuid
from collections.abc import Callable, Iterable
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any, Protocol

import structlog
from sqlalchemy.orm import Session

from tradeloop.db import Database, run_after_commit
from tradeloop.logs import bind_correlation_id

log = structlog.get_logger(__name__)


@dataclass(frozen=True)
class TaskSpec:
    name: str
    func: Callable[..., Any]
    description: str
    needs_session: bool
    needs_db: bool
    coalesce: bool = False  # see task()


@dataclass(frozen=True)
class ScheduleSpec:
    """A periodic run of a task; `cron` is a 5-field crontab expression evaluated in UTC."""

    name: str
    task_name: str
    cron: str
    args: tuple[Any, ...] = field(default_factory=tuple)

    def next_run(self, after: datetime | None = None) -> datetime:
        from apscheduler.triggers.cron import CronTrigger

        """The first run strictly after `after` (default: now)."""
        now = (after or datetime.now(UTC)) + timedelta(microseconds=1)
        trigger = CronTrigger.from_crontab(self.cron, timezone=UTC)
        fire_time = trigger.get_next_fire_time(None, now)
        assert fire_time is not None
        return fire_time


_TASKS: dict[str, TaskSpec] = {}
_SCHEDULES: dict[str, ScheduleSpec] = {}
_START_TASKS: list[str] = []


def task(name: str | None = None, *,
         coalesce: bool = False) -> Callable[[Callable[..., Any]], Callable[..., Any]]:
    """Register a function as a task. A keyword-only `session` parameter gets a unit of work;
    a `db` parameter gets the Database, for tasks that commit in several steps.

    `coalesce`: in the in-process runner, a run submitted while one with the same arguments
    is running does not start another; the running one runs once more when it ends (at most
    one running and one requested per process). For drains, which take whatever is there
    when they look: runs side by side in one process would only compete for the GIL and the
    database's write lock. Celery workers, separate processes, still run them concurrently.
    """

    def register(func: Callable[..., Any]) -> Callable[..., Any]:
        task_name = name or func.__name__
        existing = _TASKS.get(task_name)
        if existing and existing.func is not func:
            raise ValueError(f"task {task_name!r} is declared twice")
        doc = inspect.getdoc(func) or ""
        _TASKS[task_name] = TaskSpec(
            name=task_name,
            func=func,
            description=doc.splitlines()[0] if doc else "",
            needs_session="session" in inspect.signature(func).parameters,
            needs_db="db" in inspect.signature(func).parameters,
            coalesce=coalesce,
        )
        return func

    return register


def schedule(name: str, task_name: str, cron: str, args: Iterable[Any] = ()) -> ScheduleSpec:
    """Register a periodic schedule (`cron` in UTC) for a declared task."""
    spec = ScheduleSpec(name=name, task_name=task_name, cron=cron, args=tuple(args))
    spec.next_run()  # reject a malformed crontab at import time, not at 3 a.m.
    _SCHEDULES[name] = spec
    return spec


def load_task_modules(modules: Iterable[str]) -> None:
    """Import the modules that declare tasks and schedules, and check schedules point at tasks."""
    for module in modules:
        importlib.import_module(module)
    for spec in _SCHEDULES.values():
        if spec.task_name not in _TASKS:
            raise ValueError(f"schedule {spec.name!r} names unknown task {spec.task_name!r}")


def registered_tasks() -> dict[str, TaskSpec]:
    return dict(sorted(_TASKS.items()))


def registered_schedules() -> dict[str, ScheduleSpec]:
    return dict(sorted(_SCHEDULES.items()))


def run_at_start(task_name: str) -> None:
    """Run a declared task each time the in-process runner starts, before the server takes
    requests (crash recovery: nothing of this process can be running yet)."""
    if task_name not in _START_TASKS:
        _START_TASKS.append(task_name)


def registered_start_tasks() -> list[str]:
    return list(_START_TASKS)


def get_task(name: str) -> TaskSpec:
    try:
        return _TASKS[name]
    except KeyError:
        known = ", ".join(sorted(_TASKS)) or "none"
        raise KeyError(f"unknown task {name!r}; known tasks: {known}") from None


def run_task(db: Database, name: str, *args: Any, **kwargs: Any) -> Any:
    """Run a task now in this thread, in its own unit of work, with its own correlation id."""
    spec = get_task(name)
    bind_correlation_id(f"task-{uuid.uuid4().hex[:16]}")
    started = time.perf_counter()
    log.info("task_started", task=name)
    try:
        if spec.needs_session:
            with db.unit_of_work() as session:
                result = spec.func(*args, session=session, **kwargs)
        elif spec.needs_db:
            result = spec.func(*args, db=db, **kwargs)
        else:
            result = spec.func(*args, **kwargs)
    except Exception:
        log.exception("task_failed", task=name,
                      duration_ms=round((time.perf_counter() - started) * 1000, 1))
        raise
    log.info("task_finished", task=name,
             duration_ms=round((time.perf_counter() - started) * 1000, 1))
    return result


class TaskRunner(Protocol):
    def submit(self, name: str, *args: Any, **kwargs: Any) -> str:
        """Queue a task run; returns a job id."""
        ...

    def start(self) -> None: ...

    def shutdown(self) -> None: ...


@dataclass
class _CoalescedRun:
    """A coalescing task's run in progress, and whether another run was asked for since."""

    job_id: str
    again: bool = False


class InlineTaskRunner:
    """Runs tasks in a bounded thread pool and schedules in an in-process scheduler."""

    def __init__(self, db: Database, pool_size: int = 4, *, run_schedules: bool = True):
        self.db = db
        self.pool_size = pool_size
        self.run_schedules = run_schedules
        self._pool = ThreadPoolExecutor(max_workers=pool_size, thread_name_prefix="task")
        self._scheduler: Any = None
        self.futures: dict[str, Future[Any]] = {}
        self._lock = threading.Lock()
        self._coalesced: dict[tuple[Any, ...], _CoalescedRun] = {}

    def submit(self, name: str, *args: Any, **kwargs: Any) -> str:
        if get_task(name).coalesce:
            return self._submit_coalesced(name, args, kwargs)
        return self._start(uuid.uuid4().hex, run_task, self.db, name, *args, **kwargs)

    def _start(self, job_id: str, func: Callable[..., Any], *args: Any, **kwargs: Any) -> str:
        self.futures[job_id] = self._pool.submit(func, *args, **kwargs)
        self.futures[job_id].add_done_callback(lambda _f: self.futures.pop(job_id, None))
        return job_id

    def _submit_coalesced(self, name: str, args: tuple[Any, ...], kwargs: dict[str, Any]) -> str:
        key = (name, args, tuple(sorted(kwargs.items())))
        with self._lock:
            running = self._coalesced.get(key)
            if running is not None:
                running.again = True
                return running.job_id
            running = self._coalesced[key] = _CoalescedRun(uuid.uuid4().hex)
        try:
            return self._start(running.job_id, self._run_coalesced, key, running, name, args,
                               kwargs)
        except BaseException:
            # Not started (the pool is shut down): later requests must not wait on it.
            with self._lock:
                self._coalesced.pop(key, None)
            raise

    def _run_coalesced(self, key: tuple[Any, ...], run: _CoalescedRun, name: str,
                       args: tuple[Any, ...], kwargs: dict[str, Any]) -> Any:
        """Run until no further run was asked for meanwhile. The flag is read and the run
        retired under the same lock submit takes, so a request is never lost between a run's
        last look and its end: it either sets `again` in time or starts a new run."""
        while True:
            try:
                result, error = run_task(self.db, name, *args, **kwargs), None
            except Exception as exc:  # logged by run_task; a requested rerun still happens
                result, error = None, exc
            with self._lock:
                if not run.again:
                    del self._coalesced[key]
                    break
                run.again = False
        if error is not None:
            raise error
        return result

    def start(self) -> None:
        if not self.run_schedules or self._scheduler is not None:
            return
        from apscheduler.schedulers.background import BackgroundScheduler
        from apscheduler.triggers.cron import CronTrigger

        for name in registered_start_tasks():
            self._run_start_task(name)
        self._scheduler = BackgroundScheduler(timezone=UTC)
        for spec in registered_schedules().values():
            self._scheduler.add_job(
                self.submit, CronTrigger.from_crontab(spec.cron, timezone=UTC),
                args=[spec.task_name, *spec.args], id=spec.name, name=spec.name,
                coalesce=True, max_instances=1, misfire_grace_time=3600,
            )
        self._scheduler.start()
        log.info("inline_scheduler_started", schedules=len(registered_schedules()))

    def _run_start_task(self, name: str) -> None:
        # A failed recovery must not keep the server down (run_task has logged it); the
        # periodic schedules remain the safety net.
        with contextlib.suppress(Exception):
            run_task(self.db, name)

    def shutdown(self) -> None:
        if self._scheduler is not None:
            self._scheduler.shutdown(wait=False)
            self._scheduler = None
        self._pool.shutdown(wait=True, cancel_futures=False)


class CeleryTaskRunner:
    """Sends tasks to Celery workers by name; schedules are fired by `tradeloop beat`."""

    def __init__(self, celery_app: Any):
        self.celery_app = celery_app

    def submit(self, name: str, *args: Any, **kwargs: Any) -> str:
        get_task(name)
        # Nothing reads task results (jobs keep their state in the database); storing them
        # would also make each send subscribe to the result first, a round trip more for
        # every accepted webhook.
        result = self.celery_app.send_task(name, args=list(args), kwargs=kwargs,
                                           ignore_result=True)
        return str(result.id)

    def start(self) -> None:
        return None

    def shutdown(self) -> None:
        return None


_runner: TaskRunner | None = None


def set_task_runner(runner: TaskRunner | None) -> None:
    global _runner
    _runner = runner


def get_task_runner() -> TaskRunner:
    if _runner is None:
        raise RuntimeError("no task runner configured for this process")
    return _runner


def enqueue(session: Session, name: str, *args: Any, **kwargs: Any) -> None:
    """Queue a task once the session commits, so it never sees uncommitted or rolled-back rows."""
    get_task(name)
    run_after_commit(session, lambda: submit(name, *args, **kwargs))


def submit(name: str, *args: Any, **kwargs: Any) -> None:
    """Queue a task now (what the caller wrote must be committed already)."""
    get_task(name)
    get_task_runner().submit(name, *args, **kwargs)
