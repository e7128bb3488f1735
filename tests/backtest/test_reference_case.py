"""backtesting.py's own published test case through the API, with default options.

Its `test_compute_stats` runs SmaCross(10, 30) — always in the market — on the GOOG bars it
ships, with `finalize_trades=True`, and publishes 32 statistics. Imported through
POST /api/v1/bars, run through POST /api/v1/backtest/run and read back through
GET /api/v1/backtest/results/{id}, tradeloop's defaults reproduce every one of them to
rtol 1e-8, on the data as it is. `end_fill: "close"` keeps marking a trade still open at the
end to the last close.
"""

from __future__ import annotations

import warnings
from datetime import UTC, datetime
from typing import Any

import numpy as np
import pandas as pd
import pytest
from backtesting import Backtest
from backtesting.test import GOOG
from backtesting.test._test import SmaCross  # the test case's own strategy
from fastapi.testclient import TestClient

from tests.conftest import wait_for_tasks
from tradeloop.backtest import service

BASE = "/api/v1/backtest"
RTOL = 1e-8
SMA_CROSS = """\
name: goog_smacross
timeframe: 1d
symbols: [GOOG]
params: {fast: 10, slow: 30}
indicators:
  sma1: sma(close, fast)
  sma2: sma(close, slow)
entry: {long: crossover(sma1, sma2), short: crossover(sma2, sma1)}
"""

# backtesting.py 0.6.6, backtesting/test/_test.py, TestBacktest.test_compute_stats: the
# expected Series as published (durations as days).
PUBLISHED: dict[str, Any] = {
    "# Trades": 66,
    "Avg. Drawdown Duration": 41.0,
    "Avg. Drawdown [%]": -5.925851581948801,
    "Avg. Trade Duration": 46.0,
    "Avg. Trade [%]": 2.531715975158555,
    "Best Trade [%]": 53.59595229490424,
    "Buy & Hold Return [%]": 522.0601851851852,
    "Calmar Ratio": 0.44166409202994605,
    "Duration": 3116.0,
    "End": datetime(2013, 3, 1, tzinfo=UTC),
    "Equity Final [$]": 51422.98999999996,
    "Equity Peak [$]": 75787.44,
    "Expectancy [%]": 3.2748078066748834,
    "Exposure Time [%]": 96.74115456238361,
    "Max. Drawdown Duration": 584.0,
    "Max. Drawdown [%]": -47.98012705007589,
    "Max. Trade Duration": 183.0,
    "Profit Factor": 2.167945974262033,
    "Return (Ann.) [%]": 21.191099249053224,
    "Return [%]": 414.2298999999996,
    "Volatility (Ann.) [%]": 36.49716090702389,
    "CAGR [%]": 21.160245705962623,
    "SQN": 1.0766187356697705,
    "Kelly Criterion": 0.1518705127029717,
    "Sharpe Ratio": 0.5806232244485349,
    "Sortino Ratio": 1.0853434352488662,
    "Start": datetime(2004, 8, 19, tzinfo=UTC),
    "Win Rate [%]": 46.96969696969697,
    "Worst Trade [%]": -18.39887353835481,
    "Alpha [%]": 394.37391142027462,
    "Beta": 0.03803390709192,
}
# ... and the metric each is in tradeloop (category, name).
TRADELOOP_NAMES = {
    "# Trades": ("trades", "num_trades"),
    "Avg. Drawdown Duration": ("drawdown", "avg_drawdown_duration_days"),
    "Avg. Drawdown [%]": ("drawdown", "avg_drawdown_pct"),
    "Avg. Trade Duration": ("trades", "avg_trade_duration_days"),
    "Avg. Trade [%]": ("trades", "avg_trade_pct"),
    "Best Trade [%]": ("trades", "best_trade_pct"),
    "Buy & Hold Return [%]": ("benchmark", "buy_hold_return_pct"),
    "Calmar Ratio": ("risk_adjusted", "calmar_ratio"),
    "Duration": ("period", "duration_days"),
    "End": ("period", "end"),
    "Equity Final [$]": ("returns", "equity_final"),
    "Equity Peak [$]": ("returns", "equity_peak"),
    "Expectancy [%]": ("trades", "expectancy_pct"),
    "Exposure Time [%]": ("exposure", "exposure_time_pct"),
    "Max. Drawdown Duration": ("drawdown", "max_drawdown_duration_days"),
    "Max. Drawdown [%]": ("drawdown", "max_drawdown_pct"),
    "Max. Trade Duration": ("trades", "max_trade_duration_days"),
    "Profit Factor": ("trades", "profit_factor"),
    "Return (Ann.) [%]": ("returns", "return_ann_pct"),
    "Return [%]": ("returns", "return_pct"),
    "Volatility (Ann.) [%]": ("risk", "volatility_ann_pct"),
    "CAGR [%]": ("returns", "cagr_pct"),
    "SQN": ("trades", "sqn"),
    "Kelly Criterion": ("trades", "kelly_criterion"),
    "Sharpe Ratio": ("risk_adjusted", "sharpe_ratio"),
    "Sortino Ratio": ("risk_adjusted", "sortino_ratio"),
    "Start": ("period", "start"),
    "Win Rate [%]": ("trades", "win_rate_pct"),
    "Worst Trade [%]": ("trades", "worst_trade_pct"),
    "Alpha [%]": ("benchmark", "alpha_pct"),
    "Beta": ("benchmark", "beta"),
}


