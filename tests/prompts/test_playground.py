"""POST /test (user and admin), GET /stats and /performance, and the usage statistics kept
current by the execution listener — through the real llm service with the local analyst."""

from __future__ import annotations

from decimal import Decimal

import pytest
from fastapi.testclient import TestClient

from tests.conftest import store_bars
from tests.prompts.conftest import BASE, create_strategy, template_body
from tradeloop.db import Database
from tradeloop.prompts.analysis import analysis_variables

LOCAL = {"provider": "local", "model_name": None, "temperature": 0, "max_tokens": 800}


@pytest.fixture
def daily(client: TestClient, admin: dict, seeded: list[str]) -> dict:
    return client.get(f"{BASE}/", params={"type": "analysis", "timeframe": "daily"},
                      headers=admin).json()["templates"][0]


@pytest.fixture
def variables(db: Database) -> dict:
    store_bars(db, "AAPL", 300, seed=5, drift=0.002)
    with db.unit_of_work() as session:
        return analysis_variables(session, symbol="AAPL", timeframe="1d")


def test_test_without_execution_renders_and_estimates(client: TestClient, alice: dict) -> None:
    response = client.post(f"{BASE}/test", json={
        "template_text": "Explain {{ topic }} to a {{ grade }} grader", "model_config": LOCAL,
        "variables": {"topic": "support levels", "grade": "5th"}}, headers=alice)
    assert response.status_code == 200, response.text
    body = response.json()
    assert body["rendered"] == "Explain support levels to a 5th grader"
    assert body["executed"] is False and body["success"] is None
    assert body["input_tokens"] > 5 and Decimal(body["cost_usd"]) >= 0
    assert body["execution_id"] is None


def test_test_executes_a_stored_template_and_everything_is_counted(
        client: TestClient, admin: dict, daily: dict, variables: dict) -> None:
    response = client.post(f"{BASE}/test", json={
        "template_id": daily["id"], "variables": variables, "model_config": LOCAL,
        "execute": True}, headers=admin)
    assert response.status_code == 200, response.text
    result = response.json()
    assert result["executed"] and result["success"], result
    assert result["provider"] == "local" and result["version"] == 1
    assert result["analysis"]["direction"] in {"LONG", "SHORT", "NEUTRAL"}
    assert result["rendered"].startswith("\nSymbol: AAPL") or "Symbol: AAPL" in result["rendered"]
    assert result["input_tokens"] > 500 and result["latency_ms"] >= 0
    assert isinstance(result["guardrails"], list) and result["execution_id"]

    stats = client.get(f"{BASE}/{daily['id']}/stats", headers=admin).json()
    assert stats["executions"] == 1 and stats["success_rate"] == 1.0
    assert stats["p95_latency_ms"] is not None and "total_cost_usd" in stats
    assert client.get(f"{BASE}/{daily['id']}/stats", params={"version": 1},
                      headers=admin).json()["executions"] == 1
    assert client.get(f"{BASE}/{daily['id']}/stats", params={"version": 2},
                      headers=admin).status_code == 404

    usage = client.get(f"{BASE}/{daily['id']}", headers=admin).json()["usage"]
    assert usage["executions"] == 1 and usage["success_rate"] == 1.0
    assert usage["avg_latency_ms"] == pytest.approx(result["latency_ms"], abs=0.01)

    client.put(f"{BASE}/{daily['id']}", json={"change_note": "tweak",
                                               "template_text": daily["template_text"] + "\n"},
               headers=admin)
    performance = client.get(f"{BASE}/{daily['id']}/performance", headers=admin).json()
    assert [(v["version"], v["executions"]) for v in performance["versions"]] == [(2, 0), (1, 1)]
    assert performance["overall"]["executions"] == 1


