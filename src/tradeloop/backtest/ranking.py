"""One metric of many runs at once: how a parameter sweep ranks every combination.

compute_metrics works out all ~97 metrics of one run. A sweep needs one metric of hundreds of
runs that share their bars (same symbols and range, other params), so here the equity curves
are stacked into a (runs x bars) matrix, the calendar (period ends, periods per year, bar
spacing) is worked out once, and the metric is a handful of NumPy reductions along the rows.

Every formula is metrics.py's, operation for operation, so a value here equals the single
run's `compute_metrics` value to floating-point noise (tests/backtest/test_ranking.py holds
them to rtol 1e-12). Trade metrics are computed per run by metrics_trades (microseconds: no
curve work). Metrics not in RANKABLE (calendar months, benchmark, tails, …) are ranked from
full runs instead (sweeps.py).
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from functools import cached_property
from typing import Any

import numpy as np

from tradeloop.backtest import metrics, metrics_trades
from tradeloop.backtest.results import BacktestOutput

_TRADE_METRICS = frozenset(spec.name for spec in metrics.METRICS if spec.category == "trades")


@dataclass(frozen=True)
class _Batch:
    """Runs on one timestamp array: their equity as rows, and the calendar, once."""

    ts: np.ndarray          # int64 ns
    equity: np.ndarray      # float64 (runs, bars)
    period: int | None
    ppy: int
    ends: np.ndarray        # last bar of each annualisation period

    @classmethod
    def of(cls, ts: np.ndarray, equity: np.ndarray) -> _Batch:
        period = metrics.data_period(ts)
        days = metrics.utc_days(ts)
        ppy, freq = metrics.periods_per_year(ts, period, days)
        ends = days[0] if freq == "D" else metrics.period_ends(ts, freq)
        return cls(ts, equity, period, ppy, ends)

    @cached_property
    def returns(self) -> np.ndarray:
        """Period returns per run (metrics.simple_returns along each row)."""
        values = self.equity[:, self.ends]
        with np.errstate(divide="ignore", invalid="ignore"):
            return values[:, 1:] / values[:, :-1] - 1

    @cached_property
    def geo_mean(self) -> np.ndarray:
        """metrics_trades.geometric_mean of each row."""
        returns = self.returns
        growth = (returns if np.isfinite(returns).all()
                  else np.nan_to_num(returns, nan=0.0)) + 1
        with np.errstate(divide="ignore", invalid="ignore"):
            logs = np.log(growth)
        n = returns.shape[1] or np.nan
        out = np.exp(logs.sum(axis=1) / n) - 1
        out[(growth <= 0).any(axis=1)] = 0.0
        return out

    @cached_property
    def first(self) -> np.ndarray:
        return self.equity[:, 0]

    @cached_property
    def last(self) -> np.ndarray:
        return self.equity[:, -1]


def _power(base: np.ndarray, exponent: int) -> np.ndarray:
    """base ** exponent, inf (undefined: None) where metrics.py's float power overflows."""
    with np.errstate(over="ignore", invalid="ignore"):
        return np.power(base, exponent)


def _return_ann_pct(b: _Batch) -> np.ndarray:
    return (_power(1 + b.geo_mean, b.ppy) - 1) * 100


def _volatility_ann_pct(b: _Batch) -> np.ndarray:
    if b.returns.shape[1] < 2:
        return np.full(len(b.equity), np.nan)
    growth = 1 + b.geo_mean
    var = b.returns.var(axis=1, ddof=1)
    with np.errstate(invalid="ignore", over="ignore"):
        return np.sqrt(_power(var + growth**2, b.ppy) - _power(growth, 2 * b.ppy)) * 100


def _downside_deviation_ann_pct(b: _Batch) -> np.ndarray:
    if not b.returns.shape[1]:
        return np.full(len(b.equity), np.nan)
    squares = np.minimum(b.returns, 0) ** 2
    return np.sqrt(np.mean(squares, axis=1)) * math.sqrt(b.ppy) * 100


def _max_drawdown_pct(b: _Batch) -> np.ndarray:
    peak = np.maximum.accumulate(b.equity, axis=1)
    with np.errstate(divide="ignore", invalid="ignore"):
        dd = 1 - b.equity / peak
    return -np.nan_to_num(dd.max(axis=1)) * 100


