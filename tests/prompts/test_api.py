"""The /api/v1/prompts/ endpoints and the admin API: listing with filters, versions, diff,
labels and their history, flags, rollback, clone, validate, render, scopes and 404s."""

from __future__ import annotations

import uuid

from fastapi.testclient import TestClient

from tests.prompts.conftest import BASE, create_strategy, template_body

SEEDED_NAMES = {"Daily Chart Technical Analysis", "Weekly Chart Trend Analysis",
                "Consolidation Analysis", "Daily Analyst System Message",
                "Weekly Analyst System Message", "Consolidation Analyst System Message"}


def create_global(client: TestClient, admin: dict, **overrides: object) -> dict:
    response = client.post(f"{BASE}/", json=template_body(**overrides), headers=admin)
    assert response.status_code == 201, response.text
    return response.json()


class TestList:
    def test_lists_the_six_seeded_templates(self, client: TestClient, alice: dict,
                                            seeded: list[str]) -> None:
        response = client.get(f"{BASE}/", headers=alice)
        assert response.status_code == 200, response.text
        body = response.json()
        assert body["total"] == 6
        assert {t["name"] for t in body["templates"]} == SEEDED_NAMES
        for template in body["templates"]:
            assert template["created_by"] == "system"
            assert template["is_global"] and template["is_active"] and template["is_default"]
            assert template["version"] == 1

    def test_filters_and_pagination(self, client: TestClient, alice: dict,
                                    seeded: list[str]) -> None:
        def names(**params: object) -> list[str]:
            response = client.get(f"{BASE}/", params=params, headers=alice)
            assert response.status_code == 200, response.text
            return [t["name"] for t in response.json()["templates"]]

        assert len(names(type="analysis")) == 3
        assert len(names(type="system")) == 3
        assert names(type="analysis", timeframe="weekly") == ["Weekly Chart Trend Analysis"]
        assert len(names(language="en")) == 6 and names(language="de") == []
        assert names(active=False) == [] and names(default=False) == []
        page = client.get(f"{BASE}/", params={"limit": 2, "offset": 4}, headers=alice).json()
        assert len(page["templates"]) == 2 and page["total"] == 6

    def test_label_filter(self, client: TestClient, admin: dict, seeded: list[str]) -> None:
        template = client.get(f"{BASE}/", params={"type": "analysis", "timeframe": "daily"},
                              headers=admin).json()["templates"][0]
        client.post(f"{BASE}/{template['id']}/labels", json={"label": "production"},
                    headers=admin)
        listed = client.get(f"{BASE}/", params={"label": "production"}, headers=admin).json()
        assert [t["id"] for t in listed["templates"]] == [template["id"]]

    def test_needs_authentication(self, client: TestClient) -> None:
        assert client.get(f"{BASE}/").status_code == 401


