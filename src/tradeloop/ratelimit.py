"""Rate limits on sensitive endpoints, kept in memory or in Redis (`RATE_LIMIT_STORAGE_URL`)."""

from __future__ import annotations

import math
import time

from limits import parse
from limits.storage import storage_from_string
from limits.strategies import MovingWindowRateLimiter

from tradeloop.errors import RateLimitedError


class RateLimiter:
    """A moving-window limiter; one instance per app so counters are shared by its requests."""

    def __init__(self, storage_url: str = "memory://"):
        self._limiter = MovingWindowRateLimiter(storage_from_string(storage_url))

    def hit(self, limit: str, *keys: str) -> None:
        """Count one attempt against `limit` (e.g. "10/minute"); RateLimitedError when over."""
        item = parse(limit)
        if self._limiter.hit(item, *keys):
            return
        reset_at, _remaining = self._limiter.get_window_stats(item, *keys)
        retry_after = max(1, math.ceil(reset_at - time.time()))
        raise RateLimitedError(
            f"Too many attempts; try again in {retry_after} s",
            details={"limit": limit, "retry_after_s": retry_after},
            headers={"Retry-After": str(retry_after)},
        )