def test_blocked_executions_count_as_failures_with_guardrail_results(
        client: TestClient, admin: dict) -> None:
    created = client.post(f"{BASE}/", json=template_body(
        template_text="Analyse {{ symbol }} at {{ price }}, password hunter2"),
        headers=admin).json()
    guardrail = client.post("/api/v1/admin/guardrails", json={
        "name": "no passwords", "rule_type": "keyword_block", "applies_to": "input",
        "action": "block", "config": {"keywords": ["password"]},
        "template_id": created["id"]}, headers=admin)
    assert guardrail.status_code == 201, guardrail.text
    refused = client.post(f"{BASE}/test", json={
        "template_id": created["id"], "variables": {"symbol": "AAPL", "price": None},
        "model_config": LOCAL, "execute": True}, headers=admin)
    assert refused.status_code == 422  # price is not nullable: refused before any call
    result = client.post(f"{BASE}/test", json={
        "template_id": created["id"], "variables": {"symbol": "AAPL", "price": 1.5},
        "model_config": LOCAL, "execute": True}, headers=admin).json()
    assert result["executed"] and result["success"] is False and result["error_type"]
    assert [g["name"] for g in result["guardrails"] if g["triggered"]] == ["no passwords"]
    usage = client.get(f"{BASE}/{created['id']}", headers=admin).json()["usage"]
    assert usage["executions"] == 1 and usage["success_rate"] == 0.0


def test_admin_test_endpoint_seed_001_shape(client: TestClient, admin: dict,
                                            alice: dict) -> None:
    body = {"template_text": "Explain {{topic}} to a {{grade_level}} grader",
            "variables": {"topic": "photosynthesis", "grade_level": "5th"},
            "model_config": {"provider": "local", "model_name": None, "temperature": 0.7}}
    response = client.post("/api/v1/admin/prompts/test", json=body, headers=admin)
    assert response.status_code == 200, response.text
    assert response.json()["rendered"] == "Explain photosynthesis to a 5th grader"
    assert client.post("/api/v1/admin/prompts/test", json=body,
                       headers=alice).status_code == 404


def test_stats_of_foreign_templates_are_404(client: TestClient, alice: dict, bob: dict) -> None:
    strategy_id = create_strategy(client, alice)
    template_id = client.post(f"{BASE}/", json=template_body(strategy_id=strategy_id),
                              headers=alice).json()["id"]
    assert client.get(f"{BASE}/{template_id}/stats", headers=bob).status_code == 404
    assert client.get(f"{BASE}/{template_id}/performance", headers=bob).status_code == 404
    assert client.post(f"{BASE}/test", json={"template_id": template_id, "variables": {}},
                       headers=bob).status_code == 404
    own = client.get(f"{BASE}/{template_id}/stats", headers=alice).json()
    assert own["executions"] == 0 and own["success_rate"] is None


def test_usage_and_stats_of_a_global_template_count_the_callers_executions(
        client: TestClient, alice: dict, bob: dict, admin: dict, daily: dict,
        variables: dict) -> None:
    """Issue 13: a global template's usage, /stats and /performance counted every user's
    executions for every reader."""
    for headers in (alice, alice, bob):
        executed = client.post(f"{BASE}/test", json={
            "template_id": daily["id"], "variables": variables, "model_config": LOCAL,
            "execute": True}, headers=headers).json()
        assert executed["executed"] and executed["success"], executed
    url = f"{BASE}/{daily['id']}"

    def counts(headers: dict, **params: str) -> tuple[int, int, int]:
        stats = client.get(f"{url}/stats", headers=headers, params=params)
        performance = client.get(f"{url}/performance", headers=headers, params=params)
        assert stats.status_code == performance.status_code == 200, stats.text
        return (client.get(url, headers=headers).json()["usage"]["executions"],
                stats.json()["executions"], performance.json()["overall"]["executions"])

    assert counts(alice) == (2, 2, 2)
    assert counts(bob) == (1, 1, 1)
    listed = client.get(f"{BASE}/", params={"type": "analysis", "timeframe": "daily"},
                        headers=bob).json()["templates"]
    assert {t["id"]: t["usage"]["executions"] for t in listed}[daily["id"]] == 1
    assert counts(admin) == (0, 0, 0)  # an admin's own executions unless asking for all
    assert counts(admin, scope="all")[1:] == (3, 3)
    admin_view = client.get(f"/api/v1/admin/prompts/{daily['id']}", headers=admin).json()
    assert admin_view["usage"]["executions"] == 3  # the admin API shows every user's
    for path in ("stats", "performance"):
        assert client.get(f"{url}/{path}", params={"scope": "all"},
                          headers=alice).status_code == 403
