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
    on: with ``fill="open"`` there is no next bar, and with ``fill="close"`` no bar would be
    left to hold the position (see End).

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
    A trade still open at the end is closed on the last bar (exit reason "end"), paying
    commission and slippage like any exit. With ``end_fill="open"`` (default) it fills at
    that bar's open, as backtesting.py's ``finalize_trades=True`` does (its published test
    case comes out exactly); with ``end_fill="close"`` at that bar's close, so the position
    is marked to the last price. Either way stop/target levels are checked on the last bar's
    range first, as backtesting.py does before it finalizes.

Exposure
    ``in_market`` is True from each trade's entry bar through its exit bar inclusive
    (backtesting.py's Exposure Time): the bar a trade is closed on counts, even when the
    close fills at that bar's open.

Buy & hold
    Each symbol's benchmark buys at the close of its indicators' warm-up bar
    (``StrategySignals.warmup``: the first bar at which every named indicator has a value),
    as backtesting.py measures Buy & Hold from ``_indicator_warmup_nbars``.

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

Ranking many runs by one metric (a sweep) is ``backtest.metrics.ranking``'s job, not the
engine's: it computes that metric alone for every run at once.
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
    end_fill: Literal["open", "close"] = "open"   # a trade open at the end: last open/close

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
        if self.end_fill not in ("open", "close"):
            raise ValueError(f"end_fill must be 'open' or 'close', got {self.end_fill!r}")


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
    book = _simulate(bars, signals, risk, options, start_cash)
    equity, position = book.curves()
    trades = book.trades()
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
    benchmark_start: dict[str, int] = {}
    for run, (bars, signals) in zip(runs, inputs, strict=True):
        close = np.asarray(bars.close, dtype=np.float64)
        warmup = max(0, min(signals.warmup, len(run.ts) - 1))  # a bar of the symbol
        if run.ts is ts or (len(run.ts) == len(ts) and np.array_equal(run.ts, ts)):
            # The common, fast case: the symbol's bars are the timeline.
            equity += run.equity
            in_market |= run.position != 0
            benchmark[run.symbol] = close
            benchmark_start[run.symbol] = warmup
            continue
        # The symbol's latest bar at or before each timestamp (-1: none yet).
        at = np.searchsorted(run.ts, ts, side="right") - 1
        started = at >= 0
        index = np.maximum(at, 0)  # before its first bar: its first bar (back-filled)
        if len(run.ts):
            equity += np.where(started, run.equity[index], run.cash)
            in_market |= started & (run.position[index] != 0)
            benchmark[run.symbol] = close[index]
            benchmark_start[run.symbol] = int(np.searchsorted(ts, run.ts[warmup]))
        else:
            equity += run.cash
            benchmark[run.symbol] = np.full(len(ts), np.nan)
    trades = _concat_trades([run.trades for run in runs])
    # The position is flat at the close of a trade's exit bar, but that bar counts as
    # exposed (entry bar through exit bar, backtesting.py's convention).
    in_market[trades.exit_index if len(runs) == 1 else np.searchsorted(ts, trades.exit_time)] = True
    return BacktestOutput(ts=ts, equity=equity, in_market=in_market, trades=trades,
                          cash=float(options.cash),
                          commissions=float(sum(run.commissions for run in runs)),
                          benchmark_close=benchmark, benchmark_start=benchmark_start)


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


def _simulate(bars: SymbolBars, signals: StrategySignals, risk: RiskSettings,
              options: BacktestOptions, cash: float) -> _Book:
    """Walk from position change to position change, recording every fill in a _Book.

    The cash is kept exactly as backtesting.py keeps its broker's cash (entry commission
    paid at entry, pnl and exit commission at exit) so that sizes, which depend on the cash,
    come out identical. This loop runs once per trade, so the book-keeping is written out
    inline on local variables: a million-bar run has thousands of trades."""
    n = len(bars)
    delay = 1 if options.fill == "open" else 0
    events = _Events.of(signals, last_signal_bar=n - 2)
    go_long, go_short = events.go_long, events.go_short
    from_flat, from_long, from_short = events.from_flat, events.from_long, events.from_short
    # Fill price of a signal at bar t: fills[t + delay], the next open or its own close.
    fills = bars.open if delay else bars.close
    # Where a trade still open after the last bar closes (see End).
    end_prices = bars.open if options.end_fill == "open" else bars.close
    end_price = float(end_prices[n - 1]) if n else 0.0
    relative, fixed = options.commission, options.commission_fixed
    slip = options.slippage_bps / 1e4
    whole = options.size_units == "whole"
    pct = risk.position_size_pct
    fraction = FULL_EQUITY if pct >= 100 else pct / 100
    stop_pct, target_pct = risk.stop_loss_pct, risk.take_profit_pct
    levels = stop_pct is not None or target_pct is not None
    book = _Book(bars, cash)
    marks, closed = book.marks, book.closed
    at = 0
    while at < len(from_flat):  # flat, and bar t's signal opens a trade
        t = from_flat[at]
        side, resume = (LONG if go_long[t] else SHORT), t + 1
        while side:  # a reversal opens the opposite trade at once
            # Open at the fill of bar t's signal. Fills move against the trader by the
            # slippage (a buy is side +1). Units as backtesting.py's buy() / sell():
            # margin_available * size // (price + commission(size, price) / size).
            entry_bar = t + delay
            entry = float(fills[entry_bar]) * (1 + side * slip)
            per_unit = entry + (fraction * entry * relative) / fraction
            budget = cash * fraction - fixed
            units = budget // per_unit if whole else budget / per_unit
            if not units > 0:  # no order when not even one unit is affordable
                break
            entry_fee = fixed + units * entry * relative
            cash -= entry_fee
            size = side * units
            marks.append((entry_bar, cash, size, entry))
            # Close at whichever comes first: a stop/target hit, an exit or reversal
            # signal, or the end.
            exits = from_long if side == LONG else from_short
            found = bisect_left(exits, t + 1)
            signal_bar = exits[found] if found < len(exits) else None
            hit = None
            if levels:
                # Levels are checked from the bar after the signal up to the signal bar: a
                # hit on or before it comes first (its range trades before that bar's close
                # / next open). ±inf where not set.
                stop = (-side * _INF if stop_pct is None
                        else entry * (1 - side * stop_pct / 100))
                target = (side * _INF if target_pct is None
                          else entry * (1 + side * target_pct / 100))
                hit = _first_hit(bars, (stop, target), side, t + 1,
                                 n - 1 if signal_bar is None else signal_bar)
            if hit is not None:
                # Flat from inside bar `exit_bar`: its own close may enter again.
                exit_bar, price, reason = hit
                next_side, resume = 0, exit_bar
            elif signal_bar is None:
                exit_bar, price, reason = n - 1, end_price, "end"
                next_side, resume = 0, n
            else:
                reverse = bool((go_short if side == LONG else go_long)[signal_bar])
                exit_bar = signal_bar + delay
                price, reason = float(fills[exit_bar]), ("reverse" if reverse else "signal")
                next_side, t, resume = (-side if reverse else 0), signal_bar, signal_bar + 1
            exit_price = price * (1 + -side * slip)
            exit_fee = fixed + units * exit_price * relative
            gross = size * (exit_price - entry)
            cash += gross - exit_fee
            fees = exit_fee + entry_fee
            closed.append((side, units, entry_bar, exit_bar, entry, exit_price, fees,
                           gross - fees, reason))
            marks.append((exit_bar, cash, 0.0, 0.0))
            side = next_side
        at = bisect_left(from_flat, resume)
    return book


_INF = float("inf")


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


# --- the book: every change of cash and position -----------------------------------------


class _Book:
    """The record of a simulation: the book state after each change (bar, cash, signed
    size, entry price) and every closed trade."""

    def __init__(self, bars: SymbolBars, cash: float):
        self.bars = bars
        self.marks: list[tuple[int, float, float, float]] = [(0, cash, 0.0, 0.0)]
        self.closed: list[tuple[int, float, int, int, float, float, float, float, str]] = []

    def curves(self) -> tuple[np.ndarray, np.ndarray]:
        """Equity and signed position at every bar's close, from the recorded changes."""
        n = len(self.bars)
        bar, cash, size, entry = (np.array(column, dtype=dtype) for column, dtype in zip(
            zip(*self.marks, strict=True), (np.intp, np.float64, np.float64, np.float64),
            strict=True))
        last = np.empty(len(bar), dtype=bool)  # a bar's final state counts at its close
        np.not_equal(bar[1:], bar[:-1], out=last[:-1])
        last[-1] = True
        # How many bars each final state lasts: np.diff(np.append(starts, n)) without the
        # wrappers' overhead (the first state starts at bar 0).
        starts = bar[last]
        lengths = np.empty(len(starts), dtype=np.intp)
        np.subtract(starts[1:], starts[:-1], out=lengths[:-1])
        lengths[-1] = n - starts[-1]
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
    entry_time = parts[0].entry_time
    # np.any's reduction without its wrapper (half the cost at a few hundred trades).
    if len(parts) == 1 and not np.logical_or.reduce(entry_time[1:] < entry_time[:-1]):
        return parts[0]  # already in order: the stable sort below would keep it as it is
    fields = Trades.__dataclass_fields__
    joined = {name: np.concatenate([getattr(part, name) for part in parts]) for name in fields}
    order = np.argsort(joined["entry_time"], kind="stable")
    return Trades(**{name: values[order] for name, values in joined.items()})

