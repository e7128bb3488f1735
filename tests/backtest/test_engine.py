"""The engine against backtesting.py (trade for trade, equity bar for bar), against a naive
per-bar reference loop (random cases), and on tiny hand-made bars for each rule."""

from __future__ import annotations

import sys
import warnings
from collections.abc import Callable
from typing import Any

import numpy as np
import pandas as pd
import pytest
from backtesting import Backtest, Strategy
from backtesting.lib import FractionalBacktest, crossover
from backtesting.test import BTCUSD, EURUSD, GOOG, SMA
from hypothesis import given, settings
from hypothesis import strategies as st

from tradeloop.backtest.engine import (
    BacktestOptions,
    SymbolBars,
    run_backtest,
    run_symbol,
)
from tradeloop.backtest.results import BacktestOutput, Trades
from tradeloop.strategies.compiler import StrategySignals, compile_strategy
from tradeloop.strategies.definition import RiskSettings, parse_definition

RTOL = 1e-8
FULL = 1 - sys.float_info.epsilon  # backtesting.py's buy() default size
DAY = np.timedelta64(1, "D")

# --- against backtesting.py ---------------------------------------------------------------

ENTRY_RULES = {
    "both": "entry: {long: crossover(fast_ma, slow_ma), short: crossunder(fast_ma, slow_ma)}",
    "long": "entry: {long: crossover(fast_ma, slow_ma)}\n"
            "exit: {long: crossunder(fast_ma, slow_ma)}",
    "short": "entry: {short: crossunder(fast_ma, slow_ma)}\n"
             "exit: {short: crossover(fast_ma, slow_ma)}",
}


def cross_definition(fast: int, slow: int, sides: str, risk: RiskSettings) -> str:
    risk_items = {"stop_loss_pct": risk.stop_loss_pct, "take_profit_pct": risk.take_profit_pct,
                  "position_size_pct": risk.position_size_pct}
    risk_text = ", ".join(f"{k}: {v}" for k, v in risk_items.items() if v is not None)
    return (f"name: cross\nsymbols: [X]\nparams: {{fast: {fast}, slow: {slow}}}\n"
            "indicators:\n  fast_ma: sma(close, fast)\n  slow_ma: sma(close, slow)\n"
            f"{ENTRY_RULES[sides]}\nrisk: {{{risk_text}}}\n")


def symbol_bars(df: pd.DataFrame, symbol: str = "X") -> SymbolBars:
    return SymbolBars(symbol, df.index.values.astype("datetime64[ns]"),
                      *(df[c].to_numpy(np.float64) for c in ("Open", "High", "Low", "Close")))


def tradeloop_signals(df: pd.DataFrame, definition: str) -> StrategySignals:
    columns = {c.lower(): df[c].to_numpy(np.float64)
               for c in ("Open", "High", "Low", "Close", "Volume")}
    return compile_strategy(parse_definition(definition)).evaluate(columns)


def bt_cross(fast: int, slow: int, sides: str, risk: RiskSettings,
             fill_prices: np.ndarray) -> type[Strategy]:
    """backtesting.py's SmaCross written to our rules: long, short or both; size as percent
    of equity; sl/tp as percent of the fill price of bar i's signal, `fill_prices[i]` (when
    filling at the next open, that is a peek ahead only this oracle takes); no action on our
    last bar, whose signals we do not act on."""
    fraction = FULL if risk.position_size_pct >= 100 else risk.position_size_pct / 100
    last_bar = len(fill_prices) - 1

    def levels(side: int, price: float) -> dict[str, float | None]:
        sl, tp = risk.stop_loss_pct, risk.take_profit_pct
        return {"sl": None if sl is None else price * (1 - side * sl / 100),
                "tp": None if tp is None else price * (1 + side * tp / 100)}

    class Cross(Strategy):
        def init(self) -> None:
            self.fast_ma = self.I(SMA, self.data.Close, fast)
            self.slow_ma = self.I(SMA, self.data.Close, slow)

        def next(self) -> None:
            bar = len(self.data) - 1
            if bar >= last_bar:
                return
            if crossover(self.fast_ma, self.slow_ma):
                self.position.close()
                if sides != "short":
                    self.buy(size=fraction, **levels(1, fill_prices[bar]))
            elif crossover(self.slow_ma, self.fast_ma):
                self.position.close()
                if sides != "long":
                    self.sell(size=fraction, **levels(-1, fill_prices[bar]))

    return Cross


def fill_prices(df: pd.DataFrame, options: BacktestOptions) -> np.ndarray:
    """The price a signal of each bar fills at: its close, or the next bar's open."""
    if options.fill == "close":
        return df.Close.to_numpy(np.float64)
    return np.r_[df.Open.to_numpy(np.float64)[1:], np.nan]


