"""Trade and exposure metrics, and the small numeric helpers metrics.py shares.

Split from metrics.py to keep each file short; metrics.py documents the conventions. Every
function works on whole arrays (no per-trade Python loop): 5,000 trades cost microseconds.
A trade wins when its pnl > 0 and loses when pnl < 0 (backtesting.py's win rate); trade
returns are fractions like backtesting.py's Trade.pl_pct.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import numpy as np

from tradeloop.backtest.results import Trades

_NS_PER_DAY = 86_400_000_000_000

# ---------------------------------------------------------------- shared helpers


def geometric_mean(returns: np.ndarray) -> float:
    """Per-period compounded mean; 0 when any return is <= -100 % (backtesting.py)."""
    growth = returns + 1
    if len(growth) and np.minimum.reduce(growth) > 0:   # the usual case: NaN fails this too
        total = np.add.reduce(np.log(growth))
        if math.isfinite(total):           # so every return was finite: the same sum
            return math.exp(total / len(growth)) - 1
    # nan_to_num (NaN -> 0, inf -> the largest float) only when needed: it is the slow part.
    growth = (returns if np.isfinite(returns).all() else np.nan_to_num(returns, nan=0.0)) + 1
    if np.any(growth <= 0):
        return 0.0
    return math.exp(np.log(growth).sum() / (len(growth) or np.nan)) - 1


class GrowthLogs:
    """log(1 + returns) computed once, for the geometric mean of the returns and of subsets
    of them (benchmark captures): the same sums as geometric_mean, with one log in all."""

    def __init__(self, returns: np.ndarray):
        self.returns = returns
        self.logs = returns + 1
        np.log(self.logs, out=self.logs)   # (under compute_metrics' np.errstate)

    def geometric_mean(self, select: np.ndarray | None = None) -> float:
        """geometric_mean(returns[select]) (all of them without select); select is an
        index array (take() costs less than fancy indexing)."""
        logs = self.logs if select is None else self.logs.take(select)
        if len(logs):
            total = np.add.reduce(logs)
            # Finite only when every 1 + return was positive and finite: geometric_mean's
            # own fast path, on the same values in the same order.
            if math.isfinite(total):
                return math.exp(total / len(logs)) - 1
        return geometric_mean(self.returns if select is None else self.returns.take(select))


def safe_div(numerator: float, denominator: float) -> float:
    """numerator / denominator; NaN when the denominator is 0 or NaN (never inf).

    backtesting.py writes this `x / (y or np.nan)`.
    """
    if not denominator or math.isnan(denominator):
        return math.nan
    return float(numerator / denominator)


def mean(values: np.ndarray) -> float:
    """np.mean (a float64 sum / count, bit for bit) without its Python overhead."""
    n = len(values)
    return float(np.add.reduce(values, dtype=np.float64) / n) if n else math.nan


def std(values: np.ndarray) -> float:
    """Sample standard deviation (ddof 1), pandas' default; NaN below two values.

    Exactly 0 for identical values (as empyrical): the mean's rounding would leave ~1e-18
    and turn a ratio over it into a huge number instead of undefined.
    """
    n = len(values)
    if n < 2:
        return math.nan
    if np.maximum.reduce(values) == np.minimum.reduce(values):
        return 0.0
    return float(np.sqrt(sample_variance(values)))


def mean_and_std(values: np.ndarray) -> tuple[float, float]:
    """(mean(values), std(values)), the variance's deviations taken from mean's own sum."""
    n = len(values)
    if n < 2:
        return mean(values), math.nan
    values_sum = np.add.reduce(values)
    if np.maximum.reduce(values) == np.minimum.reduce(values):
        return float(values_sum / n), 0.0
    dev = values - values_sum / n   # sample_variance's steps
    np.multiply(dev, dev, out=dev)
    return float(values_sum / n), float(np.sqrt(np.add.reduce(dev) / (n - 1)))


def sample_variance(values: np.ndarray) -> np.float64:
    """values.var(ddof=1) step for step (sum / n, squared deviations, sum / (n - 1)), without
    the method's wrapper; n >= 2."""
    dev = values - np.add.reduce(values, dtype=np.float64) / len(values)
    np.multiply(dev, dev, out=dev)
    return np.add.reduce(dev) / (len(values) - 1)


# The ufuncs' reduce directly: np.max / np.min's wrappers cost more than the work on a few
# hundred values (the same result).
def maximum(values: np.ndarray) -> float:
    return float(np.maximum.reduce(values)) if len(values) else math.nan


