"""Trading jobs: mark open paper positions every minute."""

from __future__ import annotations

from sqlalchemy.orm import Session

from tradeloop.tasks import schedule, task
from tradeloop.trading.marks import mark_open_positions


@task()
def mark_positions(*, session: Session, symbol: str | None = None) -> int:
    """Mark open positions (one symbol, or all) at the latest stored close; returns how many."""
    return mark_open_positions(session=session, symbols=[symbol] if symbol else None)


# Bars can also arrive where no event is delivered (a script, another process).
schedule("mark-positions", "mark_positions", cron="* * * * *")
