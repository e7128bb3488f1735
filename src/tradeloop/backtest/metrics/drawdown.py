"""Drawdown metrics: depth below the running peak, episodes, their durations, ulcer index."""

from __future__ import annotations

import math
from typing import TYPE_CHECKING, Any

import numpy as np

from tradeloop.backtest.metrics.calendar import duration_stats_ns, round_duration
from tradeloop.backtest.metrics.numeric import maximum, mean, minimum, nan_to_num

if TYPE_CHECKING:
    from tradeloop.backtest.metrics.curve import Curve


def drawdown(values: np.ndarray, peak: np.ndarray | None = None) -> np.ndarray:
    """Fraction below the running peak per bar (>= 0), backtesting.py's 1 - equity / peak."""
    if peak is None:
        peak = np.maximum.accumulate(values)
    dd = np.divide(values, peak)
    return np.subtract(1, dd, out=dd)   # in place: one 8 MB array less per million bars


def max_drawdown(values: np.ndarray, out: np.ndarray | None = None) -> float:
    """Deepest drawdown fraction, max(drawdown(values)) with one temporary array less.

    out: a float array of len(values) to work in (overwritten), instead of a new one."""
    ratio = np.maximum.accumulate(values, out=out)
    np.divide(values, ratio, out=ratio)
    return 1 - minimum(ratio) if len(ratio) else math.nan


def drawdown_episodes(dd: np.ndarray, ts: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Duration (ns) and depth of each episode, as backtesting.py's drawdown peaks.

    An episode spans two consecutive bars at a peak (dd == 0) with at least one bar between
    them, or the last peak and the final bar; its depth is the deepest dd in between.
    """
    at_peak = (dd == 0).nonzero()[0]
    if not len(at_peak) or at_peak[-1] != len(dd) - 1:
        at_peak = np.concatenate((at_peak, (len(dd) - 1,)))
    if len(at_peak) < 2:
        return np.array([], dtype=np.int64), np.array([])
    start, end = at_peak[:-1], at_peak[1:]
    # reduceat gives max over [p_j, p_j+1); the episode also includes its end bar.
    depth = np.maximum(np.maximum.reduceat(dd, at_peak)[:-1], dd.take(end))
    keep = (end - start) > 1
    return (ts.take(end) - ts.take(start))[keep], depth[keep]


def drawdown_metrics(c: Curve) -> dict[str, Any]:
    """The drawdown category, from the per-bar drawdown the curve computed once."""
    durations, depths = drawdown_episodes(c.dd, c.ts)
    longest, average = duration_stats_ns(durations)
    return {
        "max_drawdown_pct": -nan_to_num(maximum(c.dd)) * 100,
        "avg_drawdown_pct": -mean(depths) * 100,
        "max_drawdown_duration_days": round_duration(longest, c.period),
        "avg_drawdown_duration_days": round_duration(average, c.period),
        "max_drawdown_cash": c.max_drawdown_cash,
        "current_drawdown_pct": -c.dd[-1] * 100,
        "num_drawdowns": len(depths),
        "time_in_drawdown_pct": np.count_nonzero(c.dd > 0) / len(c.dd) * 100,
        "ulcer_index": math.sqrt(np.einsum("i,i->", c.dd, c.dd) / len(c.dd)) * 100,
    }