def minimum(values: np.ndarray) -> float:
    return float(np.minimum.reduce(values)) if len(values) else math.nan


def total(values: np.ndarray) -> float:
    """values.sum() (the same pairwise float64 sum) without the method's wrapper."""
    return np.add.reduce(values)


def runs(mask: np.ndarray, negate: bool = False) -> tuple[np.ndarray, np.ndarray]:
    """Start and end (exclusive) index of every run of True in mask (of False if negate)."""
    padded = np.zeros(len(mask) + 2, dtype=bool)
    if negate:
        np.logical_not(mask, out=padded[1:-1])
    else:
        padded[1:-1] = mask
    # Edges alternate, a start first: False -> True at a start, True -> False at an end.
    edges = (padded[1:] != padded[:-1]).nonzero()[0]
    return edges[::2], edges[1::2]


def longest_run(mask: np.ndarray) -> int:
    starts, ends = runs(mask)
    return int(np.maximum.reduce(ends - starts)) if len(starts) else 0


# ---------------------------------------------------------------- trades


def trade_metrics(trades: Trades, round_duration: Callable[[int | None], float],
                  years: float) -> dict[str, Any]:
    """All trade metrics; round_duration turns ns (None: undefined) into (ceiled) days."""
    pnl = np.asarray(trades.pnl, dtype=float)
    returns = np.asarray(trades.return_pct, dtype=float)
    outcome = _Outcomes.of(pnl)   # shared by every group below
    return {
        **backtesting_trade_stats(pnl, returns, outcome),
        **duration_stats(trades, round_duration),
        **win_loss_stats(pnl, returns, outcome),
        **side_stats(np.asarray(trades.direction), pnl, outcome),
        **streak_stats(outcome),
        **holding_stats(trades, years),
        **exit_reason_stats(np.asarray(trades.exit_reason)),
    }


@dataclass(frozen=True)
class _Outcomes:
    """Which trades won and lost, and the pnl sums several groups share."""

    wins: np.ndarray        # pnl > 0
    losses: np.ndarray      # pnl < 0
    win_pnl: np.ndarray     # pnl[wins]
    loss_pnl: np.ndarray    # pnl[losses]
    gross_profit: float     # total(win_pnl)
    gross_loss: float       # total(loss_pnl)
    pnl_mean: float         # mean(pnl)
    pnl_std: float          # std(pnl)

    @classmethod
    def of(cls, pnl: np.ndarray) -> _Outcomes:
        wins, losses = pnl > 0, pnl < 0
        win_pnl, loss_pnl = pnl[wins], pnl[losses]
        return cls(wins, losses, win_pnl, loss_pnl, total(win_pnl), total(loss_pnl),
                   *mean_and_std(pnl))

    @property
    def payoff_ratio(self) -> float:
        """Mean winning pnl / |mean losing pnl|; NaN without wins or losses.

        mean(pnl[wins]) is the gross profit (the same sum) over the number of wins."""
        wins, losses = len(self.win_pnl), len(self.loss_pnl)
        return safe_div(self.gross_profit / wins if wins else math.nan,
                        -(self.gross_loss / losses) if losses else math.nan)


def backtesting_trade_stats(pnl: np.ndarray, returns: np.ndarray,
                            outcome: _Outcomes) -> dict[str, Any]:
    """backtesting.py's trade statistics, its definitions verbatim."""
    n = len(pnl)
    win_rate = len(outcome.win_pnl) / n if n else math.nan   # mean(pnl > 0)
    return {
        "num_trades": n,
        "win_rate_pct": win_rate * 100,
        "best_trade_pct": maximum(returns) * 100,
        "worst_trade_pct": minimum(returns) * 100,
        "avg_trade_pct": geometric_mean(returns) * 100,
        # Return-based, not pnl-based (see profit_factor_pnl).
        "profit_factor": safe_div(total(returns[returns > 0]), abs(total(returns[returns < 0]))),
        "expectancy_pct": mean(returns) * 100,
        "sqn": safe_div(math.sqrt(n) * outcome.pnl_mean, outcome.pnl_std),
        "kelly_criterion": win_rate - (1 - win_rate) / outcome.payoff_ratio,
    }


