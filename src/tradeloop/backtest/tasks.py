"""Backtest jobs: drain a user's queue of runs within their concurrency limit, and give
runs abandoned by a killed worker back to the queue."""

from __future__ import annotations

import uuid

from tradeloop.backtest import service, sweeps
from tradeloop.db import Database
from tradeloop.settings import get_settings
from tradeloop.tasks import schedule, task


@task()
def process_backtest_queue(user_id: str, max_running: int, *, db: Database) -> int:
    """Run the user's queued backtests while fewer than max_running are running."""
    return service.process_queue(db=db, owner_id=uuid.UUID(user_id), max_running=max_running,
                                 lease=service.Lease.from_settings(get_settings()))


@task()
def requeue_stale_backtests(*, db: Database) -> int:
    """Requeue (or fail) runs whose claim outlived BACKTEST_LEASE_SECONDS; restart queues."""
    settings = get_settings()
    with db.unit_of_work() as session:
        owners = service.release_expired_claims(
            session=session, lease=service.Lease.from_settings(settings))
        for owner in owners:
            service.start_queue(session=session, owner_id=owner,
                                max_running=settings.max_concurrent_backtests)
    return len(owners)


@task()
def rank_sweep_chunk(sweep_id: str, first: int, stop: int, *, db: Database) -> int:
    """Rank combinations [first, stop) of a sweep; the last chunk starts the top runs."""
    settings = get_settings()
    return sweeps.rank_chunk(db=db, sweep_id=uuid.UUID(sweep_id), first=first, stop=stop,
                             max_running=settings.max_concurrent_backtests,
                             workers=settings.task_pool_size)


# The safety net for killed workers; claim_next_run also releases its owner's stale runs.
schedule("requeue-stale-backtests", "requeue_stale_backtests", cron="* * * * *")
