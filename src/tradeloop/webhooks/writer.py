"""The webhook writer: concurrent webhooks share one committed transaction (group commit).

Built and closed by the app's lifespan (tradeloop.app). Batches go one at a time through a
connection kept for them (no pool checkout or pre-ping round trip per batch); the retries of
a failed batch run side by side on pooled connections. Answers are sent only after the commit:
ACCEPTED means durably stored.
"""

from __future__ import annotations

import functools
from collections.abc import Sequence
from datetime import timedelta

from tradeloop.batching import GroupCommit
from tradeloop.db import Database
from tradeloop.settings import Settings
from tradeloop.tasks import submit
from tradeloop.webhooks import service
from tradeloop.webhooks.repository import IntakeStore

# The signals domain's drain task, by its (stable) task name: webhooks sit below signals.
PROCESS_SIGNAL_QUEUE = "process_signal_queue"


class WebhookWriter:
    """Feeds deliveries to the intake in batches; `submit` answers once its batch committed."""

    def __init__(self, db: Database, settings: Settings):
        self._pinned = db.pinned_driver()
        self._commit = GroupCommit(
            functools.partial(_commit_deliveries, self._pinned.unit_of_work, settings),
            write_alone=functools.partial(_commit_deliveries, db.driver_unit_of_work, settings))

    async def submit(self, delivery: service.Delivery) -> service.Outcome:
        """The delivery's outcome, once the transaction holding it committed."""
        return await self._commit.submit(delivery)

    def close(self) -> None:
        """Give the kept connection back (at shutdown)."""
        self._pinned.close()


def replay_window(settings: Settings) -> timedelta:
    """SIGNAL_REPLAY_WINDOW_S as a timedelta."""
    return timedelta(seconds=settings.signal_replay_window_s)



def _commit_deliveries(unit_of_work: IntakeStore.UnitOfWork, settings: Settings,
                       deliveries: Sequence[service.Delivery]) -> list[service.Outcome]:
    with IntakeStore.opened(unit_of_work) as store:
        outcomes = service.receive_webhooks(
            store=store, deliveries=deliveries,
            webhook_secret=settings.secret("WEBHOOK_SECRET"),
            replay_window=replay_window(settings))
    accepted = any(isinstance(o, service.IngestResult) and o.status == "ACCEPTED"
                   for o in outcomes)
    if accepted and settings.signal_process_on_ingest:
        # After the commit: the processor only ever sees durably queued rows.
        submit(PROCESS_SIGNAL_QUEUE)
    return outcomes