def duration_stats(trades: Trades, round_duration: Callable[[int | None], float]
                   ) -> dict[str, Any]:
    """Longest and mean exit_time - entry_time, ceiled like backtesting.py's.

    In int64 ns: the max and the mean are pandas' TimedeltaIndex.max() / .mean() (a float64
    sum / count truncated to whole ns), without building the index.
    """
    durations = (np.asarray(trades.exit_time, dtype="datetime64[ns]").view(np.int64)
                 - np.asarray(trades.entry_time, dtype="datetime64[ns]").view(np.int64))
    if not len(durations):
        return {"max_trade_duration_days": round_duration(None),
                "avg_trade_duration_days": round_duration(None)}
    average = int(np.add.reduce(durations, dtype=np.float64) / float(len(durations)))
    return {
        "max_trade_duration_days": round_duration(int(np.maximum.reduce(durations))),
        "avg_trade_duration_days": round_duration(average),
    }


def win_loss_stats(pnl: np.ndarray, returns: np.ndarray, outcome: _Outcomes) -> dict[str, Any]:
    gross_profit, gross_loss = outcome.gross_profit, outcome.gross_loss
    return {
        "num_winning_trades": len(outcome.win_pnl),
        "num_losing_trades": len(outcome.loss_pnl),
        "gross_profit": gross_profit, "gross_loss": gross_loss,
        "profit_factor_pnl": safe_div(gross_profit, -gross_loss),
        "avg_trade_pnl": outcome.pnl_mean,
        "largest_win": maximum(outcome.win_pnl), "largest_loss": minimum(outcome.loss_pnl),
        "avg_win_pct": mean(returns[outcome.wins]) * 100,
        "avg_loss_pct": mean(returns[outcome.losses]) * 100,
        "payoff_ratio": outcome.payoff_ratio,
    }


def side_stats(direction: np.ndarray, pnl: np.ndarray, outcome: _Outcomes) -> dict[str, Any]:
    long, short = direction > 0, direction < 0
    n_long, n_short = np.count_nonzero(long), np.count_nonzero(short)
    # The share of a side's trades with pnl > 0, mean(pnl[long] > 0), as a count.
    long_wins = np.count_nonzero(outcome.wins & long)
    short_wins = np.count_nonzero(outcome.wins & short)
    return {
        "num_long_trades": n_long,
        "num_short_trades": n_short,
        "long_win_rate_pct": (long_wins / n_long if n_long else math.nan) * 100,
        "short_win_rate_pct": (short_wins / n_short if n_short else math.nan) * 100,
        # Sums over no trades are 0 cash, not undefined.
        "long_pnl": total(pnl[long]), "short_pnl": total(pnl[short]),
    }


def streak_stats(outcome: _Outcomes) -> dict[str, Any]:
    """Longest runs in entry order; a break-even trade (pnl == 0) ends both kinds of run."""
    return {
        "max_consecutive_wins": longest_run(outcome.wins),
        "max_consecutive_losses": longest_run(outcome.losses),
    }


def holding_stats(trades: Trades, years: float) -> dict[str, Any]:
    bars = np.asarray(trades.exit_index) - np.asarray(trades.entry_index)
    return {
        "avg_bars_in_trade": mean(bars),
        "max_bars_in_trade": maximum(bars),
        "trades_per_year": safe_div(len(bars), years),
    }


def exit_reason_stats(exit_reason: np.ndarray) -> dict[str, Any]:
    # A list's count: comparing an object array calls Python's == per element anyway.
    reasons = exit_reason.tolist()
    return {
        "num_stop_loss_exits": reasons.count("stop_loss"),
        "num_take_profit_exits": reasons.count("take_profit"),
    }


# ---------------------------------------------------------------- exposure


def exposure_metrics(ts: np.ndarray, in_market: np.ndarray, return_pct: float
                     ) -> dict[str, Any]:
    """Exposure counts bars, not time, like backtesting.py's Exposure Time [%].

    ts is int64 ns; a flat stretch lasts from its first flat bar to the bar a position is
    opened again (or the last bar).
    """
    exposure = np.count_nonzero(in_market) / len(in_market)   # mean(in_market), n > 0
    return {
        "exposure_time_pct": exposure * 100,
        "exposure_adjusted_return_pct": safe_div(return_pct, exposure),
        "longest_flat_period_days": longest_flat_period_days(ts, in_market),
    }


def longest_flat_period_days(ts: np.ndarray, in_market: np.ndarray) -> float:
    starts, ends = runs(in_market, negate=True)
    if not len(starts):
        return 0.0
    stop = np.minimum(ends, len(ts) - 1)
    return float(np.maximum.reduce(ts[stop] - ts[starts]) / _NS_PER_DAY)
