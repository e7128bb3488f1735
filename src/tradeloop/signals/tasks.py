"""Signal processing jobs: drain the outbox after each accepted webhook and every minute."""

from __future__ import annotations

from tradeloop.db import Database
from tradeloop.signals import flows
from tradeloop.tasks import schedule, task


@task()
def process_signal_queue(*, db: Database) -> int:
    """Process queued signals (and requeue abandoned claims); returns how many."""
    return flows.process_signal_queue(db)


# The safety net: picks up signals queued while no worker ran, and crashed claims.
schedule("process-signal-queue", "process_signal_queue", cron="* * * * *")