def with_closing_bar(df: pd.DataFrame) -> pd.DataFrame:
    """`df` plus one flat bar at its last close, for end_fill="close". backtesting.py's
    finalize_trades closes open trades with the last bar's prices: at its open (our default,
    end_fill="open"), or, trading on close, at the close of the bar before. With this bar
    appended both are our last close, where end_fill="close" closes."""
    last = df.Close.iloc[-1]
    extra = df.iloc[[-1]].assign(Open=last, High=last, Low=last, Volume=0)
    return pd.concat([df, extra.set_axis([df.index[-1] + (df.index[-1] - df.index[-2])])])


def bt_run(df: pd.DataFrame, strategy: type[Strategy], options: BacktestOptions,
           backtest: Callable[..., Backtest] = Backtest) -> pd.Series:
    """backtesting.py on our bars: as they are for end_fill="open", with a closing bar for
    end_fill="close"."""
    data = with_closing_bar(df) if options.end_fill == "close" else df
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        return backtest(data, strategy, cash=options.cash,
                        commission=(options.commission_fixed, options.commission),
                        trade_on_close=options.fill == "close", finalize_trades=True).run()


def assert_same_trades(ours: Trades, theirs: pd.DataFrame, n: int) -> None:
    assert len(ours) == len(theirs) > 0
    np.testing.assert_array_equal(ours.entry_index, theirs.EntryBar)
    np.testing.assert_array_equal(ours.exit_index, np.minimum(theirs.ExitBar, n - 1))
    np.testing.assert_array_equal(ours.direction, np.sign(theirs.Size))
    for mine, column in [(ours.size, theirs.Size.abs()), (ours.entry_price, theirs.EntryPrice),
                         (ours.exit_price, theirs.ExitPrice), (ours.pnl, theirs.PnL),
                         (ours.commission, theirs.Commission),
                         (ours.return_pct, theirs.ReturnPct)]:
        np.testing.assert_allclose(mine, column.to_numpy(np.float64), rtol=RTOL, atol=1e-9)


def bt_equity_as_ours(stats: pd.Series, n: int, trades: Trades,
                      options: BacktestOptions) -> np.ndarray:
    """backtesting.py's equity on our bars: with a closing bar (end_fill="close"), its value
    after that bar stands for our last bar. Trading on close, it logs bar t's equity before
    filling orders at t's close, so the commission of those fills shows a bar late; we book
    it at t."""
    equity = stats._equity_curve.Equity.to_numpy()
    expected = np.r_[equity[:n - 1], equity[-1]]
    if options.fill == "close":
        def fee(price: np.ndarray) -> np.ndarray:
            return options.commission_fixed + trades.size * price * options.commission
        by_signal = np.isin(trades.exit_reason, ["signal", "reverse"])
        np.subtract.at(expected, trades.entry_index, fee(trades.entry_price))
        np.subtract.at(expected, trades.exit_index[by_signal], fee(trades.exit_price)[by_signal])
    return expected


CASES = {
    # backtesting.py's own SmaCross, as in its docs: GOOG, no costs, next open.
    "goog_smacross": (GOOG, 10, 30, "both", RiskSettings(), BacktestOptions()),
    # The same, marked to the last close: backtesting.py on the bars plus a closing bar.
    "goog_smacross_end_close": (GOOG, 10, 30, "both", RiskSettings(),
                                BacktestOptions(end_fill="close")),
    # Trading on close: backtesting.py finalizes at the close of the bar before the last (it
    # re-runs its last bar), which a closing bar turns into our last close.
    "goog_commission_close_sl_tp": (GOOG, 10, 30, "both",
                                    RiskSettings(stop_loss_pct=5, take_profit_pct=10),
                                    BacktestOptions(commission=0.002, fill="close",
                                                    end_fill="close")),
    # Levels checked from the entry bar on, when filling at the next open.
    "goog_next_open_sl_tp": (GOOG, 10, 30, "both",
                             RiskSettings(stop_loss_pct=3, take_profit_pct=6),
                             BacktestOptions(commission=0.001)),
    "goog_short_only": (GOOG, 10, 30, "short", RiskSettings(),
                        BacktestOptions(commission=0.001)),
    "eurusd_long_half_close_sl_tp": (EURUSD, 10, 30, "long",
                                     RiskSettings(stop_loss_pct=0.3, take_profit_pct=0.6,
                                                  position_size_pct=50),
                                     BacktestOptions(commission=0.0002, fill="close",
                                                     end_fill="close")),
}


