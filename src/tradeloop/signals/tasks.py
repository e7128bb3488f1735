"""Signal jobs: drain the outbox at server start, after each accepted webhook and every
minute; react to new bars (live strategies, marks). Marking every minute: trading.tasks."""

from __future__ import annotations

from tradeloop.db import Database
from tradeloop.events import BARS_CHANGED, react
from tradeloop.signals import flows
from tradeloop.tasks import get_task_runner, run_at_start, schedule, task


# Coalesced: every accepted webhook asks for a drain, and one drain per process takes them
# all in arrival order; parallel drains in one process would only queue on the GIL and, on
# SQLite, on the write lock (whose busy handler sleeps in growing steps).
@task(coalesce=True)
def process_signal_queue(*, db: Database) -> int:
    """Process queued signals; returns how many."""
    return flows.process_signal_queue(db)


@task()
def sweep_signal_queue(*, db: Database) -> int:
    """Requeue claims abandoned by a crashed worker, then drain the queue (in the background);
    returns how many claims were requeued."""
    requeued = flows.requeue_abandoned_claims(db)
    # The drain itself is the coalesced task: never a second one beside a running drain.
    get_task_runner().submit(process_signal_queue.__name__)
    return requeued


@task()
def react_to_new_bars(*, db: Database, symbol: str, timeframe: str, first_written: str,
                      last_written: str, series_last: str) -> dict[str, int]:
    """New bars: run active strategies on the newest bar, then mark the symbol's positions."""
    del first_written  # part of the event; only the newest bar matters here
    return flows.react_to_new_bars(db, symbol=symbol, timeframe=timeframe,
                                   last_written=last_written, series_last=series_last)


# The safety net: picks up signals queued while no worker ran, and crashed claims.
schedule("process-signal-queue", "sweep_signal_queue", cron="* * * * *")
react(BARS_CHANGED, "react_to_new_bars")


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
