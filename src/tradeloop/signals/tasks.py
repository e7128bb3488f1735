"""Signal processing jobs: drain the outbox at server start, after each accepted webhook and
every minute."""

from __future__ import annotations

from tradeloop.db import Database
from tradeloop.signals import flows
from tradeloop.tasks import get_task_runner, run_at_start, schedule, task


@task()
def process_signal_queue(*, db: Database) -> int:
    """Process queued signals (and requeue abandoned claims); returns how many."""
    return flows.process_signal_queue(db)


# The safety net: picks up signals queued while no worker ran, and crashed claims.
schedule("process-signal-queue", "process_signal_queue", cron="* * * * *")


@task()
def recover_signal_queue(*, db: Database) -> int:
    """At server start: requeue claims a killed server left `processing`, then drain the
    queue in the background; returns how many claims were requeued. Not for running by hand
    while a server processes signals: its live claims would be requeued too."""
    requeued = flows.requeue_interrupted(db)
    get_task_runner().submit(process_signal_queue.__name__)
    return requeued


# A restart resumes at once what a crash interrupted (SPEC §6), not at the next schedule.
run_at_start(recover_signal_queue.__name__)