@pytest.mark.parametrize("case", CASES)
def test_matches_backtesting_py(case: str) -> None:
    df, fast, slow, sides, risk, options = CASES[case]
    n = len(df)
    run = run_symbol(symbol_bars(df), tradeloop_signals(df, cross_definition(fast, slow, sides,
                                                                             risk)),
                     risk, options)
    stats = bt_run(df, bt_cross(fast, slow, sides, risk, fill_prices(df, options)), options)
    assert_same_trades(run.trades, stats._trades, n)
    np.testing.assert_allclose(run.equity, bt_equity_as_ours(stats, n, run.trades, options),
                               rtol=RTOL)
    if risk.stop_loss_pct is not None:  # the levels were exercised, not just configured
        assert {"stop_loss", "take_profit"} <= set(run.trades.exit_reason)


def test_goog_smacross_matches_the_documented_run() -> None:
    """backtesting.py's documented SmaCross run on the unchanged data: 66 trades and its
    published final equity; end_fill="close" differs by the last trade's last bar only."""
    n = len(GOOG)
    definition = cross_definition(10, 30, "both", RiskSettings())
    signals = tradeloop_signals(GOOG, definition)
    run = run_symbol(symbol_bars(GOOG), signals, RiskSettings(), BacktestOptions())
    assert len(run.trades) == 66
    assert run.equity[-1] == pytest.approx(51422.98999999996, rel=RTOL)
    assert run.equity[n - 2] == pytest.approx(51640.59, abs=0.005)
    marked = run_symbol(symbol_bars(GOOG), signals, RiskSettings(),
                        BacktestOptions(end_fill="close"))
    last = run.trades.size[-1] * (GOOG.Close.iloc[-1] - GOOG.Open.iloc[-1])
    assert marked.equity[-1] - last == pytest.approx(run.equity[-1], rel=1e-12)
    np.testing.assert_array_equal(marked.equity[:-1], run.equity[:-1])


def test_fractional_units_match_fractional_backtest() -> None:
    """BTCUSD in fractional units, with commission. FractionalBacktest trades whole multiples
    of `fractional_unit`; at 1e-10 BTC that rounding is far below the tolerance."""
    df, risk = BTCUSD, RiskSettings()
    options = BacktestOptions(commission=0.001, size_units="fractional")
    n = len(df)
    run = run_symbol(symbol_bars(df), tradeloop_signals(df, cross_definition(3, 12, "both", risk)),
                     risk, options)
    stats = bt_run(df, bt_cross(3, 12, "both", risk, fill_prices(df, options)), options,
                   backtest=lambda *a, **k: FractionalBacktest(*a, fractional_unit=1e-10, **k))
    assert_same_trades(run.trades, stats._trades, n)
    np.testing.assert_allclose(run.equity, bt_equity_as_ours(stats, n, run.trades, options),
                               rtol=RTOL)
    assert np.any(run.trades.size % 1 != 0)


def test_run_backtest_of_one_symbol_is_its_run() -> None:
    df = GOOG
    signals = tradeloop_signals(df, cross_definition(10, 30, "both", RiskSettings()))
    run = run_symbol(symbol_bars(df, "GOOG"), signals, RiskSettings(), BacktestOptions())
    out = run_backtest([(symbol_bars(df, "GOOG"), signals)], RiskSettings(), BacktestOptions())
    np.testing.assert_array_equal(out.equity, run.equity)
    # Exposed from entry bar through exit bar: the position plus each trade's exit bar.
    exposed = run.position != 0
    exposed[run.trades.exit_index] = True
    np.testing.assert_array_equal(out.in_market, exposed)
    assert not np.array_equal(exposed, run.position != 0)   # the last bar, at least
    np.testing.assert_array_equal(out.benchmark_close["GOOG"], df.Close.to_numpy())
    assert out.benchmark_start == {"GOOG": 29}   # the slow SMA's first value
    assert out.cash == 10_000 and out.commissions == 0 and len(out.trades) == 66
    assert set(out.trades.symbol) == {"GOOG"}


# --- against a naive per-bar loop -------------------------------------------------------


