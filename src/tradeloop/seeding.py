"""`tradeloop seed`: the data a new installation starts with, from every domain that has some."""

from __future__ import annotations

from dataclasses import dataclass, field

from sqlalchemy.orm import Session

from tradeloop.accounts import service as accounts
from tradeloop.market_data import service as market_data
from tradeloop.market_data.demo_bars import DemoBarsReport, load_demo_bars
from tradeloop.market_data.service import Progress
from tradeloop.strategies.demo import ensure_demo_strategies


@dataclass
class DemoSeedReport:
    bars: DemoBarsReport
    strategies_created: list[str] = field(default_factory=list)
    owner_email: str | None = None


def seed_demo(*, session: Session, progress: Progress | None = None) -> DemoSeedReport:
    """Load the synthetic demo universe and the demo strategies (owned by the first admin).

    Idempotent within a day: a second run changes nothing; on a later day it appends the
    days completed since. Series that hold real (imported) bars are left alone, so the demo
    never overwrites a user's data.
    """
    report = DemoSeedReport(load_demo_bars(session=session, progress=progress))
    owner = accounts.first_admin(session=session)
    if owner is not None:
        report.owner_email = owner.email
        created = ensure_demo_strategies(session=session, owner_id=owner.id)
        report.strategies_created = [s.name for s in created]
    return report


def needs_demo(session: Session) -> bool:
    """True on a database without any bars: the first start of a new installation."""
    return not market_data.list_series(session=session)
