"""One metric of many runs at once: how a parameter sweep ranks every combination.

compute_metrics works out all ~97 metrics of one run. A sweep needs one metric of hundreds of
runs that share their bars (same symbols and range, other params), so here the equity curves
are stacked into a (runs x bars) matrix, the calendar (period ends, periods per year, bar
spacing) is worked out once, and the metric is a handful of NumPy reductions along the rows.

Every formula is the single run's (calendar, returns, risk, drawdown), operation for
operation, so a value here equals `compute_metrics`' value to floating-point noise
(tests/backtest/test_ranking.py holds them to rtol 1e-12, and the Sharpe ratio bit for bit).
Trade metrics are computed per run by metrics.trades (microseconds: no curve work). Metrics
not in RANKABLE (calendar months, benchmark, tails, …) are ranked from full runs instead
(sweeps.py). bench/backtest.py ranks its sweep with rank_values too.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from functools import cached_property
from typing import Any

import numpy as np

from tradeloop.backtest.metrics import calendar
from tradeloop.backtest.metrics.catalogue import METRICS, clean_value
from tradeloop.backtest.metrics.compute import compute_metrics
from tradeloop.backtest.metrics.numeric import geometric_mean, sample_variance
from tradeloop.backtest.metrics.returns import annualized_return, cagr
from tradeloop.backtest.metrics.risk import annualized_volatility
from tradeloop.backtest.metrics.trades import trade_metrics
from tradeloop.backtest.results import BacktestOutput

_TRADE_METRICS = frozenset(spec.name for spec in METRICS if spec.category == "trades")


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
        period = calendar.data_period(ts)
        days = calendar.utc_days(ts)
        ppy, freq = calendar.periods_per_year(ts, period, days)
        ends = days[0] if freq == "D" else calendar.period_ends(ts, freq)
        return cls(ts, equity, period, ppy, ends)

    @cached_property
    def returns(self) -> np.ndarray:
        """Period returns per run (returns.simple_returns along each row)."""
        values = self.equity[:, self.ends]
        with np.errstate(divide="ignore", invalid="ignore"):
            return values[:, 1:] / values[:, :-1] - 1

    @cached_property
    def geo_mean(self) -> np.ndarray:
        """numeric.geometric_mean of each row, row by row: a sum along the rows of the matrix
        adds in another order, and the Sharpe ratio must equal compute_metrics' bit for bit
        (a few µs a run)."""
        with np.errstate(divide="ignore", invalid="ignore", over="ignore"):
            return np.array([geometric_mean(row) for row in self.returns], dtype=np.float64)

    @cached_property
    def variance(self) -> np.ndarray:
        """numeric.sample_variance of each row (two or more returns), row by row like
        geo_mean."""
        with np.errstate(invalid="ignore", over="ignore"):
            return np.array([sample_variance(row) for row in self.returns], dtype=np.float64)

    @cached_property
    def first(self) -> np.ndarray:
        return self.equity[:, 0]

    @cached_property
    def last(self) -> np.ndarray:
        return self.equity[:, -1]


def _return_ann_pct(b: _Batch) -> np.ndarray:
    """returns.annualized_return of each run, in the single run's scalar arithmetic: NumPy's
    vectorised power rounds differently in the last bits, and the Sharpe ratio a sweep
    ranks by must equal compute_metrics' bit for bit."""
    return np.array([annualized_return(row, b.ppy, geo_mean) * 100
                     for row, geo_mean in zip(b.returns, b.geo_mean.tolist(), strict=True)])


def _volatility_ann_pct(b: _Batch) -> np.ndarray:
    """risk.annualized_volatility of each run, scalar like _return_ann_pct."""
    if b.returns.shape[1] < 2:
        return np.full(len(b.equity), np.nan)
    return np.array([annualized_volatility(row, b.ppy, geo_mean, var) * 100
                     for row, geo_mean, var in zip(b.returns, b.geo_mean.tolist(), b.variance,
                                                   strict=True)])


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
    """numeric.safe_div per element: NaN where the denominator is 0 or NaN."""
    with np.errstate(divide="ignore", invalid="ignore"):
        out = numerator / denominator
    out[(denominator == 0) | np.isnan(denominator)] = np.nan
    return out


def _cagr_pct(b: _Batch) -> np.ndarray:
    duration = int(b.ts[-1]) - int(b.ts[0])
    with np.errstate(invalid="ignore", over="ignore"):   # inf: undefined (None)
        return np.array([cagr(first, last, duration) * 100
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
    kind = next(spec.kind for spec in METRICS if spec.name == metric)
    for indices, batch in _batches(outputs):
        if metric in _TRADE_METRICS:
            years = calendar.span_years(int(batch.ts[-1]) - int(batch.ts[0]))
            column = [_trade_metric(outputs[i], metric, batch.period, years) for i in indices]
        else:
            column = _CURVE[metric](batch).tolist()
            # returns.simple_returns drops 0 / 0 returns (a curve at zero): such rare rows
            # have other period counts, so they take the single-run path.
            for row in np.flatnonzero(np.isnan(batch.returns).any(axis=1)).tolist():
                column[row] = _single_run_value(outputs[indices[row]], metric)
        for i, value in zip(indices, column, strict=True):
            values[i] = clean_value(value, kind)  # type: ignore[assignment]
    return values


def _single_run_value(output: BacktestOutput, metric: str) -> Any:
    grouped = compute_metrics(output)
    return next(values[metric] for values in grouped.values() if metric in values)


def _trade_metric(output: BacktestOutput, metric: str, period: int | None,
                  years: float) -> Any:
    rounded = trade_metrics(
        output.trades, lambda ns: calendar.round_duration(ns, period), years)
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