def reference(bars: SymbolBars, signals: StrategySignals, risk: RiskSettings,
              options: BacktestOptions) -> tuple[list[tuple[object, ...]], np.ndarray]:
    """The rules of the module docstring, bar by bar: (trades, equity)."""
    o, h, lo, c = bars.open, bars.high, bars.low, bars.close
    n, slip = len(c), options.slippage_bps / 1e4
    frac = FULL if risk.position_size_pct >= 100 else risk.position_size_pct / 100
    go_long = signals.entry_long & ~signals.entry_short
    go_short = signals.entry_short & ~signals.entry_long
    state: dict[str, float] = {"cash": options.cash, "size": 0.0, "entry": 0.0, "fee": 0.0,
                               "bar": 0}
    trades: list[tuple[object, ...]] = []

    def fee(units: float, price: float) -> float:
        return options.commission_fixed + abs(units) * price * options.commission

    def close(bar: int, price: float, reason: str) -> None:
        size = state["size"]
        fill = price * (1 - np.sign(size) * slip)
        out_fee = fee(size, fill)
        state["cash"] += size * (fill - state["entry"]) - out_fee
        trades.append((int(np.sign(size)), abs(size), state["bar"], bar, state["entry"], fill,
                       out_fee + state["fee"], reason))
        state["size"] = 0.0

    def open_(bar: int, price: float, side: int) -> None:
        fill = price * (1 + side * slip)
        budget = state["cash"] * frac - options.commission_fixed
        per_unit = fill + frac * fill * options.commission / frac
        units = budget // per_unit if options.size_units == "whole" else budget / per_unit
        if units > 0:
            state.update(size=side * units, entry=fill, fee=fee(units, fill), bar=bar)
            state["cash"] -= state["fee"]

    def act(t: int, bar: int, price: float) -> None:
        side = np.sign(state["size"])
        if side > 0 and (go_short[t] or signals.exit_long[t]):
            close(bar, price, "reverse" if go_short[t] else "signal")
            if go_short[t]:
                open_(bar, price, -1)
        elif side < 0 and (go_long[t] or signals.exit_short[t]):
            close(bar, price, "reverse" if go_long[t] else "signal")
            if go_long[t]:
                open_(bar, price, 1)
        elif side == 0 and (go_long[t] or go_short[t]):
            open_(bar, price, 1 if go_long[t] else -1)

    def check_levels(i: int) -> None:
        side = np.sign(state["size"])
        sl, tp = risk.stop_loss_pct, risk.take_profit_pct
        stop = state["entry"] * (1 - side * sl / 100) if sl else -side * np.inf
        target = state["entry"] * (1 + side * tp / 100) if tp else side * np.inf
        if (lo[i] <= stop) if side > 0 else (h[i] >= stop):
            close(i, min(o[i], stop) if side > 0 else max(o[i], stop), "stop_loss")
        elif (h[i] >= target) if side > 0 else (lo[i] <= target):
            close(i, max(o[i], target) if side > 0 else min(o[i], target), "take_profit")

    equity = np.empty(n)
    for i in range(n):
        if options.fill == "open" and 1 <= i <= n - 1:
            act(i - 1, i, o[i])
        if state["size"]:
            check_levels(i)
        if options.fill == "close" and i <= n - 2:
            act(i, i, c[i])
        if i == n - 1 and state["size"]:
            close(i, (o if options.end_fill == "open" else c)[i], "end")
        equity[i] = state["cash"] + state["size"] * (c[i] - state["entry"])
    return trades, equity


@st.composite
def random_case(draw: st.DrawFn) -> tuple[SymbolBars, StrategySignals, RiskSettings,
                                          BacktestOptions]:
    n = draw(st.integers(1, 80))
    rng = np.random.default_rng(draw(st.integers(0, 2**32 - 1)))
    close = 50 * np.exp(np.cumsum(rng.normal(0, 0.04, n)))
    opening = np.r_[close[0], close[:-1]] * np.exp(rng.normal(0, 0.02, n))  # with gaps
    high = np.maximum(opening, close) * np.exp(np.abs(rng.normal(0, 0.02, n)))
    low = np.minimum(opening, close) * np.exp(-np.abs(rng.normal(0, 0.02, n)))
    p = draw(st.sampled_from([0.05, 0.2, 0.5]))
    signals = StrategySignals(*(rng.random((4, n)) < p))
    level = st.none() | st.floats(0.5, 30)
    risk = RiskSettings(draw(level), draw(level), draw(st.sampled_from([100.0, 50.0, 7.5])))
    options = BacktestOptions(
        cash=draw(st.sampled_from([40.0, 1_000.0, 25_000.0])),
        commission=draw(st.sampled_from([0.0, 0.001, 0.02])),
        commission_fixed=draw(st.sampled_from([0.0, 1.5])),
        slippage_bps=draw(st.sampled_from([0.0, 5.0, 40.0])),
        fill=draw(st.sampled_from(["open", "close"])),
        size_units=draw(st.sampled_from(["whole", "fractional"])),
        end_fill=draw(st.sampled_from(["open", "close"])))
    ts = np.datetime64("2024-01-01", "ns") + np.arange(n) * DAY
    return SymbolBars("R", ts, opening, high, low, close), signals, risk, options


