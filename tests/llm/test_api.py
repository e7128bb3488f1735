"""The llm HTTP API: guardrails and model prices (admins only), users' execution logs."""

from __future__ import annotations

import uuid
from decimal import Decimal
from pathlib import Path

from fastapi.testclient import TestClient

from tests.conftest import make_settings
from tradeloop.accounts.models import User
from tradeloop.db import Database
from tradeloop.llm import service as llm

GUARDRAILS = "/api/v1/admin/guardrails"
PRICES = "/api/v1/admin/model-prices"
EXECUTIONS = "/api/v1/llm/executions"
PII_RULE = {"name": "no PII", "rule_type": "pii", "applies_to": "input", "action": "redact",
            "config": {"types": ["email", "card"]}}


class TestGuardrailsAdmin:
    def test_crud_round_trip(self, client: TestClient, admin: dict[str, str]) -> None:
        created = client.post(GUARDRAILS, json=PII_RULE, headers=admin)
        assert created.status_code == 201, created.text
        body = created.json()
        assert body["rule_type"] == "pii" and body["is_active"] and body["created_by"]
        listing = client.get(GUARDRAILS, headers=admin).json()
        assert listing["total"] == 1 and listing["guardrails"][0]["id"] == body["id"]
        updated = client.put(f"{GUARDRAILS}/{body['id']}", json={"action": "block",
                                                                 "is_active": False},
                             headers=admin).json()
        assert (updated["action"], updated["is_active"], updated["config"]) == (
            "block", False, PII_RULE["config"])
        assert client.get(GUARDRAILS, params={"active": True}, headers=admin).json()["total"] == 0
        assert client.delete(f"{GUARDRAILS}/{body['id']}", headers=admin).status_code == 204
        assert client.get(f"{GUARDRAILS}/{body['id']}", headers=admin).status_code == 404

    def test_invalid_definitions_are_422_with_the_field(self, client: TestClient,
                                                        admin: dict[str, str]) -> None:
        bad_regex = PII_RULE | {"rule_type": "regex_block", "config": {"pattern": "(unclosed"}}
        answer = client.post(GUARDRAILS, json=bad_regex, headers=admin)
        assert answer.status_code == 422
        assert answer.json()["error"]["details"]["fields"][0]["field"] == "config.pattern"
        unknown_type = PII_RULE | {"rule_type": "vibes"}
        assert client.post(GUARDRAILS, json=unknown_type, headers=admin).status_code == 422

    def test_update_is_checked_as_a_whole(self, client: TestClient,
                                          admin: dict[str, str]) -> None:
        created = client.post(GUARDRAILS, json=PII_RULE | {"rule_type": "regex_require",
                                                           "action": "block",
                                                           "config": {"pattern": "x"}},
                              headers=admin).json()
        answer = client.put(f"{GUARDRAILS}/{created['id']}", json={"action": "redact"},
                            headers=admin)
        assert answer.status_code == 422

    def test_null_keeps_required_fields_and_clears_optional_ones(
            self, client: TestClient, admin: dict[str, str]) -> None:
        # schemathesis: {"name": null} / {"is_active": null} answered 500 (NOT NULL constraint).
        created = client.post(GUARDRAILS, json=PII_RULE | {"description": "d"},
                              headers=admin).json()
        answer = client.put(f"{GUARDRAILS}/{created['id']}", headers=admin, json={
            "name": None, "is_active": None, "description": None, "action": None})
        assert answer.status_code == 200, answer.text
        updated = answer.json()
        assert (updated["name"], updated["is_active"], updated["action"]) == (
            PII_RULE["name"], True, PII_RULE["action"])
        assert updated["description"] is None

    def test_non_admins_see_nothing(self, client: TestClient, alice: dict[str, str],
                                    admin: dict[str, str]) -> None:
        created = client.post(GUARDRAILS, json=PII_RULE, headers=admin).json()
        assert client.get(GUARDRAILS, headers=alice).status_code == 404
        assert client.post(GUARDRAILS, json=PII_RULE, headers=alice).status_code == 404
        assert client.get(f"{GUARDRAILS}/{created['id']}", headers=alice).status_code == 404
        assert client.delete(f"{GUARDRAILS}/{created['id']}", headers=alice).status_code == 404
        assert client.get(GUARDRAILS).status_code == 401


class TestModelPrices:
    def test_crud_conflict_and_effective_price(self, client: TestClient,
                                               admin: dict[str, str]) -> None:
        price = {"provider": "openai", "model": "flash-like", "input_per_million": "0.075",
                 "output_per_million": "0.30"}
        created = client.post(PRICES, json=price, headers=admin)
        assert created.status_code == 201, created.text
        assert client.post(PRICES, json=price, headers=admin).status_code == 409
        effective = client.get(f"{PRICES}/effective", headers=admin, params={
            "provider": "openai", "model": "flash-like", "input_tokens": 1000,
            "output_tokens": 500}).json()
        assert effective["source"] == "override"
        assert Decimal(effective["cost_usd"]) == Decimal("0.000225")
        price_id = created.json()["id"]
        updated = client.put(f"{PRICES}/{price_id}", json={"output_per_million": "0.60"},
                             headers=admin).json()
        assert Decimal(updated["output_per_million"]) == Decimal("0.6")
        assert client.get(PRICES, headers=admin).json()["total"] == 1
        assert client.delete(f"{PRICES}/{price_id}", headers=admin).status_code == 204
        bundled = client.get(f"{PRICES}/effective", headers=admin, params={
            "provider": "openai", "model": "gemini-1.5-flash", "input_tokens": 1000,
            "output_tokens": 500}).json()
        assert bundled["source"] == "genai-prices"
        assert Decimal(bundled["cost_usd"]) == Decimal("0.000225")

    def test_negative_prices_and_non_admins_are_refused(self, client: TestClient,
                                                        admin: dict[str, str],
                                                        alice: dict[str, str]) -> None:
        price = {"provider": "openai", "model": "m", "input_per_million": "-1",
                 "output_per_million": "1"}
        assert client.post(PRICES, json=price, headers=admin).status_code == 422
        assert client.get(PRICES, headers=alice).status_code == 404


def user_named(db: Database, email: str) -> uuid.UUID:
    from sqlalchemy import select

    with db.unit_of_work() as session:
        return session.scalars(select(User.id).where(User.email == email)).one()


class TestExecutionLog:
    def test_own_executions_only(self, client: TestClient, db: Database, tmp_path: Path,
                                 alice: dict[str, str], bob: dict[str, str]) -> None:
        alice_id = user_named(db, "alice@example.com")
        template_id = uuid.uuid4()
        result = llm.execute(db, make_settings(tmp_path), llm.PromptCall(
            user_id=alice_id, user_text="Analyse", context={"close": 10, "sma20": 9},
            template_id=template_id, template_version=3))
        listing = client.get(EXECUTIONS, headers=alice).json()
        assert listing["total"] == 1
        row = listing["executions"][0]
        assert (row["id"], row["template_version"], row["provider"], row["success"]) == (
            str(result.execution_id), 3, "local", True)
        assert client.get(EXECUTIONS, params={"success": False},
                          headers=alice).json()["total"] == 0
        assert client.get(f"{EXECUTIONS}/{result.execution_id}",
                          headers=alice).status_code == 200
        assert client.get(EXECUTIONS, headers=bob).json()["total"] == 0
        assert client.get(f"{EXECUTIONS}/{result.execution_id}", headers=bob).status_code == 404
