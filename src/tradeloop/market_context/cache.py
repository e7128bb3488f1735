"""The context a decision uses (bars + latest GEX), its TTL cache and its snapshots.

The cache lives in each process. An entry is reused only while it is younger than the TTL
*and* its version stamp still matches: the stamp is the fingerprint and last bar of the
symbol's bar series and the id of the user's latest GEX snapshot, read with two small indexed
queries. New bars or a new GEX snapshot therefore invalidate the entry in every process at
once (an import by the CLI, a GEX post to another API process), without any messaging; the
TTL bounds how long one process keeps a context it never needed again.

Staleness (old bars, old GEX) is judged at each lookup against the signal's time, so a cached
context never hides that its data aged. Synthetic (demo) series are never stale: no feed stands
behind them that could have stopped, and they are extended every day (market_data.tasks).
Every failure degrades: processing goes on with what is known and the problems are recorded
with the decision and in `context_snapshots`.
"""

from __future__ import annotations

import threading
import time
import uuid
import weakref
from collections import OrderedDict
from collections.abc import Callable
from contextlib import AbstractContextManager, nullcontext
from dataclasses import dataclass, field, replace
from datetime import datetime, timedelta
from typing import Any

import structlog
from sqlalchemy.orm import Session

from tradeloop.market_context import gex
from tradeloop.market_context.gex import GexLevels
from tradeloop.market_context.models import ContextSnapshot
from tradeloop.market_context.repository import ContextStore
from tradeloop.market_context.service import (
    FALLBACK_TIMEFRAME,
    MarketContext,
    Problem,
    build_context,
    problem,
    stale_bars,
)
from tradeloop.market_data import service as market_data
from tradeloop.market_data.calendar import MarketCalendar
from tradeloop.ownership import OwnedRepository
from tradeloop.signals.repository import ClaimedSignal

log = structlog.get_logger(__name__)

MAX_ENTRIES = 10_000
Key = tuple[uuid.UUID, str, str]  # (user, symbol, timeframe)
_LIVE_CACHES: weakref.WeakSet[ContextCache] = weakref.WeakSet()


@dataclass(frozen=True)
class ContextPolicy:
    """The settings of context lookups (CONTEXT_CACHE_TTL_S, CONTEXT_STALE_AFTER_BARS,
    GEX_MAX_AGE_S)."""

    ttl_s: float = 60.0
    stale_after_bars: float = 5.0
    gex_max_age: timedelta = timedelta(days=1)


@dataclass(frozen=True)
class SignalContext:
    """Everything the decision knows about a symbol at a signal's time."""

    market: MarketContext
    gex: GexLevels | None
    problems: list[Problem]
    cache_hit: bool
    build_ms: float

    @property
    def degraded(self) -> bool:
        return bool(self.problems)

    def as_json(self) -> dict[str, Any]:
        return {**self.market.as_json(), "problems": self.problems,
                "gex": None if self.gex is None else self.gex.as_json(),
                "cache_hit": self.cache_hit}


@dataclass(frozen=True)
class _Stamp:
    """What the entry was built from: equal stamps mean equal inputs."""

    # (timeframe, fingerprint, last_ts, synthetic)
    series: tuple[tuple[str, str, datetime | None, bool], ...]
    gex_id: uuid.UUID | None
    gex_as_of: datetime | None

    def newest(self) -> datetime | None:
        times = [last for _, _, last, _ in self.series if last is not None]
        if self.gex_as_of is not None:
            times.append(self.gex_as_of)
        return max(times, default=None)

    def synthetic(self, timeframe: str | None) -> bool:
        """Whether the series of `timeframe` holds generated (demo) bars."""
        return any(synthetic for frame, _, _, synthetic in self.series if frame == timeframe)


@dataclass(frozen=True)
class _Entry:
    stamp: _Stamp
    market: MarketContext
    gex: GexLevels | None  # as stored; whether it is stale depends on the signal's time
    stored_at: float


