"""Backtest API and service: runs, cache hits/misses/invalidation, results, trades, equity,
sweeps, failures, the concurrency limit, the activation gate and isolation."""

from __future__ import annotations

import math
import uuid
from datetime import timedelta

import pytest
from fastapi.testclient import TestClient
from pydantic import SecretStr
from sqlalchemy import delete, func, select, update

from tests.conftest import make_settings, store_bars, wait_for_tasks
from tradeloop.app import create_app
from tradeloop.backtest import service, sweeps
from tradeloop.backtest import tasks as backtest_tasks
from tradeloop.backtest.metrics import METRICS
from tradeloop.backtest.models import (
    BacktestResult,
    BacktestRun,
    BacktestRunSymbol,
    BacktestSweepPoint,
    BacktestTrade,
    RunStatus,
)
from tradeloop.db import Database
from tradeloop.market_data.models import Bar
from tradeloop.settings import Settings
from tradeloop.strategies.demo import MARKET_STRUCTURE, SMA_CROSS
from tradeloop.tasks import registered_schedules

BASE = "/api/v1/backtest"
DEFINITION = SMA_CROSS.replace("[ACME, GLOBX, INITECH, UMBRL, BTCUSD]", "[AAA, BBB]")
REQUIRED_METRICS = (
    "start", "end", "duration_days", "exposure_time_pct", "equity_final", "equity_peak",
    "commissions", "return_pct", "buy_hold_return_pct", "return_ann_pct", "volatility_ann_pct",
    "cagr_pct", "sharpe_ratio", "sortino_ratio", "calmar_ratio", "alpha_pct", "beta",
    "max_drawdown_pct", "avg_drawdown_pct", "max_drawdown_duration_days",
    "avg_drawdown_duration_days", "num_trades", "win_rate_pct", "best_trade_pct",
    "worst_trade_pct", "avg_trade_pct", "max_trade_duration_days", "avg_trade_duration_days",
    "profit_factor", "expectancy_pct", "sqn", "kelly_criterion",
)


@pytest.fixture
def strategy(client: TestClient, db: Database, alice: dict) -> dict:
    store_bars(db, "AAA", 400, seed=1)
    store_bars(db, "BBB", 400, seed=2)
    response = client.post("/api/v1/strategies", json={"definition": DEFINITION},
                           headers=alice)
    assert response.status_code == 201, response.text
    return response.json()


def run(client: TestClient, headers: dict, strategy: dict, **extra) -> dict:
    response = client.post(f"{BASE}/run", json={"strategy_id": strategy["id"], **extra},
                           headers=headers)
    assert response.status_code in (200, 202), response.text
    wait_for_tasks()
    return response.json()


def count(db: Database, model: type, **where) -> int:
    with db.unit_of_work() as session:
        query = select(func.count()).select_from(model)
        for name, value in where.items():
            query = query.where(getattr(model, name) == value)
        return int(session.scalar(query) or 0)


def test_metric_registry_has_the_required_names() -> None:
    names = [spec.name for spec in METRICS]
    assert len(names) == len(set(names)) >= 67
    assert set(REQUIRED_METRICS) <= set(names)
    assert {spec.category for spec in METRICS} == {
        "period", "returns", "risk", "risk_adjusted", "drawdown", "trades", "exposure",
        "benchmark"}


