"""The sweep's batch metric values equal compute_metrics' for every rankable metric."""

from __future__ import annotations

import math
from functools import cache

import numpy as np
import pytest
from backtesting.test import GOOG

from tests.backtest.test_engine import (
    TIMELINES,
    cross_definition,
    random_walk_outputs,
    symbol_bars,
)
from tradeloop.backtest.engine import BacktestOptions, run_backtest
from tradeloop.backtest.metrics import METRICS, compute_metrics
from tradeloop.backtest.metrics.ranking import RANKABLE, rank_values
from tradeloop.backtest.results import BacktestOutput
from tradeloop.strategies.compiler import compile_strategy
from tradeloop.strategies.definition import RiskSettings, parse_definition


def flat(output: BacktestOutput) -> dict:
    return {name: value for group in compute_metrics(output).values()
            for name, value in group.items()}


def assert_equal_values(outputs: list[BacktestOutput], metric: str) -> None:
    expected = [flat(o)[metric] for o in outputs]
    got = rank_values(outputs, metric)
    assert len(got) == len(expected)
    for ours, theirs in zip(got, expected, strict=True):
        if theirs is None:
            assert ours is None, metric
        else:
            assert ours is not None and math.isclose(ours, theirs, rel_tol=1e-12,
                                                     abs_tol=1e-300), (metric, ours, theirs)


@cache
def goog_outputs() -> tuple[BacktestOutput, ...]:
    columns = {c.lower(): GOOG[c].to_numpy(np.float64)
               for c in ("Open", "High", "Low", "Close", "Volume")}
    bars = symbol_bars(GOOG, "GOOG")
    outputs = []
    for sides, risk, options in [
            ("both", RiskSettings(), BacktestOptions()),
            ("long", RiskSettings(stop_loss_pct=3, take_profit_pct=8),
             BacktestOptions(commission=0.002, slippage_bps=5)),
            ("both", RiskSettings(), BacktestOptions(fill="close", commission_fixed=3))]:
        definition = parse_definition(cross_definition(10, 30, sides, risk))
        for fast, slow in [(5, 20), (10, 30), (20, 100), (50, 200)]:
            signals = compile_strategy(definition, {"fast": fast, "slow": slow}).evaluate(columns)
            outputs.append(run_backtest([(bars, signals)], definition.risk, options))
    return tuple(outputs)


@pytest.mark.parametrize("metric", sorted(RANKABLE))
def test_goog_sweep_values_equal_single_runs(metric: str) -> None:
    assert_equal_values(list(goog_outputs()), metric)


@pytest.mark.parametrize("timeline", TIMELINES)
def test_every_annualisation_rule_and_degenerate_runs(timeline: str) -> None:
    outputs = random_walk_outputs(timeline, seed=5, volatility=0.02)
    for metric in sorted(RANKABLE):
        assert_equal_values(outputs, metric)


def test_rankable_metrics_are_real_metrics_and_the_rest_refused() -> None:
    names = {spec.name for spec in METRICS}
    assert names >= RANKABLE and {"sharpe_ratio", "return_pct", "num_trades"} <= RANKABLE
    with pytest.raises(KeyError):
        rank_values([], "best_month_pct")