@pytest.fixture(scope="module")
def reference() -> pd.Series:
    """backtesting.py's run of the test case, as its test does it."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        return Backtest(GOOG, SmaCross, finalize_trades=True).run()


def in_days(value: Any) -> Any:
    return value / pd.Timedelta(days=1) if isinstance(value, pd.Timedelta) else value


def assert_close(name: str, ours: Any, published: Any) -> None:
    if isinstance(published, datetime):
        assert datetime.fromisoformat(ours) == published, name
    else:
        assert ours == pytest.approx(published, rel=RTOL), f"{name}: {ours!r} != {published!r}"


def test_the_published_statistics_are_backtesting_py_s(reference: pd.Series) -> None:
    """The numbers above are the installed backtesting.py's own, and all of the named stats
    its test compares (`stats.filter(regex='^[^_]')`: 31; the issue counted 32)."""
    named = reference.filter(regex="^[^_]")
    assert set(named.index) == set(PUBLISHED) == set(TRADELOOP_NAMES)
    assert len(PUBLISHED) == 31
    for name, published in PUBLISHED.items():
        theirs = in_days(named[name])
        if isinstance(published, datetime):
            assert theirs.to_pydatetime().replace(tzinfo=UTC) == published, name
        else:
            assert np.isclose(theirs, published, rtol=RTOL), name


@pytest.fixture
def goog(client: TestClient, admin: dict, alice: dict) -> dict:
    """backtesting.py's GOOG bars imported through the API (as they are: no extra bar), and
    the SmaCross strategy created by a user."""
    rows = [{"ts": f"{ts:%Y-%m-%d}T00:00:00Z", "open": row.Open, "high": row.High,
             "low": row.Low, "close": row.Close, "volume": row.Volume}
            for ts, row in zip(GOOG.index, GOOG.itertuples(), strict=True)]
    imported = client.post("/api/v1/bars", json={"symbol": "GOOG", "timeframe": "1d",
                                                 "bars": rows}, headers=admin)
    assert imported.status_code == 201, imported.text
    assert imported.json()["inserted"] == len(GOOG) == 2148
    created = client.post("/api/v1/strategies", json={"definition": SMA_CROSS},
                          headers=alice)
    assert created.status_code == 201, created.text
    return created.json()


def run_and_read(client: TestClient, headers: dict, strategy: dict, **options: Any) -> dict:
    accepted = client.post(f"{BASE}/run", json={"strategy_id": strategy["id"],
                                               "symbols": ["GOOG"], **options},
                           headers=headers)
    assert accepted.status_code == 202, accepted.text
    wait_for_tasks()
    result = client.get(f"{BASE}/results/{accepted.json()['id']}", headers=headers).json()
    assert result["status"] == "done", result["error"]
    return result


def trades_of(client: TestClient, headers: dict, result: dict) -> list[dict]:
    return client.get(f"{BASE}/results/{result['id']}/trades", headers=headers).json()["trades"]


def test_an_api_run_with_default_options_reproduces_the_published_statistics(
        client: TestClient, alice: dict, goog: dict, reference: pd.Series) -> None:
    result = run_and_read(client, alice, goog)
    assert result["options"]["end_fill"] == "open"
    for name, published in PUBLISHED.items():
        category, ours = TRADELOOP_NAMES[name]
        assert_close(name, result["metrics"][category][ours], published)
    # The same trades, the one still open at the end closed at the last bar's open.
    trades = trades_of(client, alice, result)
    theirs = reference._trades
    assert len(trades) == len(theirs) == 66
    for column, key in (("EntryPrice", "entry_price"), ("ExitPrice", "exit_price"),
                        ("PnL", "pnl")):
        np.testing.assert_allclose([t[key] for t in trades], theirs[column], rtol=RTOL)
    np.testing.assert_array_equal([t["size"] for t in trades], theirs.Size.abs())
    assert trades[-1]["exit_reason"] == "end"
    assert trades[-1]["exit_price"] == GOOG.Open.iloc[-1]


def test_end_fill_close_marks_the_last_trade_to_the_last_close(
        client: TestClient, alice: dict, goog: dict) -> None:
    """The issue's figures of the old convention, now an option: Return 419.5995 %, Sharpe
    0.58396. Buy & hold and exposure do not depend on it."""
    default = run_and_read(client, alice, goog)
    marked = run_and_read(client, alice, goog, end_fill="close")
    assert marked["id"] != default["id"] and marked["options"]["end_fill"] == "close"
    metrics = marked["metrics"]
    assert metrics["returns"]["return_pct"] == pytest.approx(419.5995, abs=5e-5)
    assert metrics["risk_adjusted"]["sharpe_ratio"] == pytest.approx(0.58396, abs=5e-6)
    assert metrics["benchmark"]["buy_hold_return_pct"] == pytest.approx(
        PUBLISHED["Buy & Hold Return [%]"], rel=RTOL)
    assert metrics["exposure"]["exposure_time_pct"] == pytest.approx(
        PUBLISHED["Exposure Time [%]"], rel=RTOL)
    last = trades_of(client, alice, marked)[-1]
    assert (last["exit_reason"], last["exit_price"]) == ("end", GOOG.Close.iloc[-1])
    # Asked for explicitly, the default is the same request: answered from the cache.
    again = client.post(f"{BASE}/run", json={"strategy_id": goog["id"], "symbols": ["GOOG"],
                                             "end_fill": "open"}, headers=alice)
    assert again.status_code == 200 and again.json()["id"] == default["id"]


def test_end_fill_is_validated(client: TestClient, alice: dict, goog: dict) -> None:
    response = client.post(f"{BASE}/run", json={"strategy_id": goog["id"],
                                                "symbols": ["GOOG"], "end_fill": "noon"},
                           headers=alice)
    assert response.status_code == 422
    assert "end_fill" in response.text


def test_results_of_the_previous_engine_are_not_served(
        client: TestClient, alice: dict, goog: dict, monkeypatch: pytest.MonkeyPatch) -> None:
    """A result stored under engine version 1 (which closed at the last close and measured
    buy & hold from the first bar) has another cache key: the same request computes anew."""
    with monkeypatch.context() as old_engine:
        old_engine.setattr(service, "ENGINE_VERSION", "1")
        stored = run_and_read(client, alice, goog)
    fresh = client.post(f"{BASE}/run", json={"strategy_id": goog["id"], "symbols": ["GOOG"]},
                        headers=alice)
    assert fresh.status_code == 202 and fresh.json()["id"] != stored["id"]
    wait_for_tasks()


@pytest.mark.parametrize(("end_fill", "expected_return"), [
    (None, pytest.approx(PUBLISHED["Return [%]"], rel=RTOL)),
    ("close", pytest.approx(419.5995, abs=5e-5))])
def test_sweeps_rank_and_run_with_the_run_s_end_fill(
        client: TestClient, alice: dict, goog: dict, end_fill: str | None,
        expected_return: Any) -> None:
    """The sweep path takes the option too: the batch ranking and the full runs of the top
    combinations (10/30 is the published case)."""
    body = {"strategy_id": goog["id"], "symbols": ["GOOG"], "grid": {"fast": [10, 20]},
            "metric": "return_pct", **({"end_fill": end_fill} if end_fill else {})}
    accepted = client.post(f"{BASE}/sweep", json=body, headers=alice)
    assert accepted.status_code == 202, accepted.text
    wait_for_tasks()
    report = client.get(f"{BASE}/sweep/{accepted.json()['id']}", headers=alice).json()
    assert report["finished"] and report["method"] == "vectorised", report
    [published] = [e for e in report["ranking"] if e["params"]["fast"] == 10]
    assert published["value"] == expected_return
    run = client.get(f"{BASE}/results/{published['run_id']}", headers=alice).json()
    assert run["options"]["end_fill"] == (end_fill or "open")
    assert run["metrics"]["returns"]["return_pct"] == pytest.approx(published["value"],
                                                                     rel=1e-12)
