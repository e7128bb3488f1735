"""The per-process cache of resolved templates, kept fresh by one counter row.

Every template change bumps `prompt_cache_state.counter` in its own transaction. A resolution
first reads the counter (one primary-key lookup); when it differs from the counter the cache
was filled under, the whole cache is dropped. So an edit made by any process — API, worker,
CLI — is seen by every other process on its very next resolution, and nothing is served from
a cache whose templates may have changed.
"""

from __future__ import annotations

import threading
from collections.abc import Callable, Hashable
from typing import Any, TypeVar

from sqlalchemy import event, text
from sqlalchemy.orm import Session

T = TypeVar("T")

_READ_COUNTER_SQL = "SELECT counter FROM prompt_cache_state WHERE id = 1"
_BUMP_COUNTER = text("UPDATE prompt_cache_state SET counter = counter + 1 WHERE id = 1")
_INSERT_COUNTER = text("INSERT INTO prompt_cache_state (id, counter) VALUES (1, 1)")


_BUMPED = "tradeloop_prompt_cache_bumped"


def bump(session: Session) -> None:
    """Mark every process's cache stale (in the caller's transaction)."""
    session.info[_BUMPED] = True
    result = session.execute(_BUMP_COUNTER)
    if result.rowcount == 0:  # type: ignore[attr-defined]
        # The migration inserts the row; recreate it if someone deleted it.
        session.execute(_INSERT_COUNTER)


def read_counter(session: Session) -> int:
    """The current counter value (0 when the row is missing), read in the session's
    transaction.

    Straight through the DBAPI cursor of the session's connection: this runs on every
    resolution, and the ORM's statement machinery costs ~20x the SQLite lookup itself.
    """
    cursor = session.connection().connection.cursor()
    try:
        cursor.execute(_READ_COUNTER_SQL)
        row = cursor.fetchone()
    finally:
        cursor.close()
    return int(row[0]) if row else 0


class TemplateCache:
    """Resolved templates by key, valid for one counter value."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._counter: int | None = None
        self._entries: dict[Hashable, Any] = {}
        self.hits = 0
        self.misses = 0

    def get_or_load(self, session: Session, key: Hashable, load: Callable[[], T]) -> T:
        """The cached value for `key`, loading it when the counter moved or it is absent."""
        counter = read_counter(session)
        if session.info.get(_BUMPED):
            # This transaction changed templates and may still roll back: whatever it reads
            # now must not be cached under a counter value another process may commit later.
            self.misses += 1
            return load()
        with self._lock:
            if counter != self._counter:
                self._entries.clear()
                self._counter = counter
            found = self._entries.get(key)
        if found is not None:
            self.hits += 1
            return found  # type: ignore[no-any-return]
        self.misses += 1
        value = load()
        with self._lock:
            if self._counter == counter:
                self._entries[key] = value
        return value

    def clear(self) -> None:
        with self._lock:
            self._entries.clear()
            self._counter = None


template_cache = TemplateCache()


@event.listens_for(Session, "after_commit")
@event.listens_for(Session, "after_rollback")
def _forget_bump(session: Session) -> None:
    session.info.pop(_BUMPED, None)
