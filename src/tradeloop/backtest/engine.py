"""The backtest engine: a strategy's signals on each symbol's bars → trades and equity curves.

It reproduces backtesting.py (0.6.6) for the same strategy: same trades, sizes, prices and
equity, to floating-point rounding (the tests prove it on its bundled data). It is fast
because it never steps through bars in Python: it jumps from one position change to the
next (signal events found with NumPy, stop/target hits found on array slices) and builds the
equity and position curves at the end with vectorised arithmetic.

Timing
    Signals are known at a bar's close. With ``fill="open"`` (default) the market order they
    cause fills at the NEXT bar's open; with ``fill="close"`` it fills at the signal bar's own
    close (backtesting.py's ``trade_on_close=True``). A signal on the last bar is never acted
    on: with ``fill="open"`` there is no next bar, and with ``fill="close"`` the position
    would be closed again at that same close (see End).

Position logic, at each signal bar t (one position at a time, no pyramiding)
    - Flat: ``entry_long`` opens a long, ``entry_short`` opens a short.
    - Long: ``entry_short`` closes the long and opens a short (a reversal, exit reason
      "reverse"); otherwise ``exit_long`` closes it (exit reason "signal"). Short: mirrored
      (``entry_long`` reverses, ``exit_short`` closes).
    - ``entry_long`` and ``entry_short`` on the same bar conflict and are both ignored, in
      every state; exits on that bar still apply.
    - After a stop-loss or take-profit exit the position is flat and the next entry signal
      (from the exit bar's close on) opens a trade as usual.

Sizing
    A new position gets ``position_size_pct`` % of the equity at the fill, which is the cash
    then, since it only opens when flat (for a reversal: the cash after the close). As in
    backtesting.py's ``buy()`` / ``sell()``: 100 % means the fraction ``1 - 2**-52`` (its
    default ``size``), and the units are ``(cash * fraction - commission_fixed) //
    (fill + commission * fill)``, where ``//`` is Python's floor division, evaluated in the
    same floating-point order as backtesting.py. ``size_units="fractional"`` uses ``/``
    instead of ``//``. No order is placed when that gives no units. (backtesting.py adds
    ``commission_fixed / fraction`` per UNIT here; we count it once per order, as charged.)

Costs
    Commission is ``commission_fixed + commission * units * fill price`` on each order, at
    entry and at exit (backtesting.py's ``commission=(fixed, relative)``). Slippage moves
    every fill against the trader: buys at ``price * (1 + bps/1e4)``, sells at ``price * (1 -
    bps/1e4)``, on entries and on exits. (backtesting.py's ``spread`` moves entries only, so
    it equals slippage only for the entry side.) Trade prices are the slipped fill prices.

Stop-loss and take-profit (``RiskSettings``)
    Levels are percent from the entry FILL price: long stop ``entry * (1 - sl/100)``, target
    ``entry * (1 + tp/100)``; short mirrored. They are checked against each bar's low and
    high from the bar after the signal on: for ``fill="open"`` that is the entry bar itself
    (as backtesting.py checks contingent orders on the bar its market order fills). A hit
    fills at the level, or at the bar's open if the bar gapped through it, then slips. If
    the stop and the target are both inside one bar, the stop wins (pessimistic, like
    backtesting.py). Order within a bar: a fill at its open (a signal of the bar before,
    fill="open") comes first, then the stop/target check on its range, then the signals at
    its close; so a level reached on bar k beats a signal on bar k or later.

End
    A trade still open after the last bar is closed at the last bar's close (exit reason
    "end"), paying commission and slippage like any exit (backtesting.py's
    ``finalize_trades=True``, which however fills at that bar's open).

Several symbols
    The cash is split equally among the symbols and each runs on its own. The portfolio
    equity is the sum of the symbols' equities on the union of their timestamps, each
    forward-filled; before a symbol's first bar its equity is its share of the cash.

Equity is marked at each bar's close after that bar's fills: cash (initial cash plus closed
trades' pnl, minus the open trade's entry commission) plus the open trade's unrealised pnl.
(backtesting.py logs a bar's equity before it fills orders at that bar's close, so with
``trade_on_close`` its curve shows the commissions of those fills one bar later.)
Shorts need no margin beyond the cash and there is no margin call: unlike backtesting.py the
run goes on if equity falls to zero or below.
"""