class TestScopes:
    def test_only_admins_create_global_templates(self, client: TestClient, alice: dict,
                                                 admin: dict) -> None:
        response = client.post(f"{BASE}/", json=template_body(), headers=alice)
        assert response.status_code == 403
        assert response.json()["error"]["code"] == "admin_only"
        assert create_global(client, admin)["is_global"]

    def test_users_create_templates_for_their_own_strategies(
            self, client: TestClient, alice: dict, bob: dict) -> None:
        strategy_id = create_strategy(client, alice)
        created = client.post(f"{BASE}/", json=template_body(strategy_id=strategy_id),
                              headers=alice)
        assert created.status_code == 201, created.text
        assert created.json()["strategy_id"] == strategy_id
        assert not created.json()["is_global"]
        foreign = client.post(f"{BASE}/", json=template_body(strategy_id=strategy_id),
                              headers=bob)
        assert foreign.status_code == 404

    def test_foreign_templates_answer_404_everywhere(self, client: TestClient, alice: dict,
                                                     bob: dict) -> None:
        strategy_id = create_strategy(client, alice)
        template_id = client.post(f"{BASE}/", json=template_body(strategy_id=strategy_id),
                                  headers=alice).json()["id"]
        url = f"{BASE}/{template_id}"
        attempts = [
            client.get(url, headers=bob),
            client.put(url, json={"template_text": "x"}, headers=bob),
            client.delete(url, headers=bob),
            client.get(f"{url}/versions", headers=bob),
            client.get(f"{url}/versions/1", headers=bob),
            client.get(f"{url}/diff", params={"from": 1, "to": 1}, headers=bob),
            client.post(f"{url}/activate", headers=bob),
            client.post(f"{url}/deactivate", headers=bob),
            client.post(f"{url}/set-default", headers=bob),
            client.post(f"{url}/labels", json={"label": "x"}, headers=bob),
            client.delete(f"{url}/labels/x", headers=bob),
            client.get(f"{url}/labels/history", headers=bob),
            client.post(f"{url}/rollback", json={"version": 1}, headers=bob),
            client.post(f"{url}/clone", json={}, headers=bob),
            client.post(f"{BASE}/render", json={"template_id": template_id, "variables": {}},
                        headers=bob),
        ]
        assert [r.status_code for r in attempts] == [404] * len(attempts)
        assert client.get(url, headers=alice).status_code == 200
        listed = client.get(f"{BASE}/", headers=bob).json()
        assert template_id not in {t["id"] for t in listed["templates"]}

    def test_users_read_but_cannot_change_global_templates(
            self, client: TestClient, alice: dict, seeded: list[str]) -> None:
        template_id = client.get(f"{BASE}/", headers=alice).json()["templates"][0]["id"]
        assert client.get(f"{BASE}/{template_id}", headers=alice).status_code == 200
        response = client.put(f"{BASE}/{template_id}", json={"name": "mine"}, headers=alice)
        assert response.status_code == 403
        assert client.delete(f"{BASE}/{template_id}", headers=alice).status_code == 403


class TestVersions:
    def test_put_creates_an_immutable_new_version(self, client: TestClient,
                                                  admin: dict) -> None:
        created = create_global(client, admin)
        url = f"{BASE}/{created['id']}"
        updated = client.put(url, json={"template_text": "Now {{ symbol }} only.",
                                        "variables": [{"name": "symbol", "type": "string"}],
                                        "change_note": "shorter"}, headers=admin)
        assert updated.status_code == 200, updated.text
        assert updated.json()["version"] == 2
        assert updated.json()["id"] == created["id"]
        versions = client.get(f"{url}/versions", headers=admin).json()["versions"]
        assert [v["version"] for v in versions] == [2, 1]
        first = client.get(f"{url}/versions/1", headers=admin).json()
        second = client.get(f"{url}/versions/2", headers=admin).json()
        assert first["template_text"] == "Analyse {{ symbol }} at {{ price }}."
        assert second["previous_version_id"] is not None
        assert second["change_note"] == "shorter"
        assert client.get(f"{url}/versions/3", headers=admin).status_code == 404

    def test_metadata_only_edit_keeps_the_version(self, client: TestClient,
                                                  admin: dict) -> None:
        created = create_global(client, admin)
        updated = client.put(f"{BASE}/{created['id']}", json={"name": "Renamed"},
                             headers=admin).json()
        assert updated["version"] == 1 and updated["name"] == "Renamed"

    def test_invalid_text_is_refused_with_lines(self, client: TestClient, admin: dict) -> None:
        response = client.post(f"{BASE}/", json=template_body(
            template_text="ok\n{{ symbol }} {{ undeclared }}\n{% if %}"), headers=admin)
        assert response.status_code == 422
        errors = response.json()["error"]["details"]["errors"]
        assert errors[0]["kind"] == "syntax_error" and errors[0]["line"] == 3
        response = client.post(f"{BASE}/", json=template_body(
            template_text="{{ symbol }}\n{{ undeclared }}"), headers=admin)
        errors = response.json()["error"]["details"]["errors"]
        assert [(e["variable"], e["line"]) for e in errors] == [("undeclared", 2)]

    def test_bad_variable_declarations_are_422(self, client: TestClient, admin: dict) -> None:
        created = create_global(client, admin)
        for body in ({"variables": ["not an identifier"]},
                     {"variables": ["symbol", "symbol", "price"]}):
            response = client.put(f"{BASE}/{created['id']}", json=body, headers=admin)
            assert response.status_code == 422, response.text
            assert response.json()["error"]["details"]["errors"][0]["kind"] == \
                "invalid_variables"

    def test_diff_is_unified(self, client: TestClient, admin: dict) -> None:
        created = create_global(client, admin)
        url = f"{BASE}/{created['id']}"
        client.put(url, json={"template_text": "Analyse {{ symbol }} near {{ price }}."},
                   headers=admin)
        diff = client.get(f"{url}/diff", params={"from": 1, "to": 2}, headers=admin).json()
        assert diff["diff"].startswith("--- My analysis v1\n+++ My analysis v2\n")
        assert "-Analyse {{ symbol }} at {{ price }}." in diff["diff"]
        assert "+Analyse {{ symbol }} near {{ price }}." in diff["diff"]

    def test_rollback_copies_an_old_version_forward(self, client: TestClient,
                                                    admin: dict) -> None:
        created = create_global(client, admin)
        url = f"{BASE}/{created['id']}"
        client.put(url, json={"template_text": "v2 {{ symbol }} {{ price }}"}, headers=admin)
        rolled = client.post(f"{url}/rollback", json={"version": 1}, headers=admin).json()
        assert rolled["version"] == 3
        assert rolled["template_text"] == created["template_text"]
        note = client.get(f"{url}/versions/3", headers=admin).json()["change_note"]
        assert note == "rollback to version 1"