class TestRun:
    def test_run_then_read_result_trades_and_equity(self, client: TestClient, alice: dict,
                                                    strategy: dict) -> None:
        accepted = run(client, alice, strategy, commission=0.001)
        assert accepted["status"] == "queued" and accepted["cached"] is False
        result = client.get(f"{BASE}/results/{accepted['id']}", headers=alice).json()
        assert result["status"] == "done", result["error"]
        assert set(result) >= {"id", "status", "strategy", "params", "symbols", "cached",
                               "metrics"}
        assert result["strategy"] == {"id": strategy["id"], "name": "sma_cross", "version": 1}
        assert result["symbols"] == ["AAA", "BBB"]
        assert result["params"] == {"fast": 10, "slow": 30}
        assert result["options"]["commission"] == 0.001
        flat = {n: v for group in result["metrics"].values() for n, v in group.items()}
        assert set(REQUIRED_METRICS) <= set(flat)
        assert flat["num_trades"] > 0 and flat["commissions"] > 0

        trades = client.get(f"{BASE}/results/{accepted['id']}/trades", headers=alice).json()
        assert trades["total"] == flat["num_trades"] == len(trades["trades"])
        assert {t["symbol"] for t in trades["trades"]} == {"AAA", "BBB"}
        equity = client.get(f"{BASE}/results/{accepted['id']}/equity", params={"points": 50},
                            headers=alice).json()["points"]
        assert len(equity) == 50
        assert equity[-1]["equity"] == pytest.approx(flat["equity_final"])
        assert equity[0]["equity"] == pytest.approx(10_000)

    def test_listing_is_newest_first_and_filters(self, client: TestClient, alice: dict,
                                                 strategy: dict) -> None:
        first = run(client, alice, strategy)
        second = run(client, alice, strategy, symbols=["AAA"])
        listing = client.get(f"{BASE}/results", params={"limit": 20}, headers=alice).json()
        assert [r["id"] for r in listing["results"]] == [second["id"], first["id"]]
        assert listing["results"][0]["summary"]["num_trades"] > 0
        only_bbb = client.get(f"{BASE}/results", params={"symbol": "bbb"}, headers=alice).json()
        assert [r["id"] for r in only_bbb["results"]] == [first["id"]]

    def test_bad_requests(self, client: TestClient, alice: dict, strategy: dict) -> None:
        both = client.post(f"{BASE}/run", json={"strategy_id": strategy["id"],
                                                "strategy_name": "sma_cross"}, headers=alice)
        assert both.status_code == 422
        no_bars = client.post(f"{BASE}/run", json={"strategy_name": "sma_cross",
                                                   "symbols": ["ZZZ"]}, headers=alice)
        assert no_bars.status_code == 422 and no_bars.json()["error"]["code"] == "no_bars"
        bad_param = client.post(f"{BASE}/run", json={"strategy_id": strategy["id"],
                                                     "params": {"fast": -1}}, headers=alice)
        assert bad_param.status_code == 422
        bad_fill = client.post(f"{BASE}/run", json={"strategy_id": strategy["id"],
                                                    "fill": "vwap"}, headers=alice)
        assert bad_fill.status_code == 422


class TestCache:
    def test_identical_request_is_answered_from_the_cache(self, client: TestClient,
                                                          alice: dict, strategy: dict) -> None:
        first = run(client, alice, strategy)
        again = client.post(f"{BASE}/run", json={"strategy_name": "sma_cross",
                                                 "symbols": ["BBB", "aaa"]}, headers=alice)
        assert again.status_code == 200
        body = again.json()
        assert body["cached"] is True and body["id"] == first["id"]
        assert body["status"] == "done" and body["metrics"]["trades"]["num_trades"] > 0
        stats = client.get("/metrics/backtests", headers=alice).json()
        assert stats["cache"] == {"hits": 1, "misses": 1, "hit_rate": 0.5}

    def test_other_params_or_costs_miss(self, client: TestClient, alice: dict,
                                        strategy: dict) -> None:
        first = run(client, alice, strategy)
        assert run(client, alice, strategy, params={"fast": 12})["id"] != first["id"]
        assert run(client, alice, strategy, commission=0.001)["id"] != first["id"]
        assert run(client, alice, strategy, fill="close")["id"] != first["id"]

    def test_changed_bars_invalidate(self, client: TestClient, db: Database, alice: dict,
                                     strategy: dict) -> None:
        first = run(client, alice, strategy)
        store_bars(db, "AAA", 401, seed=1)  # one more bar: the series' fingerprint changes
        second = run(client, alice, strategy)
        assert second["cached"] is False and second["id"] != first["id"]
        assert client.get(f"{BASE}/results/{second['id']}", headers=alice).json()["status"] \
            == "done"

    def test_reformatted_definition_hits(self, client: TestClient, alice: dict,
                                         strategy: dict) -> None:
        first = run(client, alice, strategy)
        reformatted = DEFINITION.replace("sma(close, fast)", "sma( close ,fast )").replace(
            "name: sma_cross", "name: sma_cross_copy")
        other = client.post("/api/v1/strategies", json={"definition": reformatted},
                            headers=alice).json()
        again = client.post(f"{BASE}/run", json={"strategy_id": other["id"]}, headers=alice)
        assert again.status_code == 200 and again.json()["id"] == first["id"]