from __future__ import annotations

import sys
from bisect import bisect_left
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Literal

import numpy as np

from tradeloop.backtest.results import BacktestOutput, Trades
from tradeloop.strategies.compiler import StrategySignals
from tradeloop.strategies.definition import RiskSettings

FULL_EQUITY = 1 - sys.float_info.epsilon  # backtesting.py's default order size: "all of it"
LONG, SHORT = 1, -1
_FIRST_CHUNK = 256  # bars scanned for a stop/target hit before doubling the window


@dataclass(frozen=True)
class BacktestOptions:
    """Money and execution settings of a run (see the module docstring for their meaning)."""

    cash: float = 10_000.0
    commission: float = 0.0          # fraction of notional, charged on each side
    commission_fixed: float = 0.0    # cash per order, on each side
    slippage_bps: float = 0.0        # fills move against you by this many basis points
    fill: Literal["open", "close"] = "open"   # next bar's open, or the signal bar's close
    size_units: Literal["whole", "fractional"] = "whole"

    def __post_init__(self) -> None:
        if not 0 < self.cash < float("inf"):
            raise ValueError(f"cash must be positive and finite, got {self.cash}")
        if not 0 <= self.commission < 1 or not 0 <= self.commission_fixed < float("inf"):
            raise ValueError("commission must be in [0, 1) and commission_fixed >= 0")
        if not 0 <= self.slippage_bps < 10_000:
            raise ValueError(f"slippage_bps must be in [0, 10000), got {self.slippage_bps}")
        if self.fill not in ("open", "close"):
            raise ValueError(f"fill must be 'open' or 'close', got {self.fill!r}")
        if self.size_units not in ("whole", "fractional"):
            raise ValueError(f"size_units must be 'whole' or 'fractional', got "
                             f"{self.size_units!r}")


@dataclass(frozen=True)
class SymbolBars:
    """One symbol's bars, oldest first: ts is datetime64[ns], prices are float64 arrays."""

    symbol: str
    ts: np.ndarray
    open: np.ndarray
    high: np.ndarray
    low: np.ndarray
    close: np.ndarray

    def __len__(self) -> int:
        return len(self.close)


@dataclass(frozen=True)
class SymbolRun:
    """One symbol's simulation: its own bars' equity and position, and its closed trades.

    equity[i] and position[i] (signed units, + long / - short, 0 flat) hold at bar i's close;
    cash is the cash the symbol started with; commissions sums every order's commission.
    """

    symbol: str
    ts: np.ndarray
    cash: float
    equity: np.ndarray
    position: np.ndarray
    trades: Trades
    commissions: float


def run_symbol(bars: SymbolBars, signals: StrategySignals, risk: RiskSettings,
               options: BacktestOptions, *, cash: float | None = None) -> SymbolRun:
    """Simulate one symbol, starting with `cash` (default: options.cash)."""
    start_cash = options.cash if cash is None else float(cash)
    _check_lengths(bars, signals)
    ledger = _Ledger(bars, options, risk, start_cash)
    _simulate(bars, signals, risk, ledger, delay=1 if options.fill == "open" else 0)
    equity, position = ledger.curves()
    trades = ledger.trades()
    return SymbolRun(symbol=bars.symbol, ts=np.asarray(bars.ts, dtype="datetime64[ns]"),
                     cash=start_cash, equity=equity, position=position, trades=trades,
                     commissions=float(trades.commission.sum()))


