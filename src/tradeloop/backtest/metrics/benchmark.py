"""Benchmark metrics: equal-weight buy & hold, and the equity against the market (beta,
correlation, tracking error, information ratio, captures)."""

from __future__ import annotations

import math
from typing import TYPE_CHECKING, Any

import numpy as np

from tradeloop.backtest.metrics.calendar import at_ends
from tradeloop.backtest.metrics.drawdown import max_drawdown
from tradeloop.backtest.metrics.numeric import GrowthLogs, mean, mean_and_std, nan_to_num, safe_div
from tradeloop.backtest.metrics.returns import Returns, annualized_growth, annualized_return
from tradeloop.backtest.metrics.risk import arithmetic_sharpe
from tradeloop.backtest.results import BacktestOutput

if TYPE_CHECKING:
    from tradeloop.backtest.metrics.curve import Curve


def benchmark_value(closes: dict[str, np.ndarray], n: int,
                    starts: dict[str, int] | None = None) -> np.ndarray | None:
    """Equal-weight buy & hold value of one unit of cash per bar.

    Each symbol gets 1 / len(closes), bought at its first finite close at or after its bar
    in starts (default 0) and held; before that its share waits in cash (value 1); gaps
    keep the last close.
    """
    if not closes:
        return None
    starts = starts or {}
    values = [_relative_to_first(np.asarray(close, dtype=float), starts.get(symbol, 0))
              for symbol, close in closes.items()]
    if len(values) == 1:
        return values[0]
    total = np.add.reduce(values, axis=0)
    return np.divide(total, len(values), out=total)


def _relative_to_first(close: np.ndarray, start: int = 0) -> np.ndarray:
    if len(close) and start < len(close) and math.isfinite(np.add.reduce(close[start:])):
        # Every close from start on is finite (a sum is finite only then): bought there.
        value = close / close[start]
        value[:start] = 1.0
        return value
    finite = np.isfinite(close)
    finite[:start] = False
    if not finite.any():
        return np.ones(len(close))
    first = int(np.argmax(finite))
    if not finite[first:].all():
        # Forward-fill gaps: the index of the last finite close at or before each bar.
        close = close[np.maximum.accumulate(np.where(finite, np.arange(len(close)), first))]
    value = close / close[first]
    value[:first] = 1.0
    return value


def buy_hold_return(closes: dict[str, np.ndarray],
                    starts: dict[str, int] | None = None) -> float:
    """Mean over symbols of (last close - first close) / first close, fraction; a symbol's
    first close is its first finite one at or after its bar in starts (default 0)."""
    returns = []
    for symbol, all_closes in closes.items():
        close = all_closes[(starts or {}).get(symbol, 0):]
        if len(close) and math.isfinite(close[0]) and math.isfinite(close[-1]):
            returns.append((close[-1] - close[0]) / close[0])   # the usual case, no scan
            continue
        finite = np.isfinite(close)
        if finite.any():
            first = close[np.argmax(finite)]
            last = close[len(close) - 1 - np.argmax(finite[::-1])]
            returns.append((last - first) / first)
    if len(returns) == 1:   # np.mean of one value is that value
        return float(returns[0])
    return float(np.mean(returns)) if returns else math.nan


def beta(equity: np.ndarray, market: np.ndarray, out: np.ndarray | None = None,
         market_is_scratch: bool = False, spare: np.ndarray | None = None) -> float:
    """cov / var of per-bar log returns (backtesting.py, with the benchmark as market).

    out and spare: float arrays of len(equity) to work in (overwritten), instead of new ones;
    market_is_scratch: market may be overwritten too (one new array less)."""
    if len(equity) < 3:
        return math.nan
    # diff(log(v)) is log(v[1:] / v[:-1]) to ~1e-15 at half the cost of log on 1M bars.
    # np.diff's subtraction, with one log buffer for both curves (8 MB per 1M bars).
    logs = np.log(equity, out=out)
    x = np.subtract(logs[1:], logs[:-1], out=None if spare is None else spare[:-1])
    np.log(market, out=logs)
    y = np.subtract(logs[1:], logs[:-1], out=market[:-1] if market_is_scratch else None)
    del logs
    x -= mean(x)
    y_mean = mean(y)
    y -= y_mean
    # einsum stays on one core; BLAS dot spins extra threads for no gain at this size.
    ss_y = float(np.einsum("i,i->", y, y))
    if ss_y <= len(y) * (1e-12 * y_mean) ** 2:
        # A constant benchmark return leaves only rounding noise as variance.
        return math.nan
    return safe_div(float(np.einsum("i,i->", x, y)), ss_y)