@settings(max_examples=300, deadline=None)
@given(random_case())
def test_matches_a_per_bar_loop(case: tuple[SymbolBars, StrategySignals, RiskSettings,
                                            BacktestOptions]) -> None:
    bars, signals, risk, options = case
    run = run_symbol(bars, signals, risk, options)
    trades, equity = reference(bars, signals, risk, options)
    ours = list(zip(run.trades.direction, run.trades.size, run.trades.entry_index,
                    run.trades.exit_index, run.trades.entry_price, run.trades.exit_price,
                    run.trades.commission, run.trades.exit_reason, strict=True))
    assert len(ours) == len(trades)
    for mine, theirs in zip(ours, trades, strict=True):
        assert mine[:4] == pytest.approx(theirs[:4], rel=1e-12)
        assert mine[4:7] == pytest.approx(theirs[4:7], rel=1e-12)
        assert mine[7] == theirs[7]
    np.testing.assert_allclose(run.equity, equity, rtol=1e-9, atol=1e-9)
    assert np.all(run.trades.size > 0)
    if len(bars):  # everything is closed at the end: the final equity is cash plus all pnl
        assert run.equity[-1] == pytest.approx(options.cash + run.trades.pnl.sum(), rel=1e-9)


# --- hand-made bars ------------------------------------------------------------------------


def make_bars(rows: list[tuple[float, float, float, float]], symbol: str = "A",
              start: str = "2024-01-01") -> SymbolBars:
    o, h, lo, c = (np.array(column, dtype=np.float64) for column in zip(*rows, strict=True))
    ts = np.datetime64(start, "ns") + np.arange(len(rows)) * DAY
    return SymbolBars(symbol, ts, o, h, lo, c)


def make_signals(n: int, **bars: list[int]) -> StrategySignals:
    arrays = {}
    for name in ("entry_long", "exit_long", "entry_short", "exit_short"):
        arrays[name] = np.zeros(n, dtype=bool)
        arrays[name][bars.get(name, [])] = True
    return StrategySignals(**arrays)


FLAT_100 = (100.0, 100.0, 100.0, 100.0)


@pytest.mark.parametrize(("end_fill", "exit_price"), [("open", 100), ("close", 110)])
def test_whole_units_follow_backtesting_py_full_equity(end_fill: str,
                                                       exit_price: float) -> None:
    # 10,000 x (1 - 2**-52) // 100 = 99 units, not 100: backtesting.py's buy() does the same.
    # Still open at the end, the trade closes at the last bar's open (default) or close.
    bars = make_bars([FLAT_100, FLAT_100, (100, 100, 100, 110)])
    run = run_symbol(bars, make_signals(3, entry_long=[0]), RiskSettings(),
                     BacktestOptions(end_fill=end_fill))  # type: ignore[arg-type]
    assert run.trades.size.tolist() == [99]
    np.testing.assert_array_equal(run.position, [0, 99, 0])
    np.testing.assert_allclose(run.equity, [10_000, 10_000, 10_000 + 99 * (exit_price - 100)])
    assert run.trades.exit_reason.tolist() == ["end"]
    assert (run.trades.exit_index[0], run.trades.exit_price[0]) == (2, exit_price)


def test_gap_through_the_stop_fills_at_the_open() -> None:
    bars = make_bars([FLAT_100, (100, 102, 99, 101), (90, 91, 85, 88), (88, 89, 87, 88)])
    risk = RiskSettings(stop_loss_pct=5)
    run = run_symbol(bars, make_signals(4, entry_long=[0]), risk, BacktestOptions())
    t = run.trades
    assert (t.exit_index[0], t.exit_price[0], t.exit_reason[0]) == (2, 90.0, "stop_loss")
    assert t.pnl[0] == pytest.approx(99 * (90 - 100))
    assert run.equity[-1] == pytest.approx(10_000 - 990)


def test_stop_and_target_in_one_bar_stop_wins() -> None:
    bars = make_bars([FLAT_100, (100, 101, 99, 100), (100, 115, 94, 112), FLAT_100])
    risk = RiskSettings(stop_loss_pct=5, take_profit_pct=10)
    run = run_symbol(bars, make_signals(4, entry_long=[0]), risk, BacktestOptions())
    assert run.trades.exit_price.tolist() == [95.0]
    assert run.trades.exit_reason.tolist() == ["stop_loss"]