def run_backtest(inputs: Sequence[tuple[SymbolBars, StrategySignals]], risk: RiskSettings,
                 options: BacktestOptions) -> BacktestOutput:
    """Simulate every symbol on an equal share of the cash and add them up on one timeline."""
    if not inputs:
        raise ValueError("a backtest needs at least one symbol")
    symbols = [bars.symbol for bars, _ in inputs]
    if len(set(symbols)) != len(symbols):
        raise ValueError(f"symbols must be distinct, got {symbols}")
    share = options.cash / len(inputs)
    runs = [run_symbol(bars, signals, risk, options, cash=share) for bars, signals in inputs]
    ts = runs[0].ts if len(runs) == 1 else np.unique(np.concatenate([r.ts for r in runs]))
    equity = np.zeros(len(ts))
    in_market = np.zeros(len(ts), dtype=bool)
    benchmark: dict[str, np.ndarray] = {}
    for run, (bars, _) in zip(runs, inputs, strict=True):
        close = np.asarray(bars.close, dtype=np.float64)
        if len(run.ts) == len(ts) and np.array_equal(run.ts, ts):  # the common, fast case
            equity += run.equity
            in_market |= run.position != 0
            benchmark[run.symbol] = close
            continue
        # The symbol's latest bar at or before each timestamp (-1: none yet).
        at = np.searchsorted(run.ts, ts, side="right") - 1
        started = at >= 0
        index = np.maximum(at, 0)  # before its first bar: its first bar (back-filled)
        if len(run.ts):
            equity += np.where(started, run.equity[index], run.cash)
            in_market |= started & (run.position[index] != 0)
            benchmark[run.symbol] = close[index]
        else:
            equity += run.cash
            benchmark[run.symbol] = np.full(len(ts), np.nan)
    return BacktestOutput(ts=ts, equity=equity, in_market=in_market,
                          trades=_concat_trades([run.trades for run in runs]),
                          cash=float(options.cash),
                          commissions=float(sum(run.commissions for run in runs)),
                          benchmark_close=benchmark)


# --- the event loop ----------------------------------------------------------------------


@dataclass(frozen=True)
class _Events:
    """Signal bars where something can happen, per state, as sorted lists for bisect."""

    go_long: np.ndarray      # entry_long without a conflicting entry_short
    go_short: np.ndarray
    from_flat: list[int]     # bars where a flat book opens a trade
    from_long: list[int]     # bars where a long is reversed or closed
    from_short: list[int]

    @classmethod
    def of(cls, signals: StrategySignals, last_signal_bar: int) -> _Events:
        entry_long = np.asarray(signals.entry_long, dtype=bool)
        entry_short = np.asarray(signals.entry_short, dtype=bool)
        go_long, go_short = entry_long & ~entry_short, entry_short & ~entry_long

        def bars(mask: np.ndarray) -> list[int]:
            found = np.flatnonzero(mask[:max(last_signal_bar + 1, 0)])
            return found.tolist()  # type: ignore[no-any-return]

        return cls(go_long, go_short, bars(go_long | go_short),
                   bars(go_short | np.asarray(signals.exit_long, dtype=bool)),
                   bars(go_long | np.asarray(signals.exit_short, dtype=bool)))

    @staticmethod
    def next(bars: list[int], start: int) -> int | None:
        """The first bar >= start in `bars`, if any."""
        at = bisect_left(bars, start)
        return bars[at] if at < len(bars) else None


def _simulate(bars: SymbolBars, signals: StrategySignals, risk: RiskSettings,
              ledger: _Ledger, delay: int) -> None:
    """Walk from position change to position change, recording them in `ledger`."""
    n = len(bars)
    events = _Events.of(signals, last_signal_bar=n - 2)
    # Fill price of a signal at bar t: next open (delay 1) or own close (delay 0).
    fills = bars.open if delay else bars.close
    levels = risk.stop_loss_pct is not None or risk.take_profit_pct is not None
    t = _Events.next(events.from_flat, 0)
    while t is not None:  # flat, and bar t's signal opens a trade
        side, resume = (LONG if events.go_long[t] else SHORT), t + 1
        # A reversal opens the opposite trade at once, hence the inner loop.
        while side and ledger.open(t + delay, side, float(fills[t + delay])):
            side, t, resume = _close_trade(bars, events, ledger, side, t, delay, levels)
        t = _Events.next(events.from_flat, resume)


