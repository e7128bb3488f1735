"""Backtest jobs: drain a user's queue of runs within their concurrency limit."""

from __future__ import annotations

import uuid

from tradeloop.backtest import service
from tradeloop.db import Database
from tradeloop.tasks import task


@task()
def process_backtest_queue(user_id: str, max_running: int, *, db: Database) -> int:
    """Run the user's queued backtests while fewer than max_running are running."""
    return service.process_queue(db=db, owner_id=uuid.UUID(user_id), max_running=max_running)
