"""Hostile templates through the API (issue 13, item 3): validate → save → render answers
4xx with the template line, never 500, for text sent with the request and for stored
templates; renders of text sent with requests are limited in number."""

from __future__ import annotations

import uuid
from pathlib import Path

import httpx
import pytest
from fastapi.testclient import TestClient
from sqlalchemy import update

from tests.conftest import make_settings
from tests.prompts import hostile
from tests.prompts.conftest import BASE, create_strategy, template_body
from tradeloop.app import create_app
from tradeloop.db import Database
from tradeloop.prompts import playground
from tradeloop.prompts.cache import template_cache
from tradeloop.prompts.models import PromptTemplate, PromptTemplateVersion
from tradeloop.prompts.resolution import PromptRenderFailedError, resolve_prompt


@pytest.fixture
def strategy_id(client: TestClient, alice: dict) -> str:
    return create_strategy(client, alice)


def render_failure(response: httpx.Response) -> str | None:
    """What is wrong with an answer that should be a 422 naming the template line(s)."""
    if response.status_code != 422:
        return f"{response.status_code}: {response.text[:200]}"
    error = response.json()["error"]
    if error["code"] not in {"render_failed", "invalid_template"}:
        return f"code {error['code']}"
    lines = [e["line"] for e in error["details"]["errors"]] \
        if error["code"] == "invalid_template" else [error["details"]["line"]]
    if not all(isinstance(line, int) and line >= 1 for line in lines):
        return f"no line: {error}"
    return None


def assert_render_failed(response: httpx.Response) -> None:
    problem = render_failure(response)
    assert problem is None, problem


def validate_save_render(client: TestClient, headers: dict, strategy_id: str,
                         text: str) -> list[str]:
    """Every problem of one hostile template's way through the API."""
    validated = client.post(f"{BASE}/validate", json={"template_text": text,
                                                      "variables": ["x"]}, headers=headers)
    if validated.status_code != 200:
        return [f"validate answered {validated.status_code}"]
    created = client.post(f"{BASE}/", json=template_body(
        template_text=text, variables=["x"], strategy_id=strategy_id), headers=headers)
    answers = {"render text": client.post(f"{BASE}/render", json={
        "template_text": text, "variables": hostile.VARIABLES}, headers=headers)}
    if not validated.json()["valid"]:
        if not all(error["line"] for error in validated.json()["errors"]):
            return [f"validate without lines: {validated.json()}"]
        answers["save"] = created
    elif created.status_code != 201:
        return [f"valid, but saving answered {created.status_code}: {created.text[:200]}"]
    else:
        answers["render stored"] = client.post(f"{BASE}/render", json={
            "template_id": created.json()["id"], "variables": hostile.VARIABLES},
            headers=headers)
    return [f"{step}: {problem}" for step, answer in answers.items()
            if (problem := render_failure(answer))]


@pytest.mark.parametrize("group", ["REFUSED_AT_VALIDATION", "REFUSED_AT_RENDER",
                                   "STOPPED_BY_DEADLINE"])
def test_validate_save_render(client: TestClient, alice: dict, strategy_id: str,
                              group: str) -> None:
    problems = {name: found for name, text in getattr(hostile, group).items()
                if (found := validate_save_render(client, alice, strategy_id, text))}
    assert problems == {}


def test_the_test_endpoints_refuse_the_issue_templates(client: TestClient, alice: dict,
                                                      admin: dict) -> None:
    for text in (hostile.REFUSED_AT_RENDER["issue_doubling_macro"],
                 hostile.REFUSED_AT_RENDER["issue_tojson_indent"],
                 hostile.REFUSED_AT_VALIDATION["issue_nested_for_25"]):
        body = {"template_text": text, "variables": hostile.VARIABLES}
        assert_render_failed(client.post(f"{BASE}/test", json=body, headers=alice))
        assert_render_failed(client.post("/api/v1/admin/prompts/test", json=body,
                                         headers=admin))


def test_a_stored_template_that_no_longer_compiles_fails_with_its_line(
        client: TestClient, db: Database, alice: dict, strategy_id: str) -> None:
    created = client.post(f"{BASE}/", json=template_body(
        template_text="{{ x }}", variables=["x"], strategy_id=strategy_id), headers=alice)
    template_id = created.json()["id"]
    # Saved before the limits existed (or under other limits): written around validation.
    legacy = "intro\n" + hostile.REFUSED_AT_VALIDATION["issue_nested_for_25"]
    with db.unit_of_work() as session:
        session.execute(update(PromptTemplateVersion).where(
            PromptTemplateVersion.template_id == uuid.UUID(template_id)).values(
            template_text=legacy))
    template_cache.clear()
    response = client.post(f"{BASE}/render", json={"template_id": template_id,
                                                   "variables": hostile.VARIABLES},
                           headers=alice)
    assert_render_failed(response)
    assert response.json()["error"]["details"]["line"] == 2
    with db.unit_of_work() as session, pytest.raises(PromptRenderFailedError) as caught:
        template = session.get(PromptTemplate, uuid.UUID(template_id))
        resolve_prompt(session=session, owner_id=template.user_id, template_id=template.id)
    assert caught.value.details["line"] == 2  # as signal generation would report it


def test_renders_of_request_text_are_limited_in_number(
        db: Database, tmp_path: Path, alice: dict) -> None:
    settings = make_settings(tmp_path / "data", prompt_adhoc_render_concurrency=1,
                             prompt_render_timeout_ms=200)
    with TestClient(create_app(settings, db)) as client:
        strategy = create_strategy(client, alice)
        stored = client.post(f"{BASE}/", json=template_body(
            template_text="Hi {{ x }}", variables=["x"], strategy_id=strategy),
            headers=alice).json()
        render_text = {"template_text": "Hi {{ x }}", "variables": {"x": 1}}
        with playground.adhoc_render_slot(settings):  # the only slot, held elsewhere
            busy = client.post(f"{BASE}/render", json=render_text, headers=alice)
            assert busy.status_code == 429, busy.text
            assert busy.json()["error"]["code"] == "render_busy"
            assert busy.headers["retry-after"] == "1"
            assert client.post(f"{BASE}/validate", json={"template_text": "{{ x }}"},
                               headers=alice).status_code == 429
            assert client.post(f"{BASE}/test", json=render_text,
                               headers=alice).status_code == 429
            # Stored templates are validated: they do not queue behind playground text.
            by_id = client.post(f"{BASE}/render", json={"template_id": stored["id"],
                                                        "variables": {"x": 1}},
                                headers=alice)
            assert by_id.status_code == 200, by_id.text
        assert client.post(f"{BASE}/render", json=render_text,
                           headers=alice).json()["rendered"] == "Hi 1"
