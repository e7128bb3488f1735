"""Strategies API: CRUD, validation, versions, optimistic locking, syntax test, isolation."""

from __future__ import annotations

import time
import uuid
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

from fastapi.testclient import TestClient
from sqlalchemy import delete

from tests.conftest import api_headers, make_settings, store_bars
from tradeloop.accounts.models import User
from tradeloop.app import create_app
from tradeloop.db import Database, create_db_engine
from tradeloop.seeding import seed_demo
from tradeloop.strategies.demo import MARKET_STRUCTURE, SMA_CROSS

BASE = "/api/v1/strategies"


def create(client: TestClient, headers: dict[str, str], definition: str = SMA_CROSS) -> dict:
    response = client.post(BASE, json={"definition": definition, "metadata": {"k": 1}},
                           headers=headers)
    assert response.status_code == 201, response.text
    return response.json()


class TestCreateAndRead:
    def test_create_get_list(self, client: TestClient, alice: dict) -> None:
        created = create(client, alice)
        assert created["name"] == "sma_cross"
        assert (created["version"], created["lock_version"], created["status"]) == (1, 1, "draft")
        assert created["metadata"] == {"k": 1}
        fetched = client.get(f"{BASE}/{created['id']}", headers=alice).json()
        assert fetched == created
        listing = client.get(BASE, headers=alice).json()
        assert listing["total"] == 1 and listing["strategies"][0]["id"] == created["id"]

    def test_invalid_definition_is_refused_with_every_error(self, client: TestClient,
                                                             alice: dict) -> None:
        response = client.post(BASE, json={"definition": "name: x\nsymbols: [A]\n"
                                           "entry: {long: foo(close)}\nbogus: 1\n"},
                               headers=alice)
        assert response.status_code == 422
        errors = response.json()["error"]["details"]["errors"]
        assert {e["line"] for e in errors} == {3, 4}
        assert client.get(BASE, headers=alice).json()["total"] == 0

    def test_same_name_twice_is_a_conflict(self, client: TestClient, alice: dict) -> None:
        create(client, alice)
        response = client.post(BASE, json={"definition": SMA_CROSS}, headers=alice)
        assert response.status_code == 409
        assert response.json()["error"]["code"] == "name_taken"

    def test_needs_authentication(self, client: TestClient) -> None:
        assert client.get(BASE).status_code == 401


class TestValidate:
    def test_answers_valid_and_invalid(self, client: TestClient, alice: dict) -> None:
        ok = client.post(f"{BASE}/validate", json={"definition": MARKET_STRUCTURE},
                         headers=alice).json()
        assert ok == {"valid": True, "errors": []}
        bad = client.post(f"{BASE}/validate",
                          json={"definition": "name: x\nsymbols: [A]\nentry: {long: nope > 1}\n"},
                          headers=alice).json()
        assert bad["valid"] is False
        assert bad["errors"] == [{"line": 3, "column": 15, "message": bad["errors"][0]["message"]}]
        assert "unknown name 'nope'" in bad["errors"][0]["message"]


class TestUpdate:
    def test_patch_bumps_lock_version(self, client: TestClient, alice: dict) -> None:
        created = create(client, alice)
        changed = SMA_CROSS.replace("fast: 10", "fast: 12")
        response = client.patch(f"{BASE}/{created['id']}",
                                json={"lock_version": 1, "definition": changed}, headers=alice)
        assert response.status_code == 200, response.text
        assert response.json()["lock_version"] == 2
        assert "fast: 12" in response.json()["definition"]

    def test_stale_lock_version_is_409_with_current(self, client: TestClient,
                                                    alice: dict) -> None:
        created = create(client, alice)
        url = f"{BASE}/{created['id']}"
        assert client.patch(url, json={"lock_version": 1, "metadata": {"a": 1}},
                            headers=alice).status_code == 200
        stale = client.patch(url, json={"lock_version": 1, "metadata": {"b": 2}}, headers=alice)
        assert stale.status_code == 409
        error = stale.json()["error"]
        assert error["code"] == "version_conflict"
        assert error["details"]["current_lock_version"] == 2
        assert client.get(url, headers=alice).json()["metadata"] == {"a": 1}

    def test_invalid_definition_changes_nothing(self, client: TestClient, alice: dict) -> None:
        created = create(client, alice)
        url = f"{BASE}/{created['id']}"
        response = client.patch(url, json={"lock_version": 1, "definition": "name: [x"},
                                headers=alice)
        assert response.status_code == 422
        assert client.get(url, headers=alice).json() == created

    def test_only_drafts_take_definition_edits(self, client: TestClient, alice: dict) -> None:
        created = create(client, alice)
        url = f"{BASE}/{created['id']}"
        paused = client.patch(url, json={"lock_version": 1, "status": "paused"}, headers=alice)
        assert paused.json()["status"] == "paused"
        edit = client.patch(url, json={"lock_version": 2, "definition": SMA_CROSS + "\n# x"},
                            headers=alice)
        assert edit.status_code == 409 and edit.json()["error"]["code"] == "not_editable"
        activate = client.patch(url, json={"lock_version": 2, "status": "active"}, headers=alice)
        assert activate.status_code == 422  # active is only reachable through /activate

    def test_new_version_copies_into_a_draft(self, client: TestClient, alice: dict) -> None:
        created = create(client, alice)
        client.patch(f"{BASE}/{created['id']}", json={"lock_version": 1, "status": "archived"},
                     headers=alice)
        second = client.post(f"{BASE}/{created['id']}/versions", headers=alice)
        assert second.status_code == 201
        body = second.json()
        assert (body["name"], body["version"], body["status"]) == ("sma_cross", 2, "draft")
        assert body["definition"] == created["definition"] and body["id"] != created["id"]
        third = client.post(f"{BASE}/{created['id']}/versions", headers=alice).json()
        assert third["version"] == 3

    def test_delete(self, client: TestClient, alice: dict) -> None:
        created = create(client, alice)
        assert client.delete(f"{BASE}/{created['id']}", headers=alice).status_code == 204
        assert client.get(f"{BASE}/{created['id']}", headers=alice).status_code == 404


