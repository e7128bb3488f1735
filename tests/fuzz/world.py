"""The rows the API fuzz run points its ids at: for each role (a normal user, an admin) one of
everything an operation takes an id of, created through the API (signals through the
processing flow, as a webhook would), so that id-taking operations reach real rows."""

from __future__ import annotations

import functools
import uuid
from dataclasses import dataclass
from typing import Any

import requests
from sqlalchemy import select

from tests.conftest import api_headers, store_bars, wait_for_tasks
from tests.llm.test_api import PII_RULE
from tests.market_context.test_gex import gex_body
from tests.prompts.conftest import template_body
from tests.signals.test_processing import send
from tradeloop.accounts import service as accounts
from tradeloop.accounts.models import TokenContext
from tradeloop.db import Database
from tradeloop.prompts.models import PromptTemplate
from tradeloop.prompts.seeds import seed_prompt_templates
from tradeloop.strategies.demo import SMA_CROSS
from tradeloop.trading.models import Position

SYMBOL = "FUZZ"
LABEL = "fuzz-label"
STRATEGY = SMA_CROSS.replace("[ACME, GLOBX, INITECH, UMBRL, BTCUSD]", f"[{SYMBOL}]")
ROLES = ("user", "admin")


@dataclass(frozen=True)
class Actor:
    """One role's credentials and the ids of its rows, by the parameter name that takes them."""

    role: str
    headers: dict[str, str]
    ids: dict[str, str]
    endpoint_secret: str


def created(response: requests.Response) -> Any:
    assert response.status_code in (200, 201, 202), response.text
    return response.json()


def build_actor(client: requests.Session, db: Database, role: str) -> Actor:
    """A user of `role` with a strategy, backtest run and sweep, prompt template with a label,
    webhook endpoint, processed signal with its position, GEX snapshot, LLM execution and a
    spare API token (admins also a guardrail and a model price)."""
    owner, headers = _user_with_two_tokens(db, role)
    ids: dict[str, str] = {}
    post = functools.partial(_post, client, headers)
    strategy = post("/api/v1/strategies", {"definition": STRATEGY})
    ids["strategy_id"] = strategy["id"]
    ids["run_id"] = post("/api/v1/backtest/run", {"strategy_id": strategy["id"]})["id"]
    ids["sweep_id"] = post("/api/v1/backtest/sweep", {
        "strategy_id": strategy["id"], "grid": {"fast": [5, 10]}, "metric": "return_pct"})["id"]
    template = post("/api/v1/prompts/", template_body(name=f"fuzz {role}",
                                                     strategy_id=strategy["id"]))
    ids["template_id"], ids["version"], ids["label"] = template["id"], "1", LABEL
    post(f"/api/v1/prompts/{template['id']}/labels", {"label": LABEL})
    endpoint = post("/api/v1/webhook-endpoints", {"name": f"fuzz {role}"})
    ids["endpoint_id"], ids["endpoint_key"] = endpoint["id"], endpoint["endpoint_key"]
    ids["component"], ids["symbol"], ids["timeframe"] = "database", SYMBOL, "1d"
    signal_id = send(db, owner, "LONG", symbol=SYMBOL, endpoint=uuid.UUID(endpoint["id"]))
    ids["signal_id"] = str(signal_id)
    ids["position_id"] = str(_position_of(db, signal_id))
    ids["gex_id"] = post("/api/v1/gex", gex_body(symbol=SYMBOL))["id"]
    generated = post("/api/v1/signals/generate", {"symbol": SYMBOL,
                                                  "strategy_id": strategy["id"]})
    ids["execution_id"] = generated["execution"]["id"]
    ids["token_id"] = _spare_token_id(client, headers)
    if role == "admin":
        ids["guardrail_id"] = post("/api/v1/admin/guardrails", PII_RULE)["id"]
        ids["price_id"] = post("/api/v1/admin/model-prices", {
            "provider": "openai", "model": "fuzz-model", "input_per_million": "0.075",
            "output_per_million": "0.30"})["id"]
    wait_for_tasks()
    return Actor(role, headers, ids, endpoint["secret"])


def _post(client: requests.Session, headers: dict[str, str], path: str,
          body: dict[str, Any]) -> Any:
    """The created row, once the tasks its creation queued (backtests, sweeps) have run."""
    answer = created(client.post(path, json=body, headers=headers))
    wait_for_tasks()
    return answer


def _position_of(db: Database, signal_id: uuid.UUID) -> uuid.UUID:
    with db.unit_of_work() as session:
        position = session.scalar(select(Position.id).where(
            Position.signal_id == signal_id))
    assert position is not None, "the world's signal opened no position"
    return position


def _user_with_two_tokens(db: Database, role: str) -> tuple[uuid.UUID, dict[str, str]]:
    """The user's id and the headers of one of its two API tokens."""
    email = f"fuzz-{role}@example.com"
    headers = api_headers(db, email, admin=role == "admin")
    with db.unit_of_work() as session:
        user = accounts.get_user_by_email(session=session, email=email)
        assert user is not None
        accounts.issue_token(session=session, user=user, context=TokenContext.API)
        return user.id, headers


def _spare_token_id(client: requests.Session, headers: dict[str, str]) -> str:
    """A token of the caller other than the one it authenticates with: deleting it through
    the fuzzed operation must not log the rest of the run out."""
    tokens = created(client.get("/api/v1/auth/tokens", headers=headers))["tokens"]
    return next(token["id"] for token in tokens if not token["current"])


def build_world(client: requests.Session, db: Database) -> dict[str, Actor]:
    """Every role's actor, after the shared data: bars of SYMBOL and the seeded templates (the
    global templates the admin prompt operations take ids of)."""
    store_bars(db, SYMBOL, 300)
    with db.unit_of_work() as session:
        seed_prompt_templates(session=session)
        global_template = session.scalar(select(PromptTemplate.id).where(
            PromptTemplate.user_id.is_(None)).limit(1))
    actors = {role: build_actor(client, db, role) for role in ROLES}
    for actor in actors.values():
        actor.ids["global_template_id"] = str(global_template)
    return actors