def _close_trade(bars: SymbolBars, events: _Events, ledger: _Ledger, side: int, t: int,
                 delay: int, levels: bool) -> tuple[int, int, int]:
    """Close the trade opened by bar t's signal at whichever comes first: a stop/target hit,
    an exit or reversal signal, or the end. Returns the side to open next (0: none), its
    signal bar, and the first bar whose signal may open a trade once flat."""
    n = len(bars)
    exits = events.from_long if side == LONG else events.from_short
    signal_bar = _Events.next(exits, t + 1)
    last = n - 1 if signal_bar is None else signal_bar
    # Levels are checked from the bar after the signal up to the signal bar: a hit on or
    # before it comes first (its range is traded before that bar's close / next open).
    hit = _first_hit(bars, ledger.levels(), side, t + 1, last) if levels else None
    if hit is not None:
        bar, price, reason = hit
        ledger.close(bar, price, reason)
        return 0, bar, bar  # flat from inside bar `bar`: its own close may enter again
    if signal_bar is None:
        ledger.close(n - 1, float(bars.close[-1]), "end")
        return 0, n, n
    fills = bars.open if delay else bars.close
    reverse = bool((events.go_short if side == LONG else events.go_long)[signal_bar])
    ledger.close(signal_bar + delay, float(fills[signal_bar + delay]),
                 "reverse" if reverse else "signal")
    return (-side if reverse else 0), signal_bar, signal_bar + 1


def _first_hit(bars: SymbolBars, levels: tuple[float, float], side: int, first: int,
               last: int) -> tuple[int, float, str] | None:
    """The first bar in [first, last] whose range reaches the stop or the target of a trade
    on `side`: (bar, raw exit price, reason). Scans windows that double in size so a trade
    costs time in proportion to its length, not to the distance to the next signal."""
    stop, target = levels
    size = _FIRST_CHUNK
    while first <= last:
        end = min(first + size, last + 1)
        low, high = bars.low[first:end], bars.high[first:end]
        stop_hit = (low <= stop) if side == LONG else (high >= stop)
        hit = stop_hit | ((high >= target) if side == LONG else (low <= target))
        at = int(hit.argmax())
        if hit[at]:
            bar, opening = first + at, float(bars.open[first + at])
            if stop_hit[at]:  # the stop wins a bar that reaches both levels
                return bar, (min if side == LONG else max)(opening, stop), "stop_loss"
            return bar, (max if side == LONG else min)(opening, target), "take_profit"
        first, size = end, size * 2
    return None


# --- the book: cash, the open trade, and every change -----------------------------------


