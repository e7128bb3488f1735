"""compute_metrics: every metric of the catalogue for one BacktestOutput, family by family."""

from __future__ import annotations

import math
from typing import Any

import numpy as np

from tradeloop.backtest.metrics.benchmark import benchmark_metrics
from tradeloop.backtest.metrics.calendar import period_metrics, round_duration
from tradeloop.backtest.metrics.catalogue import LAYOUT, Value, clean_value
from tradeloop.backtest.metrics.curve import Curve
from tradeloop.backtest.metrics.drawdown import drawdown_metrics
from tradeloop.backtest.metrics.returns import calendar_return_metrics, return_metrics
from tradeloop.backtest.metrics.risk import risk_adjusted_metrics, risk_metrics
from tradeloop.backtest.metrics.trades import exposure_metrics, trade_metrics
from tradeloop.backtest.results import BacktestOutput


def compute_metrics(output: BacktestOutput) -> dict[str, dict[str, Value]]:
    """Every metric of the catalogue (METRICS), grouped by category; None where undefined."""
    # Undefined values (x / 0, log of 0, overflow) are NaN or inf until clean_value turns them
    # into None, so numpy's warnings about them are noise: silenced once here rather than
    # around each operation (an errstate costs ~2 µs, a dozen of them a run).
    with np.errstate(all="ignore"):
        return _compute(output)


def _compute(output: BacktestOutput) -> dict[str, dict[str, Value]]:
    values: dict[str, Any] = {"commissions": output.commissions}
    period: int | None = None
    years = math.nan
    if len(output.ts):
        curve = Curve.build(output)
        values.update(_curve_metrics(curve, output))
        period, years = curve.period, values["years"]
    # Trade durations are rounded to the bar resolution, like the drawdown durations.
    values.update(trade_metrics(output.trades, lambda ns: round_duration(ns, period), years))
    return {category: {name: clean_value(values.get(name), kind) for name, kind in fields}
            for category, fields in LAYOUT}


def _curve_metrics(c: Curve, output: BacktestOutput) -> dict[str, Any]:
    m: dict[str, Any] = {}
    for group in (period_metrics, return_metrics, calendar_return_metrics, risk_metrics,
                  drawdown_metrics):
        m.update(group(c))
    # The ratios reuse the values above instead of recomputing them.
    m.update(risk_adjusted_metrics(c, m))
    # drawdown_metrics, the only reader of c.dd, has run: its memory can serve beta (a fresh
    # array costs a million bars more in page faults than the arithmetic done in it).
    m.update(benchmark_metrics(c, output, m["return_pct"], spare=c.dd))
    m.update(exposure_metrics(c.ts, np.asarray(output.in_market, dtype=bool), m["return_pct"]))
    return m