class TestFailures:
    def test_failed_run_stores_its_error_and_no_partial_rows(
            self, client: TestClient, db: Database, alice: dict, strategy: dict,
            monkeypatch: pytest.MonkeyPatch) -> None:
        original = service.store_output

        def store_then_crash(**kwargs) -> None:
            original(**kwargs)
            raise RuntimeError("disk full")

        monkeypatch.setattr(service, "store_output", store_then_crash)
        accepted = run(client, alice, strategy)
        result = client.get(f"{BASE}/results/{accepted['id']}", headers=alice).json()
        assert result["status"] == "failed" and "disk full" in result["error"]
        assert result["metrics"] == {}
        assert count(db, BacktestResult) == 0 and count(db, BacktestTrade) == 0

        monkeypatch.setattr(service, "store_output", original)
        retried = run(client, alice, strategy)
        assert retried["id"] == accepted["id"]
        assert client.get(f"{BASE}/results/{accepted['id']}", headers=alice).json()[
            "status"] == "done"

    def test_bars_removed_before_the_run_fail_clearly(self, client: TestClient, db: Database,
                                                      alice: dict, strategy: dict) -> None:
        with db.unit_of_work() as session:
            submitted = service.submit_run(
                session=session, owner_id=_user_id(client, alice),
                request=service.RunRequest(strategy=strategy["id"]), max_running=5,
                schedule=False)
            run_id = submitted.run.id
            session.execute(delete(Bar).where(Bar.symbol == "BBB"))
        service.execute_run(db=db, run_id=run_id)
        result = client.get(f"{BASE}/results/{run_id}", headers=alice).json()
        assert result["status"] == "failed" and "No 1d bars for BBB" in result["error"]


def _user_id(client: TestClient, headers: dict) -> uuid.UUID:
    return uuid.UUID(client.get("/api/v1/auth/me", headers=headers).json()["id"])


def test_at_most_max_running_per_user(client: TestClient, db: Database, alice: dict,
                                      strategy: dict) -> None:
    owner = _user_id(client, alice)
    with db.unit_of_work() as session:
        for fast in (5, 6, 7):
            service.submit_run(session=session, owner_id=owner, max_running=2, schedule=False,
                               request=service.RunRequest(strategy=strategy["id"],
                                                          params={"fast": fast}))

    def claim() -> uuid.UUID | None:
        with db.unit_of_work() as session:
            claimed = service.claim_next_run(session=session, owner_id=owner, max_running=2)
            return claimed.id if claimed else None

    first, second, third = claim(), claim(), claim()
    assert first and second and third is None
    assert count(db, BacktestRun, status=RunStatus.RUNNING.value) == 2
    service.execute_run(db=db, run_id=first)
    assert claim() is not None
    assert count(db, BacktestRun, status=RunStatus.QUEUED.value) == 0


class TestActivation:
    def test_refused_until_this_version_was_backtested(self, client: TestClient, alice: dict,
                                                       strategy: dict) -> None:
        url = f"/api/v1/strategies/{strategy['id']}/activate"
        refused = client.post(url, headers=alice)
        assert refused.status_code == 409
        assert refused.json()["error"]["code"] == "backtest_required"
        assert "no finished backtest" in refused.json()["error"]["message"]
        run(client, alice, strategy)
        activated = client.post(url, headers=alice)
        assert activated.status_code == 200 and activated.json()["status"] == "active"

    def test_a_draft_edited_after_its_backtest_needs_a_new_one(
            self, client: TestClient, alice: dict, strategy: dict) -> None:
        run(client, alice, strategy)
        edited = client.patch(f"/api/v1/strategies/{strategy['id']}", headers=alice, json={
            "lock_version": 1, "definition": DEFINITION.replace("slow: 30", "slow: 40")})
        assert edited.status_code == 200
        assert client.post(f"/api/v1/strategies/{strategy['id']}/activate",
                           headers=alice).status_code == 409

    def test_failed_backtest_does_not_count(self, client: TestClient, alice: dict,
                                            strategy: dict,
                                            monkeypatch: pytest.MonkeyPatch) -> None:
        def crash(**_kwargs) -> None:
            raise RuntimeError("boom")

        monkeypatch.setattr(service, "store_output", crash)
        accepted = run(client, alice, strategy)
        assert client.get(f"{BASE}/results/{accepted['id']}", headers=alice).json()[
            "status"] == "failed"
        assert client.post(f"/api/v1/strategies/{strategy['id']}/activate",
                           headers=alice).status_code == 409