@dataclass
class CacheStats:
    hits: int = 0
    misses: int = 0
    expired: int = 0
    invalidated: int = 0

    @property
    def hit_rate(self) -> float | None:
        total = self.hits + self.misses
        return None if total == 0 else self.hits / total

    def as_json(self) -> dict[str, Any]:
        return {"hits": self.hits, "misses": self.misses, "expired": self.expired,
                "invalidated": self.invalidated, "hit_rate": self.hit_rate}


@dataclass(eq=False)
class ContextCache:
    """A per-process TTL cache of contexts, keyed by (user, symbol, timeframe)."""

    policy: ContextPolicy = field(default_factory=ContextPolicy)
    stats: CacheStats = field(default_factory=CacheStats)
    clock: Callable[[], float] = time.monotonic  # seconds; tests pass a fake one
    _entries: OrderedDict[Key, _Entry] = field(default_factory=OrderedDict)
    _lock: threading.Lock = field(default_factory=threading.Lock)

    def __post_init__(self) -> None:
        _LIVE_CACHES.add(self)

    def __len__(self) -> int:
        return len(self._entries)

    def _get(self, key: Key, stamp: _Stamp, at: datetime) -> _Entry | None:
        """The entry when it is fresh, its stamp matches and it holds every input up to `at`."""
        with self._lock:
            entry = self._entries.get(key)
            if entry is not None and self.clock() - entry.stored_at > self.policy.ttl_s:
                del self._entries[key]
                self.stats.expired += 1
                entry = None
            elif entry is not None and entry.stamp != stamp:
                del self._entries[key]
                self.stats.invalidated += 1
                entry = None
            newest = stamp.newest()
            if entry is None or (newest is not None and newest > at):
                self.stats.misses += 1
                return None
            self.stats.hits += 1
            return entry

    def _put(self, key: Key, entry: _Entry) -> None:
        if self.policy.ttl_s <= 0:
            return
        with self._lock:
            self._entries[key] = entry
            self._entries.move_to_end(key)
            while len(self._entries) > MAX_ENTRIES:
                self._entries.popitem(last=False)

    def lookup(self, *, session: Session, owner_id: uuid.UUID, symbol: str, timeframe: str,
               at: datetime, calendar: MarketCalendar) -> SignalContext:
        """The context of `symbol` at `at`; never raises, failures become problems.

        Called first in a unit of work (processing does), a failing read rolls back that
        transaction, which holds nothing else yet; later in one, the reads run inside a
        savepoint. Either way the decision written after the lookup still commits.
        """
        started = time.perf_counter()
        key = (owner_id, symbol, timeframe)
        first = not session.in_transaction()
        try:
            with nullcontext() if first else _contained(session):
                stamp = _read_stamp(session, owner_id, symbol, timeframe)
                entry = self._get(key, stamp, at)
                hit = entry is not None
                if entry is None:
                    entry = _build(session, owner_id, symbol, timeframe, at, stamp, self.clock())
                    newest = stamp.newest()
                    # Only a context built from every stored input is valid for later times.
                    if not _failed(entry.market) and (newest is None or newest <= at):
                        self._put(key, entry)
        except Exception as exc:
            if first:
                session.rollback()  # on PostgreSQL a failed statement aborts the transaction
            log.warning("context_lookup_failed", symbol=symbol, error=str(exc)[:300])
            return SignalContext(
                MarketContext(), None,
                [problem("context_failed", f"context lookup failed: {type(exc).__name__}: "
                         f"{str(exc)[:200]}")], cache_hit=False,
                build_ms=_ms_since(started))
        levels = None if entry.gex is None else replace(
            entry.gex, stale=at - entry.gex.as_of > self.policy.gex_max_age)
        problems = [*entry.market.problems, *_staleness(
            entry.market, levels, symbol=symbol, at=at, calendar=calendar, policy=self.policy,
            synthetic_bars=stamp.synthetic(entry.market.timeframe))]
        return SignalContext(entry.market, levels, problems, hit, _ms_since(started))