def test_target_gap_fills_at_the_better_open_and_is_checked_on_the_entry_bar() -> None:
    bars = make_bars([FLAT_100, (100, 111, 100, 105), FLAT_100])
    risk = RiskSettings(take_profit_pct=10)
    run = run_symbol(bars, make_signals(3, entry_long=[0]), risk, BacktestOptions())
    assert (run.trades.exit_index[0], run.trades.exit_price[0]) == (1, pytest.approx(110))
    gap = make_bars([FLAT_100, FLAT_100, (120, 125, 119, 121)])
    run = run_symbol(gap, make_signals(3, entry_long=[0]), risk, BacktestOptions())
    assert (run.trades.exit_index[0], run.trades.exit_price[0]) == (2, 120.0)


def test_short_stop_is_above_the_entry() -> None:
    bars = make_bars([FLAT_100, (100, 104, 96, 97), (98, 106, 97, 104), FLAT_100])
    risk = RiskSettings(stop_loss_pct=5, take_profit_pct=5)
    run = run_symbol(bars, make_signals(4, entry_short=[0]), risk, BacktestOptions())
    t = run.trades
    assert (t.direction[0], t.exit_index[0], t.exit_price[0]) == (-1, 2, 105.0)
    assert t.exit_reason[0] == "stop_loss" and t.pnl[0] == pytest.approx(-99 * 5)
    np.testing.assert_array_equal(run.position, [0, -99, 0, 0])
    assert run.equity[1] == pytest.approx(10_000 + 99 * 3)  # short gains as the close falls


def test_reversal_closes_then_opens_with_the_equity_after_the_close() -> None:
    bars = make_bars([FLAT_100, FLAT_100, (105, 106, 104, 105), (110, 110, 108, 108),
                      (108, 108, 108, 108)])
    options = BacktestOptions(commission=0.01)
    run = run_symbol(bars, make_signals(5, entry_long=[0], entry_short=[2]), RiskSettings(),
                     options)
    t = run.trades
    long_units = 10_000 * FULL // 101  # price + 1 % commission per unit
    cash = 10_000 - long_units * 100 * 0.01 + long_units * 10 - long_units * 110 * 0.01
    short_units = cash * FULL // (110 + 1.1)
    assert t.direction.tolist() == [1, -1]
    assert t.size.tolist() == [long_units, short_units]
    assert t.exit_reason.tolist() == ["reverse", "end"]
    assert (t.exit_index[0], t.entry_index[1], t.entry_price[1]) == (3, 3, 110.0)
    entry_fee = short_units * 110 * 0.01
    assert run.equity[3] == pytest.approx(cash - entry_fee + short_units * 2)
    assert run.commissions == pytest.approx(t.commission.sum())


def test_exit_signal_closes_and_a_later_entry_reopens() -> None:
    bars = make_bars([FLAT_100] * 6)
    signals = make_signals(6, entry_long=[0, 3], exit_long=[1])
    run = run_symbol(bars, signals, RiskSettings(), BacktestOptions(fill="close"))
    assert run.trades.entry_index.tolist() == [0, 3]
    assert run.trades.exit_index.tolist() == [1, 5]
    assert run.trades.exit_reason.tolist() == ["signal", "end"]
    np.testing.assert_array_equal(run.position != 0, [1, 0, 0, 1, 1, 0])


@pytest.mark.parametrize("fill", ["open", "close"])
def test_signal_on_the_last_bar_does_nothing(fill: str) -> None:
    bars = make_bars([FLAT_100] * 3)
    run = run_symbol(bars, make_signals(3, entry_long=[2], entry_short=[2]), RiskSettings(),
                     BacktestOptions(fill=fill))  # type: ignore[arg-type]
    run_long = run_symbol(bars, make_signals(3, entry_long=[2]), RiskSettings(),
                          BacktestOptions(fill=fill))  # type: ignore[arg-type]
    assert len(run.trades) == len(run_long.trades) == 0
    np.testing.assert_array_equal(run_long.equity, [10_000] * 3)


def test_conflicting_entries_are_ignored() -> None:
    bars = make_bars([FLAT_100] * 4)
    run = run_symbol(bars, make_signals(4, entry_long=[0, 1], entry_short=[0]), RiskSettings(),
                     BacktestOptions())
    assert run.trades.entry_index.tolist() == [2]  # the entry of bar 1, filled at bar 2


def test_fractional_and_whole_units() -> None:
    bars = make_bars([FLAT_100] * 3)
    signals = make_signals(3, entry_long=[0])
    sizes = {(units, pct): run_symbol(bars, signals, RiskSettings(position_size_pct=pct),
                                      BacktestOptions(cash=1_000, size_units=units)
                                      ).trades.size[0]
             for units in ("whole", "fractional") for pct in (100.0, 45.0)}
    assert sizes[("whole", 100.0)] == 9 and sizes[("whole", 45.0)] == 4
    assert sizes[("fractional", 100.0)] == pytest.approx(10, rel=1e-12)
    assert sizes[("fractional", 45.0)] == pytest.approx(4.5, rel=1e-12)


