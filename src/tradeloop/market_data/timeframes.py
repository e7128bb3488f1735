"""Bar timeframes, in a module light enough for the strategy language to import cheaply."""

from __future__ import annotations

TIMEFRAMES = ("1m", "5m", "15m", "30m", "1h", "4h", "1d", "1w")
# Bars of these timeframes are keyed by their trading date at 00:00 UTC.
DAILY_TIMEFRAMES = frozenset({"1d", "1w"})
# How long one bar of each timeframe lasts, in seconds.
TIMEFRAME_SECONDS = {"1m": 60, "5m": 300, "15m": 900, "30m": 1800, "1h": 3600, "4h": 14_400,
                     "1d": 86_400, "1w": 604_800}