class TestSyntaxTest:
    def test_reports_signals_per_symbol(self, client: TestClient, db: Database,
                                        alice: dict) -> None:
        store_bars(db, "AAA")
        created = create(client, alice, MARKET_STRUCTURE.replace(
            "[ACME, GLOBX, INITECH, UMBRL, BTCUSD]", "[AAA]"))
        report = client.post(f"{BASE}/{created['id']}/syntax-test", headers=alice).json()
        assert report["timeframe"] == "1d" and report["params"] == {"lookback": 20}
        [symbol] = report["symbols"]
        assert symbol["symbol"] == "AAA" and symbol["bars"] == 300
        assert symbol["entries_long"] > 0 and symbol["entries_short"] > 0
        assert len(symbol["recent_signals"]) <= 10

    def test_demo_universe_answers_under_three_seconds(self, client: TestClient, db: Database,
                                                       alice: dict) -> None:
        with db.unit_of_work() as session:
            seed_demo(session=session)
        created = create(client, alice, MARKET_STRUCTURE)
        started = time.perf_counter()
        response = client.post(f"{BASE}/{created['id']}/syntax-test",
                               json={"bars": 100_000}, headers=alice)
        elapsed = time.perf_counter() - started
        assert response.status_code == 200, response.text
        report = response.json()
        assert len(report["symbols"]) == 5
        assert all(s["bars"] > 2500 and s["entries_long"] > 0 for s in report["symbols"])
        assert elapsed < 3.0

    def test_symbol_without_bars_is_a_clear_error(self, client: TestClient,
                                                  alice: dict) -> None:
        created = create(client, alice)
        response = client.post(f"{BASE}/{created['id']}/syntax-test",
                               json={"symbols": ["NOPE"]}, headers=alice)
        assert response.status_code == 422
        error = response.json()["error"]
        assert error["code"] == "no_bars" and error["details"]["missing"] == ["NOPE"]
        assert "tradeloop data import" in error["message"]

    def test_bad_param_override(self, client: TestClient, db: Database, alice: dict) -> None:
        store_bars(db, "ACME")
        created = create(client, alice)
        response = client.post(f"{BASE}/{created['id']}/syntax-test",
                               json={"symbols": ["ACME"], "params": {"fast": 0}}, headers=alice)
        assert response.status_code == 422
        assert "whole number" in response.json()["error"]["details"]["errors"][0]["message"]


def test_other_users_get_404_on_every_endpoint(client: TestClient, alice: dict,
                                               bob: dict) -> None:
    created = create(client, alice)
    url = f"{BASE}/{created['id']}"
    calls = [
        client.get(url, headers=bob),
        client.patch(url, json={"lock_version": 1, "metadata": {}}, headers=bob),
        client.delete(url, headers=bob),
        client.post(f"{url}/versions", headers=bob),
        client.post(f"{url}/syntax-test", headers=bob),
    ]
    missing = client.get(f"{BASE}/{uuid.uuid4()}", headers=bob)
    assert [c.status_code for c in calls] == [404] * len(calls)
    assert {c.json()["error"]["message"] for c in calls} == {missing.json()["error"]["message"]}
    assert client.get(BASE, headers=bob).json()["total"] == 0
    assert client.get(url, headers=alice).json() == created


def test_concurrent_patches_with_one_lock_version_let_exactly_one_win(
        database_url: str, tmp_path: Path) -> None:
    """Real concurrent requests on committed data (no outer test transaction)."""
    db = Database(create_db_engine(database_url))
    email = f"race-{uuid.uuid4().hex[:8]}@example.com"
    headers = api_headers(db, email)
    try:
        with TestClient(create_app(make_settings(tmp_path / "data"), db)) as client:
            created = create(client, headers)
            url = f"{BASE}/{created['id']}"

            def patch(n: int) -> tuple[int, int]:
                response = client.patch(url, headers=headers, json={
                    "lock_version": 1, "metadata": {"writer": n}})
                return n, response.status_code

            with ThreadPoolExecutor(max_workers=8) as pool:
                results = list(pool.map(patch, range(8)))
            winners = [n for n, code in results if code == 200]
            assert len(winners) == 1, results
            assert sorted(code for _, code in results) == [200] + [409] * 7
            final = client.get(url, headers=headers).json()
            assert final["lock_version"] == 2 and final["metadata"] == {"writer": winners[0]}
    finally:
        with db.unit_of_work() as session:
            session.execute(delete(User).where(User.email == email))
        db.dispose()

