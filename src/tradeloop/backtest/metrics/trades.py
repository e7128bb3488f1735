"""Trade and exposure metrics, from the trades table and the in-market flags.

Every function works on whole arrays (no per-trade Python loop): 5,000 trades cost
microseconds. A trade wins when its pnl > 0 and loses when pnl < 0 (backtesting.py's win
rate); trade returns are fractions like backtesting.py's Trade.pl_pct.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import numpy as np

from tradeloop.backtest.metrics.calendar import NS_PER_DAY, duration_stats_ns
from tradeloop.backtest.metrics.numeric import (
    geometric_mean,
    longest_run,
    maximum,
    mean,
    mean_and_std,
    minimum,
    runs,
    safe_div,
    total,
)
from tradeloop.backtest.results import Trades


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
    """Longest and mean exit_time - entry_time (duration_stats_ns), ceiled like
    backtesting.py's."""
    durations = (np.asarray(trades.exit_time, dtype="datetime64[ns]").view(np.int64)
                 - np.asarray(trades.entry_time, dtype="datetime64[ns]").view(np.int64))
    longest, average = duration_stats_ns(durations)
    return {
        "max_trade_duration_days": round_duration(longest),
        "avg_trade_duration_days": round_duration(average),
    }


def win_loss_stats(pnl: np.ndarray, returns: np.ndarray, outcome: _Outcomes) -> dict[str, Any]:
    """Counts, sums and means of the winning and the losing trades."""
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
    """Counts, win rates and pnl of the long and the short trades."""
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
    """Bars held per trade, and trades per year."""
    bars = np.asarray(trades.exit_index) - np.asarray(trades.entry_index)
    return {
        "avg_bars_in_trade": mean(bars),
        "max_bars_in_trade": maximum(bars),
        "trades_per_year": safe_div(len(bars), years),
    }


def exit_reason_stats(exit_reason: np.ndarray) -> dict[str, Any]:
    """How many trades a stop loss and a take profit closed."""
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
    """Longest stretch without a position, in days (0 when always in the market)."""
    starts, ends = runs(in_market, negate=True)
    if not len(starts):
        return 0.0
    stop = np.minimum(ends, len(ts) - 1)
    return float(np.maximum.reduce(ts[stop] - ts[starts]) / NS_PER_DAY)