def test_sweep_fans_out_and_ranks(client: TestClient, alice: dict, strategy: dict) -> None:
    response = client.post(f"{BASE}/sweep", headers=alice, json={
        "strategy_id": strategy["id"], "grid": {"fast": "5:15:5", "slow": [30, 40]},
        "metric": "return_pct"})
    assert response.status_code == 202, response.text
    accepted = response.json()
    assert accepted["runs"] == 6 and accepted["cached"] == 0
    assert accepted["method"] == "vectorised" and accepted["combinations"] == 6
    wait_for_tasks()
    report = client.get(f"{BASE}/sweep/{accepted['id']}", headers=alice).json()
    assert report["finished"] and report["status"] == {"done": 6}
    values = [entry["value"] for entry in report["ranking"]]
    assert values == sorted(values, reverse=True) and len(values) == 6
    assert {(e["params"]["fast"], e["params"]["slow"]) for e in report["ranking"]} == {
        (f, s) for f in (5, 10, 15) for s in (30, 40)}
    again = client.post(f"{BASE}/sweep", headers=alice, json={
        "strategy_id": strategy["id"], "grid": {"fast": [5, 10]}, "metric": "sharpe_ratio"})
    wait_for_tasks()
    # slow=30 is the default: (5,30),(10,30) ran in full above, so their runs are cache hits.
    assert client.get(f"{BASE}/sweep/{again.json()['id']}", headers=alice).json()[
        "cached"] == 2
    bad = client.post(f"{BASE}/sweep", headers=alice, json={
        "strategy_id": strategy["id"], "grid": {"fast": "9:1:1"}, "metric": "nope"})
    assert bad.status_code == 422


def _metric(client: TestClient, headers: dict, run_id: str, metric: str) -> float:
    result = client.get(f"{BASE}/results/{run_id}", headers=headers).json()
    assert result["status"] == "done", result["error"]
    return next(group[metric] for group in result["metrics"].values() if metric in group)


