"""The live-signal components of /health (seed 004): context, gex and tasks.

/health needs no credentials, so these report counts, ages and reason kinds — never a
user's symbols, prices or positions.
"""

from __future__ import annotations

import threading
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import datetime, timedelta
from typing import Any

from sqlalchemy.orm import Session

from tradeloop.db import Database, utcnow
from tradeloop.health import ComponentHealth, register_settings_health_check
from tradeloop.market_context import gex
from tradeloop.market_context.cache import process_cache_stats
from tradeloop.monitoring import service as metrics
from tradeloop.settings import Settings
from tradeloop.signals.repository import queue_backlog

# The every-minute queue schedule drains the outbox; a signal waiting longer means no worker.
QUEUE_STALL = timedelta(minutes=3)
# These checks are a few milliseconds of queries each: taking turns keeps a burst of health
# probes from holding three pooled connections at once (and never shares one connection
# between threads, which a test's single rolled-back connection cannot bear).
_turns = threading.Lock()


@contextmanager
def _session(db: Database) -> Iterator[Session]:
    with _turns, db.unit_of_work() as session:
        yield session


def check_context(db: Database, settings: Settings) -> ComponentHealth:
    """Hit rate and degraded decisions over the last CONTEXT_HEALTH_WINDOW_S."""
    window = timedelta(seconds=settings.context_health_window_s)
    with _session(db) as session:
        recent = metrics.context_metrics(session, None, utcnow() - window)
    details: dict[str, Any] = {
        "window_s": settings.context_health_window_s, "decisions": recent["decisions"],
        "cache_hit_rate": recent["cacheHitRate"], "cache_ttl_s": settings.context_cache_ttl_s,
        "degraded_decisions": recent["degradedDecisions"],
        "degraded_reasons": recent["degradedReasons"], "process_cache": process_cache_stats()}
    minutes = f"{settings.context_health_window_s / 60:g} min"
    if recent["degradedDecisions"]:
        kinds = ", ".join(f"{kind} x{count}" for kind, count in
                          sorted(recent["degradedReasons"].items()))
        return ComponentHealth("degraded", f"{recent['degradedDecisions']} of "
                               f"{recent['decisions']} decisions in the last {minutes} ran on "
                               f"a degraded context ({kinds})", details)
    if not recent["decisions"]:
        return ComponentHealth("healthy", f"No decisions in the last {minutes}", details)
    return ComponentHealth("healthy", f"Context cache hit rate {recent['cacheHitRate']:.0%} "
                           f"over {recent['decisions']} decisions in the last {minutes}",
                           details)


def check_gex(db: Database, settings: Settings) -> ComponentHealth:
    """Degraded when the newest GEX snapshot of any user is older than GEX_MAX_AGE_S."""
    with _session(db) as session:
        feed = gex.feed_freshness(session)
    details: dict[str, Any] = {"snapshots": feed.snapshots, "symbols": feed.symbols,
                               "max_age_s": settings.gex_max_age_s,
                               "latest_as_of": _iso(feed.newest_as_of),
                               "latest_received_at": _iso(feed.newest_received_at)}
    if feed.newest_as_of is None:
        return ComponentHealth("healthy", "No GEX snapshots yet: decisions run without GEX",
                               details)
    age = utcnow() - feed.newest_as_of
    details["age_s"] = round(age.total_seconds(), 1)
    if age.total_seconds() > settings.gex_max_age_s:
        return ComponentHealth("degraded", f"GEX source stale: the latest snapshot is "
                               f"{_hours(age)} old (GEX_MAX_AGE_S={settings.gex_max_age_s})",
                               details)
    return ComponentHealth("healthy", f"Latest GEX snapshot {_hours(age)} old", details)


def check_tasks(db: Database, settings: Settings) -> ComponentHealth:
    """The task runner in use and whether the signal outbox is being drained."""
    with _session(db) as session:
        waiting, oldest = queue_backlog(session=session)
    details: dict[str, Any] = {"runner": "celery" if settings.uses_celery else "inline",
                               "queued_signals": waiting, "oldest_queued_at": _iso(oldest)}
    if oldest is not None and utcnow() - oldest > QUEUE_STALL:
        return ComponentHealth("degraded", f"{waiting} signal(s) waiting, the oldest for "
                               f"{_hours(utcnow() - oldest)}: is a worker running?", details)
    return ComponentHealth("healthy", f"{waiting} signal(s) waiting", details)


def _iso(value: datetime | None) -> str | None:
    return value.isoformat() if value else None


def _hours(age: timedelta) -> str:
    return f"{age.total_seconds() / 3600:.1f} h"


register_settings_health_check("context", check_context)
register_settings_health_check("gex", check_gex)
register_settings_health_check("tasks", check_tasks)