class TestLabels:
    def test_labels_move_and_every_move_is_recorded(self, client: TestClient,
                                                    admin: dict) -> None:
        created = create_global(client, admin)
        url = f"{BASE}/{created['id']}"
        client.put(url, json={"template_text": "v2 {{ symbol }} {{ price }}"}, headers=admin)
        assert client.post(f"{url}/labels", json={"label": "production", "version": 1},
                           headers=admin).json()["version"] == 1
        client.post(f"{url}/labels", json={"label": "production"}, headers=admin)
        client.post(f"{url}/labels", json={"label": "staging", "version": 2}, headers=admin)
        assert client.get(url, headers=admin).json()["labels"] == {"production": 2,
                                                                   "staging": 2}
        assert client.delete(f"{url}/labels/staging", headers=admin).status_code == 204
        assert client.delete(f"{url}/labels/staging", headers=admin).status_code == 404
        events = client.get(f"{url}/labels/history", headers=admin).json()["events"]
        assert [(e["label"], e["action"], e["from_version"], e["to_version"]) for e in events] \
            == [("production", "set", None, 1), ("production", "moved", 1, 2),
                ("staging", "set", None, 2), ("staging", "removed", 2, None)]
        assert {e["actor"] for e in events} == {"root@example.com"}
        versions = client.get(f"{url}/versions", headers=admin).json()["versions"]
        assert versions[0]["labels"] == ["production"]

    def test_production_label_decides_the_served_version(self, client: TestClient,
                                                         admin: dict) -> None:
        created = create_global(client, admin)
        url = f"{BASE}/{created['id']}"
        client.put(url, json={"template_text": "v2 {{ symbol }} {{ price }}"}, headers=admin)
        assert client.get(url, headers=admin).json()["served_version"] == 2
        client.post(f"{url}/labels", json={"label": "production", "version": 1}, headers=admin)
        assert client.get(url, headers=admin).json()["served_version"] == 1

    def test_bad_labels_and_versions_are_refused(self, client: TestClient,
                                                 admin: dict) -> None:
        url = f"{BASE}/{create_global(client, admin)['id']}"
        assert client.post(f"{url}/labels", json={"label": "Bad Label"},
                           headers=admin).status_code == 400
        assert client.post(f"{url}/labels", json={"label": "x", "version": 9},
                           headers=admin).status_code == 404


