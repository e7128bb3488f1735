"""After-commit data events: a lower domain announces a change, higher domains react to it.

`market_data` must not import `signals` (imports point one way), yet new bars have to mark
open positions and run live strategies. So `market_data` publishes `BARS_CHANGED` here, and
`signals.tasks` declares which of its tasks react to it:

    react(BARS_CHANGED, "react_to_new_bars")          # in signals/tasks.py, at import
    publish(session, BARS_CHANGED, symbol="SPY", ...)  # in market_data/service.py

`publish` enqueues every reacting task with the event's payload (JSON-serialisable keyword
arguments) through `tasks.enqueue`, so the jobs are sent only once the publishing unit of
work commits and are dropped on rollback: a reaction never sees bars that were not stored.

Delivery is switched on per process (`set_event_delivery`) by whoever also configured a task
runner for it: the app (setting `EVENTS_ENABLED`) and `tradeloop data import`. A process
without a runner (a script, `tradeloop seed`) publishes into the void, on purpose; the
periodic schedules of the reacting domains catch up with what it changed.
"""

from __future__ import annotations

from typing import Any

import structlog
from sqlalchemy.orm import Session

from tradeloop.tasks import enqueue, get_task

log = structlog.get_logger(__name__)

# Payload: symbol, timeframe, first_written and last_written (ISO 8601 bar times of the
# earliest and latest rows the import wrote) and series_last (the series' latest bar after
# the import; equal to last_written when the import wrote the newest bar).
BARS_CHANGED = "bars_changed"

_REACTIONS: dict[str, list[str]] = {}
_delivery = {"enabled": False}


def react(event: str, task_name: str) -> None:
    """Declare that the task `task_name` runs (with the event's payload) after each `event`."""
    get_task(task_name)  # a typo fails at import time, not silently at the first event
    names = _REACTIONS.setdefault(event, [])
    if task_name not in names:
        names.append(task_name)


def reactions(event: str) -> tuple[str, ...]:
    """The tasks that react to `event`, in declaration order."""
    return tuple(_REACTIONS.get(event, ()))


def set_event_delivery(enabled: bool) -> None:
    """Switch delivery on or off for this process (on only where a task runner is set)."""
    _delivery["enabled"] = enabled


def event_delivery_enabled() -> bool:
    return _delivery["enabled"]


def publish(session: Session, event: str, **payload: Any) -> int:
    """Enqueue every reaction to `event` after `session` commits; returns how many."""
    if not _delivery["enabled"]:
        return 0
    names = reactions(event)
    for name in names:
        enqueue(session, name, **payload)
    if names:
        log.info("event_published", data_event=event, reactions=list(names),
                 **{k: v for k, v in payload.items() if isinstance(v, str)})
    return len(names)