def _contained(session: Session) -> AbstractContextManager[object]:
    """A savepoint around reads in a transaction that holds other work: on PostgreSQL a
    failing statement aborts the whole transaction. SQLite undoes only the failing statement
    and goes on, so there the savepoint's two statements are skipped."""
    if session.connection().dialect.name == "sqlite":
        return nullcontext()
    return session.begin_nested()


def process_cache_stats() -> dict[str, Any]:
    """The counters of every context cache alive in this process, added up (for /health)."""
    total, entries = CacheStats(), 0
    for cache in list(_LIVE_CACHES):
        total.hits += cache.stats.hits
        total.misses += cache.stats.misses
        total.expired += cache.stats.expired
        total.invalidated += cache.stats.invalidated
        entries += len(cache)
    return {**total.as_json(), "entries": entries}


def _read_stamp(session: Session, owner_id: uuid.UUID, symbol: str, timeframe: str) -> _Stamp:
    """The version stamp of the inputs: the symbol's series and the user's latest GEX."""
    versions, gex_id, gex_as_of = ContextStore.of_session(session).stamp(
        owner_id, symbol, market_data.normalize_symbol(symbol),
        sorted({timeframe, FALLBACK_TIMEFRAME}))
    series = tuple(sorted((v.timeframe, v.fingerprint, v.last_ts, bool(v.synthetic))
                          for v in versions))
    return _Stamp(series, gex_id, gex_as_of)


def _build(session: Session, owner_id: uuid.UUID, symbol: str, timeframe: str, at: datetime,
           stamp: _Stamp, now: float) -> _Entry:
    market = build_context(session=session, symbol=symbol, timeframe=timeframe, at=at)
    latest = None
    if stamp.gex_id is not None:
        # A signal older than the newest snapshot uses the one it could have seen.
        latest = gex.latest_gex(session=session, owner_id=owner_id, symbol=symbol,
                                at=at if stamp.gex_as_of and stamp.gex_as_of > at else None)
    levels = None if latest is None else gex.levels_of(latest)
    return _Entry(stamp, market, levels, now)


def _failed(market: MarketContext) -> bool:
    return any(item["kind"] == "context_failed" for item in market.problems)


def _staleness(market: MarketContext, levels: GexLevels | None, *, symbol: str, at: datetime,
               calendar: MarketCalendar, policy: ContextPolicy,
               synthetic_bars: bool) -> list[Problem]:
    problems = []
    bars = None if synthetic_bars else stale_bars(market, symbol=symbol, at=at,
                                                  calendar=calendar,
                                                  after_bars=policy.stale_after_bars)
    if bars is not None:
        problems.append(bars)
    if levels is not None and levels.stale:
        hours = (at - levels.as_of).total_seconds() / 3600
        problems.append(problem(
            "gex_stale", f"latest GEX of {symbol} is {hours:.1f} h old at {at.isoformat()} "
            f"(GEX_MAX_AGE_S={policy.gex_max_age.total_seconds():g}); not used by the gate"))
    return problems


def _ms_since(started: float) -> float:
    return round((time.perf_counter() - started) * 1000, 3)


class SnapshotRepository(OwnedRepository[ContextSnapshot]):
    model = ContextSnapshot
    label = "Context snapshot"


def store_snapshot(session: Session, signal: ClaimedSignal, decision_id: uuid.UUID,
                   context: SignalContext) -> None:
    """Keep the context one decision used, linked to its signal and decision."""
    ContextStore.of_session(session).store_snapshot({
        "user_id": signal.user_id, "signal_id": signal.id, "decision_id": decision_id,
        "symbol": signal.symbol, "timeframe": signal.timeframe, "context": context.as_json(),
        "degraded": context.degraded, "degraded_reasons": context.problems,
        "cache_hit": context.cache_hit, "build_ms": context.build_ms})


def snapshots_of(*, session: Session, owner_id: uuid.UUID,
                 signal_id: uuid.UUID) -> list[ContextSnapshot]:
    """The context snapshots of one of the owner's signals."""
    return SnapshotRepository(session, owner_id).list(
        ContextSnapshot.signal_id == signal_id, order_by=[ContextSnapshot.created_at])