class TestFlags:
    def test_delete_deactivates_and_activate_restores(self, client: TestClient,
                                                      admin: dict) -> None:
        url = f"{BASE}/{create_global(client, admin)['id']}"
        assert client.delete(url, headers=admin).json()["is_active"] is False
        assert client.get(url, headers=admin).status_code == 200  # still there
        assert client.post(f"{url}/activate", headers=admin).json()["is_active"] is True
        assert client.post(f"{url}/deactivate", headers=admin).json()["is_active"] is False

    def test_set_default_takes_it_from_the_previous_default(
            self, client: TestClient, admin: dict, seeded: list[str]) -> None:
        mine = create_global(client, admin, timeframe="daily")
        response = client.post(f"{BASE}/{mine['id']}/set-default", headers=admin)
        assert response.json()["is_default"] is True
        defaults = client.get(f"{BASE}/", params={"type": "analysis", "timeframe": "daily",
                                                  "default": True}, headers=admin).json()
        assert [t["id"] for t in defaults["templates"]] == [mine["id"]]
        weekly = client.get(f"{BASE}/", params={"timeframe": "weekly", "type": "analysis"},
                            headers=admin).json()["templates"][0]
        assert weekly["is_default"] is True  # other timeframes keep theirs


class TestClone:
    def test_users_clone_a_global_template_for_their_strategy(
            self, client: TestClient, alice: dict, seeded: list[str]) -> None:
        strategy_id = create_strategy(client, alice)
        source = client.get(f"{BASE}/", params={"type": "analysis", "timeframe": "daily"},
                            headers=alice).json()["templates"][0]
        response = client.post(f"{BASE}/{source['id']}/clone",
                               json={"strategy_id": strategy_id, "name": "My daily"},
                               headers=alice)
        assert response.status_code == 201, response.text
        clone = response.json()
        assert clone["id"] != source["id"] and clone["version"] == 1
        assert clone["template_text"] == source["template_text"]
        assert clone["strategy_id"] == strategy_id and not clone["is_global"]
        edited = client.put(f"{BASE}/{clone['id']}", json={"description": "mine"},
                            headers=alice)
        assert edited.status_code == 200

    def test_cloning_without_a_strategy_needs_admin(self, client: TestClient, alice: dict,
                                                    seeded: list[str]) -> None:
        source = client.get(f"{BASE}/", headers=alice).json()["templates"][0]
        response = client.post(f"{BASE}/{source['id']}/clone", json={}, headers=alice)
        assert response.status_code == 403


class TestValidateAndRender:
    def test_validate(self, client: TestClient, alice: dict) -> None:
        ok = client.post(f"{BASE}/validate", json={"template_text": "{{ a }}",
                                                   "variables": ["a"]}, headers=alice).json()
        assert ok == {"valid": True, "errors": []}
        bad = client.post(f"{BASE}/validate", json={"template_text": "x\n{{ a }}\n{{ b",
                                                    "variables": ["a"]}, headers=alice).json()
        assert bad["valid"] is False and bad["errors"][0]["line"] == 3
        undeclared = client.post(f"{BASE}/validate", json={
            "template_text": "{{ a }} {{ b }}", "variables": ["a"]}, headers=alice).json()
        assert [e["variable"] for e in undeclared["errors"]] == ["b"]

    def test_render_raw_text_and_stored_versions(self, client: TestClient,
                                                 admin: dict) -> None:
        raw = client.post(f"{BASE}/render", json={"template_text": "Hi {{ who }}",
                                                  "variables": {"who": "you"}},
                          headers=admin).json()
        assert raw["rendered"] == "Hi you" and raw["chars"] == 6
        created = create_global(client, admin)
        client.put(f"{BASE}/{created['id']}", json={"template_text": "v2 {{ symbol }}",
                                                    "variables": ["symbol"]}, headers=admin)
        stored = client.post(f"{BASE}/render", json={
            "template_id": created["id"], "version": 1,
            "variables": {"symbol": "AAPL", "price": 187.5}}, headers=admin).json()
        assert stored["rendered"] == "Analyse AAPL at 187.5." and stored["version"] == 1

    def test_render_errors_are_clear(self, client: TestClient, admin: dict) -> None:
        created = create_global(client, admin)
        missing = client.post(f"{BASE}/render", json={"template_id": created["id"],
                                                      "variables": {"symbol": "AAPL"}},
                              headers=admin)
        assert missing.status_code == 422
        assert missing.json()["error"]["code"] == "invalid_variables"
        assert "'price' (number) is missing" in missing.json()["error"]["message"]
        mistyped = client.post(f"{BASE}/render", json={
            "template_id": created["id"], "variables": {"symbol": "A", "price": "high"}},
            headers=admin)
        assert "should be number" in mistyped.json()["error"]["message"]
        unsafe = client.post(f"{BASE}/render", json={"template_text": "{{ 'a' * 10 }}",
                                                     "variables": {}}, headers=admin)
        assert unsafe.status_code == 422
        assert unsafe.json()["error"]["details"]["kind"] == "unsafe"
        both = client.post(f"{BASE}/render", json={"template_text": "x",
                                                   "template_id": str(uuid.uuid4())},
                           headers=admin)
        assert both.status_code == 422