class TestVectorisedSweeps:
    GRID = {"fast": [5, 8, 12], "slow": [20, 30, 45]}

    @pytest.mark.parametrize("metric", ["sharpe_ratio", "max_drawdown_pct", "win_rate_pct"])
    def test_every_value_equals_a_single_runs_metric(
            self, client: TestClient, alice: dict, strategy: dict, metric: str) -> None:
        accepted = client.post(f"{BASE}/sweep", headers=alice, json={
            "strategy_id": strategy["id"], "grid": self.GRID, "metric": metric, "top": 3,
            "commission": 0.001}).json()
        assert accepted["method"] == "vectorised" and accepted["runs"] == 3
        wait_for_tasks()
        report = client.get(f"{BASE}/sweep/{accepted['id']}", headers=alice).json()
        assert report["finished"] and report["ranked"] == 9 and report["runs"] == 3
        ranking = report["ranking"]
        assert len(ranking) == 9 and report["progress"] == {"completed": 12, "total": 12}
        values = [entry["value"] for entry in ranking]
        assert values == sorted(values, reverse=True)
        # The top 3 run in full; the rest are ranked only.
        assert [e["run_id"] is not None for e in ranking] == [True] * 3 + [False] * 6
        assert report["status"] == {"done": 3}
        for entry in ranking:
            run_id = entry["run_id"] or run(client, alice, strategy, params=entry["params"],
                                            commission=0.001)["id"]
            single = _metric(client, alice, run_id, metric)
            assert math.isclose(entry["value"], single, rel_tol=1e-12), entry

    def test_chunks_fan_out_as_tasks_and_redelivery_adds_nothing(
            self, client: TestClient, db: Database, alice: dict, strategy: dict) -> None:
        owner = _user_id(client, alice)
        with db.unit_of_work() as session:
            sweep, _ = sweeps.create_sweep(
                session=session, owner_id=owner, base=service.RunRequest(strategy="sma_cross"),
                grid=self.GRID, metric="sharpe_ratio", max_running=2, workers=4, top=2,
                descending=False)
            sweep_id = sweep.id
        wait_for_tasks()
        assert count(db, BacktestSweepPoint, sweep_id=sweep_id) == 9
        assert sweeps.rank_chunk(db=db, sweep_id=sweep_id, first=0, stop=3, max_running=2,
                                 workers=1) == 0
        assert count(db, BacktestSweepPoint, sweep_id=sweep_id) == 9
        with db.unit_of_work() as session:
            report = sweeps.sweep_report(session=session, owner_id=owner, sweep_id=sweep_id)
        values = [entry["value"] for entry in report["ranking"]]
        assert values == sorted(values) and report["status"] == {"done": 2}  # lowest first
        assert [e["run_id"] is not None for e in report["ranking"]][:2] == [True, True]

    def test_a_metric_without_a_batch_formula_runs_every_combination(
            self, client: TestClient, alice: dict, strategy: dict) -> None:
        accepted = client.post(f"{BASE}/sweep", headers=alice, json={
            "strategy_id": strategy["id"], "grid": {"fast": [5, 8]},
            "metric": "best_month_pct", "top": 1}).json()
        assert accepted["method"] == "runs" and accepted["runs"] == 2
        wait_for_tasks()
        report = client.get(f"{BASE}/sweep/{accepted['id']}", headers=alice).json()
        assert report["finished"] and report["status"] == {"done": 2}
        for entry in report["ranking"]:
            assert entry["value"] == _metric(client, alice, entry["run_id"], "best_month_pct")
        # Another metric than the sweep's ranks the full runs by their stored results.
        other = client.get(f"{BASE}/sweep/{accepted['id']}", headers=alice,
                           params={"metric": "num_trades"}).json()
        assert len(other["ranking"]) == 2

    def test_a_failing_chunk_ends_the_sweep_with_its_error(
            self, client: TestClient, alice: dict, strategy: dict,
            monkeypatch: pytest.MonkeyPatch) -> None:
        def crash(*_args, **_kwargs) -> None:
            raise RuntimeError("boom")

        monkeypatch.setattr(sweeps, "rank_values", crash)
        accepted = client.post(f"{BASE}/sweep", headers=alice, json={
            "strategy_id": strategy["id"], "grid": {"fast": [5, 8]}}).json()
        wait_for_tasks()
        report = client.get(f"{BASE}/sweep/{accepted['id']}", headers=alice).json()
        assert report["finished"] and report["error"] == "RuntimeError: boom"
        assert report["ranking"] == [] and report["status"] == {}

    def test_bars_missing_when_accepted_is_a_422(self, client: TestClient, alice: dict,
                                                 strategy: dict) -> None:
        answer = client.post(f"{BASE}/sweep", headers=alice, json={
            "strategy_id": strategy["id"], "grid": {"fast": [5, 8]}, "symbols": ["ZZZ"]})
        assert answer.status_code == 422 and answer.json()["error"]["code"] == "no_bars"


def test_other_users_get_404_everywhere(client: TestClient, alice: dict, bob: dict,
                                        strategy: dict) -> None:
    accepted = run(client, alice, strategy)
    url = f"{BASE}/results/{accepted['id']}"
    answers = [client.get(url, headers=bob), client.get(f"{url}/trades", headers=bob),
               client.get(f"{url}/equity", headers=bob), client.delete(url, headers=bob),
               client.post(f"{BASE}/run", json={"strategy_id": strategy["id"]}, headers=bob),
               client.post(f"/api/v1/strategies/{strategy['id']}/activate", headers=bob)]
    assert [a.status_code for a in answers] == [404] * len(answers)
    assert client.get(f"{BASE}/results", headers=bob).json()["results"] == []
    assert client.delete(url, headers=alice).status_code == 204
    assert client.get(url, headers=alice).status_code == 404


def test_backtest_metrics_count_the_callers_runs(db: Database, tmp_path, alice: dict,
                                                bob: dict, admin: dict, strategy: dict) -> None:
    """Issue 13: /metrics/backtests showed every user's runs and cache hits to everyone."""
    settings = make_settings(tmp_path / "data", metrics_token=SecretStr("scraper-token"))
    with TestClient(create_app(settings, db)) as client:
        run(client, alice, strategy)
        run(client, alice, strategy)  # a cache hit
        bobs = client.post("/api/v1/strategies", json={"definition": DEFINITION},
                           headers=bob).json()
        run(client, bob, bobs, symbols=["AAA"])

        def figures(headers: dict, **params: str) -> dict:
            response = client.get("/metrics/backtests", headers=headers, params=params)
            assert response.status_code == 200, response.text
            body = response.json()
            return {"done": body["runs"]["done"], **body["cache"], "scope": body["scope"]}

        assert figures(alice) == {"done": 1, "hits": 1, "misses": 1, "hit_rate": 0.5,
                                  "scope": "user"}
        assert figures(bob) == {"done": 1, "hits": 0, "misses": 1, "hit_rate": 0.0,
                                "scope": "user"}
        assert figures(admin)["done"] == 0  # an admin's own runs unless asking for all
        everyone = {"done": 2, "hits": 1, "misses": 2, "hit_rate": round(1 / 3, 4),
                    "scope": "all"}
        assert figures(admin, scope="all") == everyone
        assert figures({"Authorization": "Bearer scraper-token"}) == everyone
        assert client.get("/metrics/backtests", params={"scope": "all"},
                          headers=alice).status_code == 403
        assert client.get("/metrics/backtests").status_code == 401


