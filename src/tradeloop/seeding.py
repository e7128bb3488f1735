"""`tradeloop seed`: the data a new installation starts with, from every domain that has some."""

from __future__ import annotations

from dataclasses import dataclass, field

from sqlalchemy.orm import Session

from tradeloop.accounts import service as accounts
from tradeloop.market_data import service as market_data
from tradeloop.market_data.bar_files import ParsedBars
from tradeloop.market_data.demo import generate_demo_universe
from tradeloop.market_data.service import ImportResult, Progress
from tradeloop.strategies.demo import ensure_demo_strategies

DEMO_SOURCE = "demo: synthetic (seeded stochastic model)"


@dataclass
class DemoSeedReport:
    series: list[ImportResult] = field(default_factory=list)
    skipped_real: list[str] = field(default_factory=list)
    strategies_created: list[str] = field(default_factory=list)
    owner_email: str | None = None


def seed_demo(*, session: Session, progress: Progress | None = None) -> DemoSeedReport:
    """Load the synthetic demo universe and the demo strategies (owned by the first admin).

    Idempotent: a second run changes nothing. Series that hold real (imported) bars are
    left alone, so the demo never overwrites a user's data.
    """
    report = DemoSeedReport()
    existing = {(s.symbol, s.timeframe): s for s in market_data.list_series(session=session)}
    for demo in generate_demo_universe():
        stored = existing.get((demo.symbol, demo.timeframe))
        if stored is not None and not stored.synthetic:
            report.skipped_real.append(f"{demo.symbol} {demo.timeframe}")
            continue
        parsed = ParsedBars(layout="demo", frame=demo.frame, dropped_duplicates=0)
        report.series.append(market_data.import_bars(
            session=session, symbol=demo.symbol, timeframe=demo.timeframe, parsed=parsed,
            source=DEMO_SOURCE, synthetic=True, progress=progress))
    owner = accounts.first_admin(session=session)
    if owner is not None:
        report.owner_email = owner.email
        created = ensure_demo_strategies(session=session, owner_id=owner.id)
        report.strategies_created = [s.name for s in created]
    return report


def needs_demo(session: Session) -> bool:
    """True on a database without any bars: the first start of a new installation."""
    return not market_data.list_series(session=session)
