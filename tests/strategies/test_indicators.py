"""Indicators: TA-Lib / pandas / exact references, no look-ahead, validation and edge cases."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
import talib
from hypothesis import given, settings
from hypothesis import strategies as st
from numpy.lib.stride_tricks import sliding_window_view

from tradeloop.strategies import indicators as ind
from tradeloop.strategies.indicators import FUNCTIONS, FunctionSpec

N_BARS = 5_000
RTOL = 1e-9


def random_walk_bars(n: int, seed: int, vol: float = 0.01, start: float = 100.0,
                     ) -> dict[str, np.ndarray]:
    """OHLC bars from a geometric random walk, with high >= max(open, close) >= low."""
    rng = np.random.default_rng(seed)
    close = start * np.exp(np.cumsum(rng.normal(0.0, vol, n)))
    open_ = np.r_[start, close[:-1]] * np.exp(rng.normal(0.0, vol / 5, n))
    high = np.maximum(open_, close) * np.exp(rng.exponential(vol / 2, n))
    low = np.minimum(open_, close) * np.exp(-rng.exponential(vol / 2, n))
    return {"open": open_, "high": high, "low": low, "close": close}


BARS = random_walk_bars(N_BARS, seed=20240601)
CLOSE, HIGH, LOW, OPEN = BARS["close"], BARS["high"], BARS["low"], BARS["open"]


def assert_matches(actual: np.ndarray, expected: np.ndarray, rtol: float = RTOL,
                   atol: float = 0.0) -> None:
    assert actual.dtype == np.float64 and actual.shape == expected.shape
    np.testing.assert_array_equal(np.isnan(actual), np.isnan(expected), err_msg="NaN masks")
    np.testing.assert_allclose(actual, expected, rtol=rtol, atol=atol, equal_nan=True)


def exact_window_std(x: np.ndarray, n: int) -> np.ndarray:
    """Two-pass population stdev of every window, after subtracting the window's last value
    (exact for nearby floats), so it keeps its digits on low-volatility data."""
    windows = sliding_window_view(x, n)
    out = np.full(x.size, np.nan)
    out[n - 1:] = (windows - windows[:, -1:]).std(axis=1)
    return out


# --- against TA-Lib --------------------------------------------------------------------------

@pytest.mark.parametrize("period", [2, 5, 20, 200])
@pytest.mark.parametrize(("ours", "theirs"), [
    (ind.sma, talib.SMA), (ind.ema, talib.EMA), (ind.wma, talib.WMA),
    (ind.highest, talib.MAX), (ind.lowest, talib.MIN)])
def test_moving_windows_match_talib(ours, theirs, period: int) -> None:
    assert_matches(ours(CLOSE, period), theirs(CLOSE, period))


@pytest.mark.parametrize("func", [ind.sma, ind.ema, ind.wma, ind.highest, ind.lowest])
def test_period_one_is_the_series_itself(func) -> None:
    assert_matches(func(CLOSE, 1), CLOSE)


@pytest.mark.parametrize("period", [2, 14, 50])
def test_rsi_matches_talib(period: int) -> None:
    assert_matches(ind.rsi(CLOSE, period), talib.RSI(CLOSE, period))


def test_rsi_of_a_flat_series_is_zero_like_talib() -> None:
    flat = np.full(40, 7.0)
    assert_matches(ind.rsi(flat, 14), talib.RSI(flat, 14))
    assert ind.rsi(flat, 14)[14] == 0.0


@pytest.mark.parametrize(("fast", "slow", "signal"), [(12, 26, 9), (5, 35, 5), (3, 10, 16)])
def test_macd_follows_talib_alignment(fast: int, slow: int, signal: int) -> None:
    line, signal_line, _ = talib.MACD(CLOSE, fast, slow, signal)
    ours = ind.macd(CLOSE, fast, slow)
    # MACD crosses zero, where relative error means nothing: 1e-10 absolute on prices ~100.
    valid = ~np.isnan(line)
    np.testing.assert_allclose(ours[valid], line[valid], rtol=RTOL, atol=1e-10)
    # TA-Lib only outputs the line once the signal exists; signal period 1 shows all of it.
    assert_matches(ours, talib.MACD(CLOSE, fast, slow, 1)[0], atol=1e-10)
    assert_matches(ind.macd_signal(CLOSE, fast, slow, signal), signal_line, atol=1e-10)


def test_macd_is_not_the_plain_ema_difference() -> None:
    plain = ind.ema(CLOSE, 12) - ind.ema(CLOSE, 26)
    assert not np.isclose(ind.macd(CLOSE)[25], plain[25], rtol=1e-12, atol=0)


@pytest.mark.parametrize("period", [5, 20, 50])
@pytest.mark.parametrize("k", [1.0, 2.0, 2.5])
def test_bbands_match_talib(period: int, k: float) -> None:
    upper, _, lower = talib.BBANDS(CLOSE, period, k, k, matype=0)
    assert_matches(ind.bbands_upper(CLOSE, period, k), upper)
    assert_matches(ind.bbands_lower(CLOSE, period, k), lower)


@pytest.mark.parametrize("period", [5, 20, 50])
def test_stdev_matches_talib(period: int) -> None:
    # Periods >= 5: for 2-3 bars TA-Lib's sum-of-squares formula itself is off by ~1e-9.
    assert_matches(ind.stdev(CLOSE, period), talib.STDDEV(CLOSE, period))


@pytest.mark.parametrize("period", [1, 5, 14, 50])
def test_atr_matches_talib(period: int) -> None:
    assert_matches(ind.atr(HIGH, LOW, CLOSE, period), talib.ATR(HIGH, LOW, CLOSE, period))


@pytest.mark.parametrize("period", [1, 10, 50])
def test_roc_matches_talib(period: int) -> None:
    assert_matches(ind.roc(CLOSE, period), talib.ROC(CLOSE, period))


def test_roc_of_zero_is_zero_like_talib() -> None:
    x = np.array([0.0, 1.0, 2.0, 3.0])
    assert_matches(ind.roc(x, 1), talib.ROC(x, 1))


@pytest.mark.parametrize(("ours", "theirs"), [
    (lambda x: ind.ema(ind.sma(x, 10), 5), lambda x: talib.EMA(talib.SMA(x, 10), 5)),
    (lambda x: ind.rsi(ind.ema(x, 10), 7), lambda x: talib.RSI(talib.EMA(x, 10), 7)),
    (lambda x: ind.highest(ind.wma(x, 9), 4), lambda x: talib.MAX(talib.WMA(x, 9), 4)),
    (lambda x: ind.stdev(ind.sma(x, 10), 6), lambda x: talib.STDDEV(talib.SMA(x, 10), 6)),
    (lambda x: ind.sma(ind.roc(x, 3), 5), lambda x: talib.SMA(talib.ROC(x, 3), 5)),
    (lambda x: ind.macd(ind.sma(x, 4), 5, 9), lambda x: talib.MACD(talib.SMA(x, 4), 5, 9, 1)[0]),
])
def test_leading_nan_of_an_inner_indicator_is_skipped(ours, theirs) -> None:
    assert_matches(ours(CLOSE), theirs(CLOSE), atol=1e-12)


def test_atr_skips_a_leading_nan_in_its_bars() -> None:
    high, low, close = (np.r_[np.full(3, np.nan), s] for s in (HIGH, LOW, CLOSE))
    assert_matches(ind.atr(high, low, close, 14), talib.ATR(high, low, close, 14))


def test_long_series_stay_exact() -> None:
    """No drift over 100k bars, including low-volatility (FX-like) prices."""
    for bars in (random_walk_bars(100_000, seed=7),
                 random_walk_bars(100_000, seed=8, vol=1e-5, start=1.1)):
        close, high, low = bars["close"], bars["high"], bars["low"]
        for n in (2, 3, 20, 50):
            windows = sliding_window_view(close, n)
            pad = np.full(n - 1, np.nan)
            assert_matches(ind.sma(close, n), np.r_[pad, windows.mean(axis=1)])
            weights = np.arange(1.0, n + 1)
            assert_matches(ind.wma(close, n), np.r_[pad, windows @ weights / weights.sum()])
            assert_matches(ind.stdev(close, n), exact_window_std(close, n))
            assert_matches(ind.highest(close, n), np.r_[pad, windows.max(axis=1)], rtol=0)
        assert_matches(ind.ema(close, 50), talib.EMA(close, 50))
        assert_matches(ind.rsi(close, 14), talib.RSI(close, 14))
        assert_matches(ind.atr(high, low, close, 14), talib.ATR(high, low, close, 14))


# --- against pandas formulas -----------------------------------------------------------------

@pytest.mark.parametrize("n", [0, 1, 5, N_BARS, N_BARS + 3])
def test_shift_matches_pandas(n: int) -> None:
    assert_matches(ind.shift(CLOSE, n), pd.Series(CLOSE).shift(n).to_numpy())


def test_crossover_and_crossunder_match_pandas() -> None:
    fast, slow = pd.Series(talib.SMA(CLOSE, 5)), pd.Series(talib.SMA(CLOSE, 20))
    over = (fast > slow) & (fast.shift(1) < slow.shift(1))
    under = (fast < slow) & (fast.shift(1) > slow.shift(1))
    got_over, got_under = ind.crossover(fast.to_numpy(), slow.to_numpy()), \
        ind.crossunder(fast.to_numpy(), slow.to_numpy())
    assert got_over.dtype == np.bool_ and got_under.dtype == np.bool_
    np.testing.assert_array_equal(got_over, over.to_numpy())
    np.testing.assert_array_equal(got_under, under.to_numpy())
    assert got_over.sum() > 10 and got_under.sum() > 10
    assert not got_over[:20].any()  # warm-up NaN never crosses


def test_crossover_with_a_scalar() -> None:
    # Touching the level (bar 2) and moving back up (bar 3) is not a cross: strict both sides.
    x = np.array([1.0, 3.0, 2.0, 3.0, 1.0, np.nan, 3.0])
    np.testing.assert_array_equal(ind.crossover(x, 2), [0, 1, 0, 0, 0, 0, 0])
    np.testing.assert_array_equal(ind.crossunder(x, 2.0), [0, 0, 0, 0, 1, 0, 0])
    np.testing.assert_array_equal(ind.crossover(2.0, x), ind.crossunder(x, 2.0))
    rsi = pd.Series(talib.RSI(CLOSE, 14))
    expected = (rsi > 30) & (rsi.shift(1) < 30)
    np.testing.assert_array_equal(ind.crossover(rsi.to_numpy(), 30), expected.to_numpy())


def test_abs_min_max_are_elementwise_and_propagate_nan() -> None:
    r, s = pd.Series(talib.ROC(CLOSE, 5)), pd.Series(CLOSE)
    assert_matches(ind.abs_(r.to_numpy()), r.abs().to_numpy())
    assert_matches(ind.minimum(r.to_numpy(), 0.5), np.minimum(r, 0.5).to_numpy())
    assert_matches(ind.maximum(1.0, r.to_numpy()), np.maximum(r, 1.0).to_numpy())
    assert_matches(ind.minimum(s.to_numpy(), OPEN), pd.concat([s, pd.Series(OPEN)], axis=1)
                   .min(axis=1).to_numpy())
    assert_matches(ind.maximum(r.to_numpy(), OPEN), np.maximum(r, OPEN).to_numpy())


# --- the registry ----------------------------------------------------------------------------

def test_registry_describes_every_function() -> None:
    assert set(FUNCTIONS) == {
        "sma", "ema", "wma", "rsi", "macd", "macd_signal", "bbands_upper", "bbands_lower",
        "atr", "stdev", "highest", "lowest", "roc", "crossover", "crossunder", "shift", "abs",
        "min", "max"}
    for name, spec in FUNCTIONS.items():
        assert spec.name == name and spec.doc and "\n" not in spec.doc
        assert len(spec.defaults) <= len(spec.periods)
        assert spec.float_params <= set(spec.periods)
    assert FUNCTIONS["abs"].func is ind.abs_
    assert (FUNCTIONS["min"].func, FUNCTIONS["max"].func) == (ind.minimum, ind.maximum)
    atr = FUNCTIONS["atr"]
    assert (atr.series_args, atr.implicit_series, atr.periods, atr.defaults) == (
        0, ("high", "low", "close"), ("period",), (14,))
    assert FUNCTIONS["rsi"].defaults == (14,)
    assert FUNCTIONS["macd"].defaults == (12, 26)
    assert FUNCTIONS["macd_signal"].periods == ("fast", "slow", "signal")
    assert FUNCTIONS["macd_signal"].defaults == (12, 26, 9)
    assert FUNCTIONS["bbands_upper"].defaults == (20, 2.0)
    assert {n for n, s in FUNCTIONS.items() if s.float_params} == {"bbands_upper", "bbands_lower"}
    assert FUNCTIONS["bbands_lower"].float_params == {"k"}
    assert {n for n, s in FUNCTIONS.items() if s.returns_bool} == {"crossover", "crossunder"}
    assert {n for n, s in FUNCTIONS.items() if s.accepts_scalars} == {
        "crossover", "crossunder", "min", "max"}
    assert FUNCTIONS["sma"].periods == ("period",) and FUNCTIONS["sma"].defaults == ()


def call(spec: FunctionSpec, series: list, params: list) -> np.ndarray:
    return spec.func(*series, *params)


def sample_params(spec: FunctionSpec) -> list:
    """Defaults where there are some, small valid values otherwise."""
    missing = len(spec.periods) - len(spec.defaults)
    return [3] * missing + list(spec.defaults)


# --- validation and short input --------------------------------------------------------------

def accepted_anyway(spec: FunctionSpec, param: str, value: object) -> bool:
    """The "bad" values that are in fact valid: any number for k, and shift by 0."""
    number = isinstance(value, int | float) and not isinstance(value, bool)
    return number and (param in spec.float_params or (spec.name == "shift" and value == 0))


@pytest.mark.parametrize("name", sorted(n for n, s in FUNCTIONS.items() if s.periods))
@pytest.mark.parametrize("bad", [0, -1, 2.5, True, "14", None])
def test_invalid_periods_are_value_errors(name: str, bad: object) -> None:
    spec = FUNCTIONS[name]
    series = [CLOSE[:50]] * (len(spec.implicit_series) + spec.series_args)
    for i, param in enumerate(spec.periods):
        if accepted_anyway(spec, param, bad):
            continue
        params = sample_params(spec)
        params[i] = bad
        with pytest.raises(ValueError, match=f"{param} must be|look ahead"):
            call(spec, series, params)


def test_other_parameter_errors() -> None:
    with pytest.raises(ValueError, match="look ahead"):
        ind.shift(CLOSE, -1)
    with pytest.raises(ValueError, match="fast < slow"):
        ind.macd(CLOSE, 26, 12)
    with pytest.raises(ValueError, match="fast < slow"):
        ind.macd_signal(CLOSE, 9, 9, 3)
    for k in (float("nan"), float("inf"), "2", None):
        with pytest.raises(ValueError, match="k must be"):
            ind.bbands_upper(CLOSE, 20, k)
    with pytest.raises(ValueError, match="one-dimensional"):
        ind.sma(np.ones((10, 2)), 3)
    with pytest.raises(ValueError, match="lengths differ"):
        ind.atr(HIGH, LOW[:-1], CLOSE, 14)
    with pytest.raises(ValueError, match="lengths differ"):
        ind.crossover(CLOSE, CLOSE[:-1])
    with pytest.raises(ValueError, match="at least one argument must be a series"):
        ind.maximum(1.0, 2.0)


@pytest.mark.parametrize("name", sorted(FUNCTIONS))
@pytest.mark.parametrize("size", [0, 1, 2, 7])
def test_short_input_gives_nan_not_an_exception(name: str, size: int) -> None:
    spec = FUNCTIONS[name]
    series = [CLOSE[:size]] * (len(spec.implicit_series) + spec.series_args)
    params = [10] * (len(spec.periods) - len(spec.defaults)) + list(spec.defaults)
    out = call(spec, series, params)
    assert out.shape == (size,)
    if spec.returns_bool:
        assert out.dtype == np.bool_ and not out.any()
    elif spec.periods:
        assert out.dtype == np.float64 and np.isnan(out).all()


def test_bbands_k_may_be_an_int_and_numpy_ints_are_periods() -> None:
    assert_matches(ind.bbands_upper(CLOSE, np.int64(20), 2), ind.bbands_upper(CLOSE, 20, 2.0))


# --- no look-ahead, for every registered function --------------------------------------------

def draw_arguments(spec: FunctionSpec, data: st.DataObject) -> tuple[list, list]:
    # Hypothesis draws what matters for look-ahead (length, parameters, and the cut in the
    # test); a seeded generator fills in the rest, which keeps 100 examples per function fast.
    size = data.draw(st.integers(0, 70), label="size")
    rng = np.random.default_rng(data.draw(st.integers(0, 2**32 - 1), label="seed"))
    vol = rng.choice([0.0, 0.001, 0.02, 0.1])  # 0: flat prices, RSI's 0/0 case
    close = 100.0 * np.exp(np.cumsum(rng.normal(0.0, vol, size)))
    close[: rng.integers(0, 7)] = np.nan  # an inner indicator's warm-up
    spread = rng.uniform(0.0, 0.03, size)
    implicit = {"close": close, "high": close * (1 + spread), "low": close * (1 - spread)}
    series: list = [implicit[field] for field in spec.implicit_series]
    series += [close * rng.uniform(0.97, 1.03) ** i for i in range(spec.series_args)]
    if spec.accepts_scalars and rng.random() < 0.4:
        series[rng.integers(0, 2)] = float(rng.uniform(90.0, 110.0))
    params: list = []
    for name in spec.periods:
        if name in spec.float_params:
            params.append(data.draw(st.floats(0.0, 4.0), label=name))
        elif name == "slow":
            params.append(data.draw(st.integers(params[-1] + 1, params[-1] + 25), label=name))
        else:
            low = 0 if spec.name == "shift" else 1
            params.append(data.draw(st.integers(low, 25), label=name))
    return series, params


@pytest.mark.parametrize("name", sorted(FUNCTIONS))
@settings(max_examples=100, deadline=None, database=None)
@given(data=st.data())
def test_no_look_ahead(name: str, data: st.DataObject) -> None:
    spec = FUNCTIONS[name]
    series, params = draw_arguments(spec, data)
    originals = [np.copy(s) for s in series]
    full = call(spec, series, params)
    for given_, original in zip(series, originals, strict=True):
        np.testing.assert_array_equal(given_, original, err_msg="input modified")
        assert np.ndim(given_) == 0 or not np.shares_memory(full, given_)
    size = full.size
    cut = data.draw(st.integers(0, size), label="cut")
    truncated = call(spec, [s if np.ndim(s) == 0 else s[:cut] for s in series], params)
    np.testing.assert_array_equal(truncated, full[:cut])