def test_market_structure_runs_long_and_short(client: TestClient, alice: dict,
                                              strategy: dict) -> None:
    definition = MARKET_STRUCTURE.replace("[ACME, GLOBX, INITECH, UMBRL, BTCUSD]", "[AAA]")
    created = client.post("/api/v1/strategies", json={"definition": definition},
                          headers=alice).json()
    accepted = run(client, alice, created)
    trades = client.get(f"{BASE}/results/{accepted['id']}/trades", headers=alice).json()
    assert {t["direction"] for t in trades["trades"]} == {"long", "short"}


def _queue_runs(db: Database, owner: uuid.UUID, strategy: dict, fasts: range,
                symbols: list[str]) -> list[uuid.UUID]:
    """Queued (not executed) runs, one per fast value: enough rows to page through."""
    ids = []
    with db.unit_of_work() as session:
        for fast in fasts:
            submitted = service.submit_run(
                session=session, owner_id=owner, max_running=5, schedule=False,
                request=service.RunRequest(strategy=strategy["id"], symbols=symbols,
                                           params={"fast": fast}))
            ids.append(submitted.run.id)
    return ids


class TestListingAtScale:
    def test_symbol_filter_reads_the_run_symbols_index(
            self, client: TestClient, db: Database, alice: dict, strategy: dict) -> None:
        owner = _user_id(client, alice)
        both = _queue_runs(db, owner, strategy, range(5, 8), ["AAA", "BBB"])
        only_a = _queue_runs(db, owner, strategy, range(8, 10), ["AAA"])
        assert count(db, BacktestRunSymbol) == 3 * 2 + 2
        listed = client.get(f"{BASE}/results", params={"symbol": "bbb"}, headers=alice).json()
        assert [r["id"] for r in listed["results"]] == [str(i) for i in reversed(both)]
        # The filter answers from backtest_run_symbols, not from the runs' symbols column.
        with db.unit_of_work() as session:
            session.execute(delete(BacktestRunSymbol).where(
                BacktestRunSymbol.run_id == only_a[0]))
        listed = client.get(f"{BASE}/results", params={"symbol": "AAA"}, headers=alice).json()
        assert [r["id"] for r in listed["results"]] == [
            str(i) for i in reversed([*both, only_a[1]])]
        # Deleting a run deletes its index rows.
        assert client.delete(f"{BASE}/results/{both[0]}", headers=alice).status_code == 204
        assert count(db, BacktestRunSymbol, run_id=both[0]) == 0

    @pytest.mark.parametrize("symbol", [None, "AAA"])
    def test_cursor_pages_equal_offset_pages(self, client: TestClient, db: Database,
                                             alice: dict, bob: dict, strategy: dict,
                                             symbol: str | None) -> None:
        owner = _user_id(client, alice)
        ids = _queue_runs(db, owner, strategy, range(5, 12), ["AAA"])
        newest_first = [str(i) for i in reversed(ids)]
        params = {"limit": 3, **({"symbol": symbol} if symbol else {})}
        seen, cursor, pages = [], None, 0
        while True:
            page = client.get(f"{BASE}/results", headers=alice, params={
                **params, **({"before": cursor} if cursor else {})}).json()
            seen += [r["id"] for r in page["results"]]
            pages += 1
            cursor = page["next_cursor"]
            if cursor is None:
                break
        assert seen == newest_first and pages == 3
        by_offset = client.get(f"{BASE}/results", headers=alice,
                               params={**params, "offset": 3}).json()
        assert [r["id"] for r in by_offset["results"]] == newest_first[3:6]
        # A cursor only pages the caller's own runs.
        first = client.get(f"{BASE}/results", headers=alice, params=params).json()
        assert client.get(f"{BASE}/results", headers=bob, params={
            **params, "before": first["next_cursor"]}).json()["results"] == []

    def test_a_bad_cursor_is_a_clear_422(self, client: TestClient, alice: dict) -> None:
        for cursor in ("nonsense", "bm90IGEgY3Vyc29y", service.Cursor(
                service.utcnow(), uuid.uuid4()).encode()[:-4]):
            answer = client.get(f"{BASE}/results", params={"before": cursor}, headers=alice)
            assert answer.status_code == 422, cursor
            assert answer.json()["error"]["details"]["fields"][0]["field"] == "before"


