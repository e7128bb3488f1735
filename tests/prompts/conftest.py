"""Fixtures for the prompts tests: seeded templates, a strategy per user, template bodies."""

from __future__ import annotations

from typing import Any

import pytest
from fastapi.testclient import TestClient

from tradeloop.db import Database
from tradeloop.prompts.cache import template_cache
from tradeloop.prompts.seeds import seed_prompt_templates
from tradeloop.strategies.demo import SMA_CROSS

BASE = "/api/v1/prompts"


@pytest.fixture(autouse=True)
def _fresh_cache() -> None:
    # Tests roll their transactions back, so the counter can repeat between tests.
    template_cache.clear()


@pytest.fixture
def seeded(db: Database) -> list[str]:
    with db.unit_of_work() as session:
        return seed_prompt_templates(session=session)


def create_strategy(client: TestClient, headers: dict[str, str], name: str = "sma_cross") -> str:
    definition = SMA_CROSS.replace("name: sma_cross", f"name: {name}")
    response = client.post("/api/v1/strategies", json={"definition": definition},
                           headers=headers)
    assert response.status_code == 201, response.text
    return str(response.json()["id"])


def template_body(**overrides: Any) -> dict[str, Any]:
    body: dict[str, Any] = {
        "name": "My analysis", "template_type": "analysis", "timeframe": "daily",
        "template_text": "Analyse {{ symbol }} at {{ price }}.",
        "variables": [{"name": "symbol", "type": "string"},
                      {"name": "price", "type": "number"}],
        "model_config": {"provider": "local", "model_name": None, "temperature": 0.1,
                         "max_tokens": 500}}
    body.update(overrides)
    return body