# Seed 001's own request bodies (its "Test 2" create and "Test 4" test), value for value.
SEED_001_MODEL = {"provider": "vertex_ai", "model_name": "gemini-2.5-flash", "temperature": 0.7}
SEED_001_CREATE = {"name": "test_template_v1", "version": "1.0.0",
                   "template_text": "You are a helpful assistant. User query: {{query}}",
                   "variables": ["query"], "is_active": True, "model_config": SEED_001_MODEL}
SEED_001_TEST = {"template_text": "Explain {{topic}} to a {{grade_level}} grader",
                 "variables": {"topic": "photosynthesis", "grade_level": "5th"},
                 "model_config": SEED_001_MODEL}


class TestAdminApi:
    ADMIN = "/api/v1/admin/prompts"

    def test_seed_001_shapes(self, client: TestClient, admin: dict) -> None:
        """Seed 001's create body, provider vertex_ai included (issue 13: it answered 422)."""
        assert client.get(self.ADMIN, headers=admin).json() == {"templates": [], "total": 0}
        created = client.post(self.ADMIN, json=SEED_001_CREATE, headers=admin)
        assert created.status_code == 201, created.text
        template = created.json()
        assert template["variables"] == [{"name": "query", "type": "any", "description": "",
                                          "nullable": False}]
        listed = client.get(self.ADMIN, headers=admin).json()
        assert listed["total"] == 1 and listed["templates"][0]["id"] == template["id"]
        got = client.get(f"{self.ADMIN}/{template['id']}", headers=admin).json()
        assert got["model_config"] == {**SEED_001_MODEL, "max_tokens": None}
        updated = client.put(f"{self.ADMIN}/{template['id']}", json={
            "template_text": "Answer: {{query}}", "is_active": False}, headers=admin).json()
        assert updated["version"] == 2 and updated["is_active"] is False

    def test_seed_001_test_body_and_unknown_providers(self, client: TestClient,
                                                      admin: dict) -> None:
        tested = client.post(f"{self.ADMIN}/test", json=SEED_001_TEST, headers=admin)
        assert tested.status_code == 200, tested.text
        assert tested.json()["rendered"] == "Explain photosynthesis to a 5th grader"
        unknown = client.post(self.ADMIN, json={
            "name": "t", "template_text": "x", "model_config": {"provider": "bard"}},
            headers=admin)
        assert unknown.status_code == 422 and "provider" in unknown.text

    def test_admin_api_is_hidden_from_users(self, client: TestClient, alice: dict,
                                            admin: dict) -> None:
        assert client.get(self.ADMIN, headers=alice).status_code == 404
        assert client.post(self.ADMIN, json=template_body(), headers=alice).status_code == 404

    def test_user_templates_are_not_in_the_admin_api(self, client: TestClient, alice: dict,
                                                     admin: dict) -> None:
        strategy_id = create_strategy(client, alice)
        mine = client.post(f"{BASE}/", json=template_body(strategy_id=strategy_id),
                           headers=alice).json()
        assert client.get(f"{self.ADMIN}/{mine['id']}", headers=admin).status_code == 404
        assert client.get(self.ADMIN, headers=admin).json()["total"] == 0
