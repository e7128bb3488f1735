"""Market data jobs: extend the stored demo series every day, so a demo installation's bars
stay current without anyone importing them, and feed them every five minutes (DEMO_FEED)."""

from __future__ import annotations

from sqlalchemy.orm import Session

from tradeloop.market_data.demo_bars import load_demo_bars
from tradeloop.market_data.demo_feed import feed_demo_bars
from tradeloop.settings import get_settings
from tradeloop.tasks import schedule, task


@task()
def extend_demo_bars(*, session: Session) -> int:
    """Bring the stored synthetic demo series up to the last completed day; returns how many
    bars were added (none without a loaded demo)."""
    return load_demo_bars(session=session, only_stored=True).new_bars


# Just after midnight UTC, when another day has completed.
schedule("extend-demo-bars-daily", "extend_demo_bars", cron="10 0 * * *")


@task()
def feed_demo_market(*, session: Session) -> int:
    """Append the demo bars completed since the last run (DEMO_FEED); returns how many."""
    if not get_settings().demo_feed:
        return 0
    return feed_demo_bars(session=session).new_bars


# Every five minutes, just after a five-minute bar completes.
schedule("feed-demo-market", "feed_demo_market", cron="1-59/5 * * * *")