def test_no_order_when_not_even_one_unit_is_affordable() -> None:
    bars = make_bars([FLAT_100] * 3)
    run = run_symbol(bars, make_signals(3, entry_long=[0]), RiskSettings(),
                     BacktestOptions(cash=99))
    assert len(run.trades) == 0 and run.equity.tolist() == [99] * 3


def test_fixed_commission_is_charged_per_order() -> None:
    bars = make_bars([FLAT_100, FLAT_100, (110, 110, 110, 110)])
    options = BacktestOptions(commission_fixed=5)
    run = run_symbol(bars, make_signals(3, entry_long=[0]), RiskSettings(), options)
    t = run.trades
    assert t.size[0] == (10_000 * FULL - 5) // 100 == 99
    assert t.commission[0] == 10 and run.commissions == 10
    assert t.pnl[0] == pytest.approx(99 * 10 - 10)
    np.testing.assert_allclose(run.equity, [10_000, 9_995, 10_000 + 990 - 10])


def test_slippage_moves_both_fills_against_the_trade() -> None:
    bars = make_bars([FLAT_100, FLAT_100, (120, 120, 120, 120)])
    options = BacktestOptions(slippage_bps=10, size_units="fractional")
    long = run_symbol(bars, make_signals(3, entry_long=[0]), RiskSettings(), options).trades
    short = run_symbol(bars, make_signals(3, entry_short=[0]), RiskSettings(), options).trades
    assert (long.entry_price[0], long.exit_price[0]) == pytest.approx((100.1, 119.88))
    assert (short.entry_price[0], short.exit_price[0]) == pytest.approx((99.9, 120.12))


def test_two_symbols_split_the_cash_and_add_up() -> None:
    a = make_bars([FLAT_100, FLAT_100, (100, 100, 100, 110), (110, 110, 110, 120)], "A")
    b = make_bars([(50, 50, 50, 50), (50, 50, 50, 50), (50, 50, 50, 40)], "B",
                  start="2024-01-03")
    risk, options = RiskSettings(), BacktestOptions(cash=10_000)
    sig_a, sig_b = make_signals(4, entry_long=[0]), make_signals(3, entry_short=[0])
    out = run_backtest([(a, sig_a), (b, sig_b)], risk, options)
    run_a = run_symbol(a, sig_a, risk, options, cash=5_000)
    run_b = run_symbol(b, sig_b, risk, options, cash=5_000)
    assert out.ts.tolist() == (np.datetime64("2024-01-01", "ns") + np.arange(5) * DAY).tolist()
    # B starts on the 3rd (its cash until then); A ends on the 4th (forward-filled after).
    expected = np.r_[run_a.equity, run_a.equity[-1]] + np.r_[5_000, 5_000, run_b.equity]
    np.testing.assert_allclose(out.equity, expected)
    # A: entry on the 2nd, closed on its last bar, the 4th; B: the 4th to its last bar, the
    # 5th. Exit bars count as exposed.
    np.testing.assert_array_equal(out.in_market, [False, True, True, True, True])
    np.testing.assert_array_equal(out.benchmark_close["A"], [100, 100, 110, 120, 120])
    np.testing.assert_array_equal(out.benchmark_close["B"], [50, 50, 50, 50, 40])
    assert out.trades.symbol.tolist() == ["A", "B"] and out.cash == 10_000
    assert run_a.trades.size[0] == 49 and run_b.trades.size[0] == 99


def test_zero_trades_leave_the_cash_flat() -> None:
    bars = make_bars([FLAT_100, (100, 120, 80, 90), FLAT_100])
    out = run_backtest([(bars, make_signals(3))], RiskSettings(stop_loss_pct=1),
                       BacktestOptions(cash=1_234))
    np.testing.assert_array_equal(out.equity, [1_234] * 3)
    assert not out.in_market.any() and len(out.trades) == 0 and out.commissions == 0


def test_bad_inputs_are_refused() -> None:
    with pytest.raises(ValueError, match="fill"):
        BacktestOptions(fill="noon")  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="end_fill"):
        BacktestOptions(end_fill="noon")  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="cash"):
        BacktestOptions(cash=0)
    bars = make_bars([FLAT_100] * 3)
    with pytest.raises(ValueError, match="one value per bar"):
        run_symbol(bars, make_signals(2), RiskSettings(), BacktestOptions())
    with pytest.raises(ValueError, match="distinct"):
        run_backtest([(bars, make_signals(3))] * 2, RiskSettings(), BacktestOptions())