def _capture(returns: GrowthLogs, bench: GrowthLogs, select: np.ndarray, ppy: int) -> float:
    """Annual return ratio over the selected periods (empyrical.capture) on logs already
    taken; select is an index array."""
    if not len(select):
        return math.nan
    return safe_div(annualized_return(returns.returns, ppy, returns.geometric_mean(select)),
                    annualized_return(bench.returns, ppy, bench.geometric_mean(select)))


def benchmark_metrics(c: Curve, output: BacktestOutput, return_pct: float,
                      spare: np.ndarray | None = None) -> dict[str, Any]:
    """Buy & hold (bought at each symbol's benchmark_start, the end of the warm-up) and the
    equity against the market (the same symbols from their first close: beta, correlation,
    captures), as backtesting.py measures Buy & Hold after the warm-up and Beta on every bar.

    spare: a float array of len(c.ts) beta may overwrite, instead of a new one."""
    bench = benchmark_value(output.benchmark_close, len(c.ts))
    if bench is None:
        return {}
    r, b = _paired_returns(c, at_ends(bench, c.ends))
    starts = output.benchmark_start
    bh_pct = buy_hold_return(output.benchmark_close, starts) * 100
    if any(starts.values()):
        held = benchmark_value(output.benchmark_close, len(c.ts), starts)
        bh_annual = annualized_growth(at_ends(held, c.ends), c.ppy)
    else:   # bought at the first close: buy & hold is the market itself
        held, bh_annual = bench, annualized_return(b.values, c.ppy, b.growth.geometric_mean())
    bh_max_drawdown = max_drawdown(held, c.scratch)
    # bench is this function's own array (benchmark_value's): beta may overwrite it.
    b_beta = beta(c.equity, bench, c.scratch, market_is_scratch=True, spare=spare)
    active = r.values - b.values
    active_mean, active_std = mean_and_std(active)
    return {
        "buy_hold_return_pct": bh_pct,
        "buy_hold_return_ann_pct": bh_annual * 100,
        "buy_hold_max_drawdown_pct": -nan_to_num(bh_max_drawdown) * 100,
        "excess_return_pct": return_pct - bh_pct,
        # Jensen's alpha on total returns, backtesting.py's definition.
        "alpha_pct": return_pct - b_beta * bh_pct, "beta": b_beta,
        "correlation": _correlation(r, b),
        "tracking_error_ann_pct": active_std * math.sqrt(c.ppy) * 100,
        "information_ratio": arithmetic_sharpe(active, c.ppy, (active_mean, active_std)),
        # Periods where the benchmark rose (b > 0) or fell (b < 0).
        "up_capture": _capture(r.growth, b.growth, b.gains, c.ppy),
        "down_capture": _capture(r.growth, b.growth, b.losses, c.ppy),
    }


def _paired_returns(c: Curve, bench: np.ndarray) -> tuple[Returns, Returns]:
    """Period returns of the equity and of the benchmark (its value at c.ends), on the
    periods where both are defined."""
    b = bench[1:] / bench[:-1] - 1
    if len(b) == len(c.returns):
        b_returns = Returns.of(b)
        # A mean is finite only when every value is: nothing to drop, and c.returns, which
        # then dropped nothing either, are the equity's returns.
        if math.isfinite(b_returns.mean) and math.isfinite(c.r.mean):
            return c.r, b_returns
    equity = at_ends(c.equity, c.ends)
    r = equity[1:] / equity[:-1] - 1
    paired = np.isfinite(r) & np.isfinite(b)
    r, b = r[paired], b[paired]
    # The same division on the same values as c.returns when no period was dropped.
    return (c.r if len(r) == len(c.returns) else Returns.of(r)), Returns.of(b)


def _correlation(x: Returns, y: Returns) -> float:
    if len(x.values) < 2 or not x.std or not y.std:
        return math.nan
    x_dev, y_dev = x.deviations, y.deviations   # x - mean(x), y - mean(y)
    return safe_div(float(x_dev @ y_dev), math.sqrt(float(x_dev @ x_dev) * float(y_dev @ y_dev)))


