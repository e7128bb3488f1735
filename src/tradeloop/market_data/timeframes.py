"""Bar timeframes, in a module light enough for the strategy language to import cheaply."""

from __future__ import annotations

TIMEFRAMES = ("1m", "5m", "15m", "30m", "1h", "4h", "1d", "1w")
# Bars of these timeframes are keyed by their trading date at 00:00 UTC.
DAILY_TIMEFRAMES = frozenset({"1d", "1w"})