# --- the sweep's ranking metric -------------------------------------------------------------

HOUR = np.timedelta64(1, "h")
TIMELINES = {  # bar spacing → timestamps of n bars
    "business_days": lambda n: pd.bdate_range("2015-01-05", periods=n).values,
    "trading_hours": lambda n: (pd.bdate_range("2024-03-04", periods=n // 7 + 1).values[:, None]
                                + np.arange(9, 16) * HOUR).ravel()[:n],
    "crypto_4h": lambda n: np.datetime64("2024-03-01", "ns") + np.arange(n) * 4 * HOUR,
    "weeks": lambda n: pd.date_range("2001-01-07", periods=n, freq="W").values,
    "months": lambda n: pd.date_range("1990-01-31", periods=n, freq="ME").values,
    # At most 200 years: durations in int64 nanoseconds overflow after 292.
    "years": lambda n: pd.date_range("1800-12-31", periods=min(n, 200), freq="YE").values,
}


def random_walk_outputs(timeline: str, *, seed: int, volatility: float) -> list[Any]:
    """Backtests of random signals on random-walk bars of 1 to 300 bars on `timeline`: no
    trades, few and many, with and without commission (degenerate runs included)."""
    rng = np.random.default_rng(seed)
    outputs = []
    for n in (1, 2, 3, 40, 300):
        ts = TIMELINES[timeline](n).astype("datetime64[ns]")
        n = len(ts)
        close = 100 * np.exp(np.cumsum(rng.normal(0, volatility, n)))
        opening = np.r_[close[:1], close[:-1]]
        bars = SymbolBars("X", ts, opening, np.maximum(opening, close) * 1.01,
                          np.minimum(opening, close) * 0.99, close)
        for p, commission in [(0.0, 0.0), (0.05, 0.0), (0.3, 0.001)]:
            signals = StrategySignals(*(rng.random((4, n)) < p))
            outputs.append(run_backtest([(bars, signals)], RiskSettings(),
                                        BacktestOptions(commission=commission)))
    return outputs


def sharpe_ratios(outputs: list[BacktestOutput]) -> list[float | None]:
    """The sweep's Sharpe of each output: the ranking module's, as sweeps.py ranks."""
    from tradeloop.backtest.metrics.ranking import rank_values

    return rank_values(outputs, "sharpe_ratio")


@pytest.mark.parametrize("timeline", TIMELINES)
def test_sharpe_ratios_equal_compute_metrics(timeline: str) -> None:
    """The sweep's Sharpe is compute_metrics' own value, bit for bit (None where undefined),
    for every annualisation rule; runs sharing their bars share one calendar."""
    from tradeloop.backtest.metrics import compute_metrics

    outputs = random_walk_outputs(timeline, seed=11, volatility=0.01)
    expected = [compute_metrics(o)["risk_adjusted"]["sharpe_ratio"] for o in outputs]
    assert sharpe_ratios(outputs) == expected
    assert sum(value is not None for value in expected) >= 4  # real values, not only None


def test_sharpe_ratios_of_the_goog_sweep_equal_compute_metrics() -> None:
    from tradeloop.backtest.metrics import compute_metrics

    definition = parse_definition(cross_definition(10, 30, "both", RiskSettings()))
    columns = {c.lower(): GOOG[c].to_numpy(np.float64)
               for c in ("Open", "High", "Low", "Close", "Volume")}
    bars = symbol_bars(GOOG, "GOOG")
    outputs = [run_backtest([(bars, compile_strategy(definition, {"fast": fast, "slow": slow})
                              .evaluate(columns))], definition.risk, BacktestOptions())
               for fast, slow in [(5, 20), (10, 30), (20, 100), (50, 200)]]
    late = GOOG.iloc[700:]  # a second symbol that starts later: a timeline of two symbols
    late_columns = {c.lower(): late[c].to_numpy(np.float64)
                    for c in ("Open", "High", "Low", "Close", "Volume")}
    outputs.append(run_backtest(
        [(bars, compile_strategy(definition).evaluate(columns)),
         (symbol_bars(late, "LATE"), compile_strategy(definition).evaluate(late_columns))],
        definition.risk, BacktestOptions()))
    assert sharpe_ratios(outputs) == [compute_metrics(o)["risk_adjusted"]["sharpe_ratio"]
                                      for o in outputs]
    assert None not in sharpe_ratios(outputs)
    assert sharpe_ratios([]) == []
