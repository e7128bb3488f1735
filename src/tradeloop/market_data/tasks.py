"""Market data jobs: extend the stored demo series every day, so a demo installation's bars
stay current without anyone importing them."""

from __future__ import annotations

from sqlalchemy.orm import Session

from tradeloop.market_data.demo_bars import load_demo_bars
from tradeloop.tasks import schedule, task


@task()
def extend_demo_bars(*, session: Session) -> int:
    """Bring the stored synthetic demo series up to the last completed day; returns how many
    bars were added (none without a loaded demo)."""
    return load_demo_bars(session=session, only_stored=True).new_bars


# Just after midnight UTC, when another day has completed.
schedule("extend-demo-bars-daily", "extend_demo_bars", cron="10 0 * * *")
