"""Performance metrics of one backtest, and of many runs at once for a sweep's ranking.

The package, by family (docs/metrics.md documents every metric and its formula):

* ``catalogue`` — names, categories, kinds, descriptions and conventions; no NumPy, so the
  database models and schemas build their columns from it without loading the numeric code.
* ``compute`` — ``compute_metrics(output)``: every metric of one run, grouped by category.
* ``curve`` — the equity curve and what every family derives from it once.
* ``calendar`` — bar spacing, periods per year, period ends, durations; period metrics.
* ``returns`` — period returns, annual and calendar-time growth, best and worst periods.
* ``risk`` — volatility, downside deviation, tails, moments, risk-adjusted ratios.
* ``drawdown`` — depth below the running peak, episodes and their durations.
* ``benchmark`` — buy & hold and the equity against the market (beta, captures, …).
* ``trades`` — trade and exposure metrics, from the trades table.
* ``numeric`` — the means, deviations, sums and safe division every family shares.
* ``ranking`` — one metric of many runs sharing their bars (a sweep's ranking).
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from tradeloop.backtest.metrics.catalogue import (
    CATEGORIES,
    KINDS,
    METRICS,
    MetricSpec,
    Value,
)

if TYPE_CHECKING:
    from tradeloop.backtest.metrics.compute import compute_metrics

__all__ = ["CATEGORIES", "KINDS", "METRICS", "MetricSpec", "Value", "compute_metrics"]


def __getattr__(name: str) -> Any:
    """compute_metrics on first use: importing the catalogue (models, schemas) must not load
    NumPy and the numeric modules with it."""
    if name == "compute_metrics":
        from tradeloop.backtest.metrics.compute import compute_metrics

        return compute_metrics
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
