"""What the engine hands to the metrics and the store: the trades and the equity curve.

Arrays, not objects: a million-bar run stays a handful of NumPy arrays end to end.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

EXIT_REASONS = ("signal", "reverse", "stop_loss", "take_profit", "end")


@dataclass(frozen=True)
class Trades:
    """Closed trades as parallel arrays, in order of entry.

    direction is +1 (long) or -1 (short); size is the positive number of units; prices are
    fill prices after slippage; commission is entry + exit commission in cash; pnl is net of
    commission; return_pct is a fraction (0.05 = +5%), backtesting.py's Trade.pl_pct;
    indices point into the symbol's own bars.
    """

    symbol: np.ndarray          # object (str)
    direction: np.ndarray       # int8
    size: np.ndarray            # float64
    entry_index: np.ndarray     # int64
    exit_index: np.ndarray      # int64
    entry_time: np.ndarray      # datetime64[ns]
    exit_time: np.ndarray       # datetime64[ns]
    entry_price: np.ndarray     # float64
    exit_price: np.ndarray      # float64
    commission: np.ndarray      # float64
    pnl: np.ndarray             # float64
    return_pct: np.ndarray      # float64
    exit_reason: np.ndarray     # object (one of EXIT_REASONS)

    def __len__(self) -> int:
        return len(self.size)

    @classmethod
    def empty(cls) -> Trades:
        return cls(
            symbol=np.array([], dtype=object), direction=np.array([], dtype=np.int8),
            size=np.array([]), entry_index=np.array([], dtype=np.int64),
            exit_index=np.array([], dtype=np.int64),
            entry_time=np.array([], dtype="datetime64[ns]"),
            exit_time=np.array([], dtype="datetime64[ns]"), entry_price=np.array([]),
            exit_price=np.array([]), commission=np.array([]), pnl=np.array([]),
            return_pct=np.array([]), exit_reason=np.array([], dtype=object))


@dataclass(frozen=True)
class BacktestOutput:
    """One run: the portfolio's equity per timestamp, exposure, trades and the benchmark.

    ts is the union of every symbol's bar timestamps (datetime64[ns], UTC, ascending);
    equity is cash plus marked-to-close positions at each ts; in_market is True from each
    trade's entry bar through its exit bar (backtesting.py's exposure); benchmark_close
    holds, per symbol, its closes forward-filled onto ts (for buy & hold, alpha and beta);
    benchmark_start, per symbol, the index into ts of the bar at whose close buy & hold buys
    it (the end of the indicators' warm-up; 0, its first finite close, when absent).
    """

    ts: np.ndarray
    equity: np.ndarray
    in_market: np.ndarray
    trades: Trades
    cash: float
    commissions: float
    benchmark_close: dict[str, np.ndarray] = field(default_factory=dict)
    benchmark_start: dict[str, int] = field(default_factory=dict)