def _ratio(numerator: np.ndarray, denominator: np.ndarray) -> np.ndarray:
    """metrics_trades.safe_div per element: NaN where the denominator is 0 or NaN."""
    with np.errstate(divide="ignore", invalid="ignore"):
        out = numerator / denominator
    out[(denominator == 0) | np.isnan(denominator)] = np.nan
    return out


def _cagr_pct(b: _Batch) -> np.ndarray:
    duration = int(b.ts[-1]) - int(b.ts[0])
    with np.errstate(invalid="ignore", over="ignore"):   # inf: undefined (None)
        return np.array([metrics.cagr(first, last, duration) * 100
                         for first, last in zip(b.first.tolist(), b.last.tolist(),
                                                strict=True)])


# The curve metrics with a batch formula: name -> (runs) array of values.
_CURVE: dict[str, Callable[[_Batch], np.ndarray]] = {
    "equity_final": lambda b: b.last,
    "net_profit": lambda b: b.last - b.first,
    "return_pct": lambda b: (b.last - b.first) / b.first * 100,
    "return_ann_pct": _return_ann_pct,
    "cagr_pct": _cagr_pct,
    "volatility_ann_pct": _volatility_ann_pct,
    "downside_deviation_ann_pct": _downside_deviation_ann_pct,
    "sharpe_ratio": lambda b: _ratio(_return_ann_pct(b), _volatility_ann_pct(b)),
    "sortino_ratio": lambda b: _ratio(_return_ann_pct(b) / 100,
                                      _downside_deviation_ann_pct(b) / 100),
    "max_drawdown_pct": _max_drawdown_pct,
    "calmar_ratio": lambda b: _ratio(_return_ann_pct(b) / 100, -_max_drawdown_pct(b) / 100),
}

RANKABLE = frozenset(_CURVE) | _TRADE_METRICS


def rank_values(outputs: Sequence[BacktestOutput], metric: str) -> list[float | None]:
    """`compute_metrics(output)[...][metric]` of every output (None where undefined).

    Raises KeyError for a metric outside RANKABLE."""
    if metric not in RANKABLE:
        raise KeyError(metric)
    values: list[float | None] = [None] * len(outputs)
    kind = next(spec.kind for spec in metrics.METRICS if spec.name == metric)
    for indices, batch in _batches(outputs):
        if metric in _TRADE_METRICS:
            years = metrics._years(int(batch.ts[-1]) - int(batch.ts[0]))
            column = [_trade_metric(outputs[i], metric, batch.period, years) for i in indices]
        else:
            column = _CURVE[metric](batch).tolist()
            # metrics.simple_returns drops 0 / 0 returns (a curve at zero): such rare rows
            # have other period counts, so they take the single-run path.
            for row in np.flatnonzero(np.isnan(batch.returns).any(axis=1)).tolist():
                column[row] = _single_run_value(outputs[indices[row]], metric)
        for i, value in zip(indices, column, strict=True):
            values[i] = metrics._clean(value, kind)  # type: ignore[assignment]
    return values


def _single_run_value(output: BacktestOutput, metric: str) -> Any:
    grouped = metrics.compute_metrics(output)
    return next(values[metric] for values in grouped.values() if metric in values)


def _trade_metric(output: BacktestOutput, metric: str, period: int | None,
                  years: float) -> Any:
    rounded = metrics_trades.trade_metrics(
        output.trades, lambda ns: metrics.round_duration(ns, period), years)
    return output.commissions if metric == "commissions" else rounded.get(metric)


def _batches(outputs: Sequence[BacktestOutput]) -> list[tuple[list[int], _Batch]]:
    """The outputs grouped by identical timestamps (one group in a sweep), as batches."""
    groups: list[tuple[np.ndarray, list[int]]] = []
    for i, output in enumerate(outputs):
        ts = np.asarray(output.ts).astype("datetime64[ns]", copy=False).view(np.int64)
        if not len(ts):
            continue   # no bars: every metric is undefined (None)
        group = next((g for g in groups if g[0] is ts or (
            len(g[0]) == len(ts) and np.array_equal(g[0], ts))), None)
        if group is None:
            groups.append((ts, [i]))
        else:
            group[1].append(i)
    return [(indices, _Batch.of(ts, np.stack([np.asarray(outputs[i].equity, dtype=float)
                                              for i in indices])))
            for ts, indices in groups]
