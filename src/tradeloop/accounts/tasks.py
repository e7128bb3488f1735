"""Periodic housekeeping for accounts."""

from __future__ import annotations

from sqlalchemy.orm import Session

from tradeloop.accounts import service
from tradeloop.tasks import schedule, task


@task()
def purge_expired_tokens(*, session: Session) -> int:
    """Delete expired sessions, API tokens and reset/confirm links."""
    return service.purge_expired_tokens(session=session)


schedule("purge-expired-tokens-daily", "purge_expired_tokens", cron="30 3 * * *")
