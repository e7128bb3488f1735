"""One market snapshot for the decision's context and the prompt: Wilder's ATR, as TA-Lib
computes it, so the risk gate and the LLM read one atr_pct."""

from __future__ import annotations

import numpy as np
import pytest
import talib

from tradeloop.market_context.service import summarize
from tradeloop.market_context.snapshot import LOOKBACK, market_snapshot
from tradeloop.market_data.service import BarArrays
from tradeloop.prompts.analysis import indicator_snapshot


def random_bars(count: int, seed: int = 3) -> BarArrays:
    """A random walk of OHLC bars (high and low around open and close)."""
    rng = np.random.default_rng(seed)
    close = 100 * np.exp(np.cumsum(rng.normal(0.0, 0.02, count)))
    open_ = np.r_[100.0, close[:-1]]
    high = np.maximum(open_, close) * np.exp(rng.exponential(0.01, count))
    low = np.minimum(open_, close) * np.exp(-rng.exponential(0.01, count))
    ts = np.datetime64("2025-01-01", "ns") + np.arange(count) * np.timedelta64(1, "D")
    return BarArrays("TEST", "1d", ts, open_, high, low, close, rng.uniform(1e5, 1e6, count))


@pytest.mark.parametrize("count", [15, 16, 60, LOOKBACK, LOOKBACK + 140])
def test_atr_is_wilders_as_talib_computes_it(count: int) -> None:
    bars = random_bars(count)
    window = slice(-LOOKBACK, None)  # the snapshot's fixed history
    expected = talib.ATR(bars.high[window], bars.low[window], bars.close[window], 14)[-1]
    snapshot = market_snapshot(bars)
    assert snapshot.atr == pytest.approx(expected, rel=1e-9)
    assert snapshot.atr_pct == pytest.approx(expected / bars.close[-1] * 100, rel=1e-9)


def test_too_few_bars_have_no_atr_like_talib() -> None:
    bars = random_bars(14)
    assert np.isnan(talib.ATR(bars.high, bars.low, bars.close, 14)[-1])
    assert (market_snapshot(bars).atr, market_snapshot(bars).atr_pct) == (None, None)


@pytest.mark.parametrize("count", [30, LOOKBACK])
def test_the_decision_and_the_prompt_read_one_atr_pct(count: int) -> None:
    bars = random_bars(count)
    decision = summarize(bars).atr_pct
    prompt = indicator_snapshot(bars)["atr_pct"]
    assert decision is not None and prompt == round(decision, 2)