class TestAbandonedRuns:
    """A run left `running` by a killed worker goes back to the queue when its lease ends."""

    LEASE = service.Lease(duration=timedelta(seconds=60), max_attempts=2)

    @staticmethod
    def claim(db: Database, owner: uuid.UUID) -> tuple[uuid.UUID, int] | None:
        with db.unit_of_work() as session:
            run = service.claim_next_run(session=session, owner_id=owner, max_running=1,
                                         lease=TestAbandonedRuns.LEASE)
            return (run.id, run.attempts) if run else None

    @staticmethod
    def kill_worker(db: Database, run_id: uuid.UUID) -> None:
        """What a worker killed mid-run leaves: the claim, older than the lease."""
        with db.unit_of_work() as session:
            session.execute(update(BacktestRun).where(BacktestRun.id == run_id).values(
                started_at=service.utcnow() - timedelta(minutes=5)))

    def test_a_claim_reclaims_an_expired_run_then_fails_it_after_max_attempts(
            self, client: TestClient, db: Database, alice: dict, strategy: dict) -> None:
        owner = _user_id(client, alice)
        first, second = _queue_runs(db, owner, strategy, range(5, 7), ["AAA"])
        assert self.claim(db, owner) == (first, 1)
        assert self.claim(db, owner) is None          # the one slot is taken
        self.kill_worker(db, first)
        assert self.claim(db, owner) == (first, 2)    # requeued and claimed again
        self.kill_worker(db, first)
        assert self.claim(db, owner) == (second, 1)   # out of attempts: failed, queue goes on
        failed = client.get(f"{BASE}/results/{first}", headers=alice).json()
        assert failed["status"] == "failed" and "60 s lease, 2 times" in failed["error"]

    def test_the_scheduled_sweeper_requeues_and_restarts_the_queue(
            self, client: TestClient, db: Database, alice: dict, strategy: dict,
            settings: Settings, monkeypatch: pytest.MonkeyPatch) -> None:
        owner = _user_id(client, alice)
        (run_id,) = _queue_runs(db, owner, strategy, range(5, 6), ["AAA"])
        assert self.claim(db, owner) == (run_id, 1)
        monkeypatch.setattr(backtest_tasks, "get_settings", lambda: settings.model_copy(
            update={"backtest_lease_seconds": 60}))
        assert backtest_tasks.requeue_stale_backtests(db=db) == 0   # within its lease
        self.kill_worker(db, run_id)
        assert backtest_tasks.requeue_stale_backtests(db=db) == 1
        wait_for_tasks()
        result = client.get(f"{BASE}/results/{run_id}", headers=alice).json()
        assert result["status"] == "done" and result["metrics"]["trades"]["num_trades"] > 0
        assert "requeue-stale-backtests" in registered_schedules()

    def test_an_execution_whose_claim_was_taken_over_stores_nothing(
            self, client: TestClient, db: Database, alice: dict, strategy: dict) -> None:
        owner = _user_id(client, alice)
        (run_id,) = _queue_runs(db, owner, strategy, range(5, 6), ["AAA"])
        assert self.claim(db, owner) == (run_id, 1)
        self.kill_worker(db, run_id)
        assert self.claim(db, owner) == (run_id, 2)
        service.execute_run(db=db, run_id=run_id, attempt=1)    # the "dead" worker wakes up
        assert count(db, BacktestResult) == 0
        assert count(db, BacktestRun, status=RunStatus.RUNNING.value) == 1
        service.execute_run(db=db, run_id=run_id, attempt=2)
        assert client.get(f"{BASE}/results/{run_id}", headers=alice).json()["status"] == "done"