class _Ledger:
    """Cash and the open trade, with a record of every fill, kept exactly as backtesting.py
    keeps its broker's cash (entry commission paid at entry, pnl and exit commission at exit)
    so that sizes, which depend on the cash, come out identical."""

    def __init__(self, bars: SymbolBars, options: BacktestOptions, risk: RiskSettings,
                 cash: float):
        self.bars = bars
        self.cash = cash
        self.relative, self.fixed = options.commission, options.commission_fixed
        self.slip = options.slippage_bps / 1e4
        self.whole = options.size_units == "whole"
        pct = risk.position_size_pct
        self.fraction = FULL_EQUITY if pct >= 100 else pct / 100
        self.stop_pct, self.target_pct = risk.stop_loss_pct, risk.take_profit_pct
        self.size = 0.0           # signed units of the open trade
        self.entry = 0.0          # its entry fill price
        self.entry_fee = 0.0
        self.entry_bar = 0
        # Book state after each change: bar, cash, signed size, entry price.
        self.marks: list[tuple[int, float, float, float]] = [(0, cash, 0.0, 0.0)]
        self.closed: list[tuple[int, float, int, int, float, float, float, float, str]] = []

    def fee(self, units: float, price: float) -> float:
        return self.fixed + abs(units) * price * self.relative  # backtesting.py's order

    def slipped(self, price: float, side: int) -> float:
        """Fill price of a buy (side +1) or sell (-1) at `price`."""
        return price * (1 + side * self.slip)

    def open(self, bar: int, side: int, price: float) -> bool:
        """Open a trade at `price` (before slippage) on `bar`; False if no unit is affordable."""
        fill = self.slipped(price, side)
        fraction = self.fraction
        # backtesting.py: margin_available * size // (price + commission(size, price) / size)
        per_unit = fill + (fraction * fill * self.relative) / fraction
        budget = self.cash * fraction - self.fixed
        units = budget // per_unit if self.whole else budget / per_unit
        if not units > 0:
            return False
        self.entry_fee = self.fee(units, fill)
        self.cash -= self.entry_fee
        self.size, self.entry, self.entry_bar = side * units, fill, bar
        self.marks.append((bar, self.cash, self.size, fill))
        return True

    def levels(self) -> tuple[float, float]:
        """The open trade's stop and target prices (±inf where not set)."""
        side = LONG if self.size > 0 else SHORT
        stop = (-side * float("inf") if self.stop_pct is None
                else self.entry * (1 - side * self.stop_pct / 100))
        target = (side * float("inf") if self.target_pct is None
                  else self.entry * (1 + side * self.target_pct / 100))
        return stop, target

    def close(self, bar: int, price: float, reason: str) -> None:
        """Close the open trade at `price` (before slippage) on `bar`."""
        size = self.size
        fill = self.slipped(price, -1 if size > 0 else 1)
        exit_fee = self.fee(size, fill)
        gross = size * (fill - self.entry)
        self.cash += gross - exit_fee
        fees = exit_fee + self.entry_fee
        self.closed.append((1 if size > 0 else -1, abs(size), self.entry_bar, bar, self.entry,
                            fill, fees, gross - fees, reason))
        self.size = 0.0
        self.marks.append((bar, self.cash, 0.0, 0.0))

    def curves(self) -> tuple[np.ndarray, np.ndarray]:
        """Equity and signed position at every bar's close, from the recorded changes."""
        n = len(self.bars)
        bar, cash, size, entry = (np.array(column) for column in zip(*self.marks, strict=True))
        last = np.r_[bar[1:] != bar[:-1], True]  # a bar's final state counts at its close
        lengths = np.diff(np.r_[bar[last], n])
        # Between changes equity = cash + size * (close - entry) = base + size * close.
        base = np.repeat((cash - size * entry)[last], lengths)
        position = np.repeat(size[last], lengths)
        equity = position * np.asarray(self.bars.close, dtype=np.float64)
        equity += base  # in place: one fewer array of n floats
        return equity, position

    def trades(self) -> Trades:
        if not self.closed:
            return Trades.empty()
        columns = list(zip(*self.closed, strict=True))
        direction = np.array(columns[0], dtype=np.int8)
        size, entry_price, exit_price, commission, pnl = (
            np.array(columns[i], dtype=np.float64) for i in (1, 4, 5, 6, 7))
        entry_index, exit_index = (np.array(columns[i], dtype=np.int64) for i in (2, 3))
        ts = np.asarray(self.bars.ts, dtype="datetime64[ns]")
        # backtesting.py's Trade.pl_pct: gross return minus commission per unit of entry value
        return_pct = direction * (exit_price / entry_price - 1) - commission / (
            size * entry_price)
        return Trades(symbol=np.full(len(size), self.bars.symbol, dtype=object),
                      direction=direction, size=size, entry_index=entry_index,
                      exit_index=exit_index, entry_time=ts[entry_index],
                      exit_time=ts[exit_index], entry_price=entry_price,
                      exit_price=exit_price, commission=commission, pnl=pnl,
                      return_pct=return_pct, exit_reason=np.array(columns[8], dtype=object))


def _check_lengths(bars: SymbolBars, signals: StrategySignals) -> None:
    n = len(bars)
    arrays = {"ts": bars.ts, "open": bars.open, "high": bars.high, "low": bars.low,
              "entry_long": signals.entry_long, "exit_long": signals.exit_long,
              "entry_short": signals.entry_short, "exit_short": signals.exit_short}
    wrong = [name for name, values in arrays.items() if len(values) != n]
    if wrong:
        raise ValueError(f"{bars.symbol}: {', '.join(wrong)} must have one value per bar ({n})")


def _concat_trades(parts: list[Trades]) -> Trades:
    """All symbols' trades in order of entry time (ties: in the order of the inputs)."""
    parts = [part for part in parts if len(part)]
    if not parts:
        return Trades.empty()
    fields = Trades.__dataclass_fields__
    joined = {name: np.concatenate([getattr(part, name) for part in parts]) for name in fields}
    order = np.argsort(joined["entry_time"], kind="stable")
    return Trades(**{name: values[order] for name, values in joined.items()})
