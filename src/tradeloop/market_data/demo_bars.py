"""The demo universe in the bars tables: load it, and keep its series current.

The generator (`demo.py`) runs through the last completed day and only appends when that day
moves on, so loading it again brings a stored demo series up to date without changing a bar
it already had. Series that hold real (imported) bars are never touched.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import date

from sqlalchemy.orm import Session

from tradeloop.market_data import service
from tradeloop.market_data.bar_files import ParsedBars
from tradeloop.market_data.demo import generate_demo_universe
from tradeloop.market_data.service import ImportResult, Progress

DEMO_SOURCE = "demo: synthetic (seeded stochastic model)"


@dataclass
class DemoBarsReport:
    series: list[ImportResult] = field(default_factory=list)
    skipped_real: list[str] = field(default_factory=list)

    @property
    def new_bars(self) -> int:
        return sum(result.inserted for result in self.series)


def load_demo_bars(*, session: Session, end: date | None = None, only_stored: bool = False,
                   progress: Progress | None = None) -> DemoBarsReport:
    """Import the demo universe through `end` (default: the last completed day) into each
    demo series that holds no real bars. `only_stored`: into the synthetic series already
    stored only (extends a loaded demo, never starts one)."""
    report = DemoBarsReport()
    stored = {(s.symbol, s.timeframe): s for s in service.list_series(session=session)}
    if only_stored and not any(series.synthetic for series in stored.values()):
        return report
    for demo in generate_demo_universe(end=end):
        existing = stored.get((demo.symbol, demo.timeframe))
        if existing is not None and not existing.synthetic:
            report.skipped_real.append(f"{demo.symbol} {demo.timeframe}")
            continue
        if only_stored and existing is None:
            continue
        parsed = ParsedBars(layout="demo", frame=demo.frame, dropped_duplicates=0)
        report.series.append(service.import_bars(
            session=session, symbol=demo.symbol, timeframe=demo.timeframe, parsed=parsed,
            source=DEMO_SOURCE, synthetic=True, progress=progress))
    return report
