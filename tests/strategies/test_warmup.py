"""The indicators' warm-up a compiled strategy reports with its signals: where a backtest's
buy & hold starts (backtesting.py's `_indicator_warmup_nbars`)."""

from __future__ import annotations

import numpy as np
import pytest

from tradeloop.strategies.compiler import compile_strategy, first_value
from tradeloop.strategies.definition import parse_definition


def bars(n: int) -> dict[str, np.ndarray]:
    close = 100 + np.sin(np.arange(n) / 7) * 10
    return {"open": close, "high": close + 1, "low": close - 1, "close": close,
            "volume": np.full(n, 1_000.0)}


def warmup(indicators: str, n: int, params: str = "{}") -> int:
    definition = parse_definition(
        f"name: w\nsymbols: [X]\nparams: {params}\nindicators:\n{indicators}"
        "entry: {long: close > open}\n")
    return compile_strategy(definition).evaluate(bars(n)).warmup


def test_every_named_indicator_counts_used_or_not() -> None:
    # backtesting.py's SmaCross 10/30: the slow SMA's first value is bar 29.
    assert warmup("  fast: sma(close, 10)\n  slow: sma(close, 30)\n", 300) == 29
    # An indicator no rule uses still counts, like an unused self.I in backtesting.py.
    assert warmup("  fast: sma(close, 10)\n  unused: sma(close, 50)\n", 300) == 49


def test_conditions_numbers_and_indicators_without_a_value_set_no_warm_up() -> None:
    assert warmup("  up: close > open\n  level: 30\n", 100) == 0
    # sma(close, 500) never has a value on 100 bars: no warm-up from it (backtesting.py's
    # argmin of an all-missing series is 0); the other indicator still counts.
    assert warmup("  never: sma(close, 500)\n  slow: sma(close, 20)\n", 100) == 19
    assert warmup("  prior: shift(highest(high, n), 1)\n", 100, "{n: 20}") == 20


@pytest.mark.parametrize("first", [0, 1, 255, 256, 257, 5_000, 99_999])
def test_first_value_across_the_search_windows(first: int) -> None:
    values = np.full(100_000, np.nan)
    values[first:] = 1.0
    values[first + 3:first + 9] = np.nan   # a gap after the first value does not matter
    assert first_value(values) == first


def test_first_value_of_other_series_is_zero() -> None:
    assert first_value(np.full(10, np.nan)) == 0
    assert first_value(np.array([], dtype=float)) == 0
    assert first_value(np.array([False, True])) == 0
    assert first_value(3.0) == 0
