"""`POST /api/signals/generate`: bars → prompt → analyst → `llm` signal → decision pipeline."""

from __future__ import annotations

import dataclasses
import json
import uuid
from collections.abc import Iterator
from decimal import Decimal
from pathlib import Path
from typing import Any

import pytest
from fastapi.testclient import TestClient
from sqlalchemy import select

from tests.conftest import make_settings, store_bars
from tests.llm.fake_llm_server import FakeLLMServer, Scripted
from tests.signals.conftest import build_app
from tradeloop.db import Database
from tradeloop.llm.models import PromptExecution
from tradeloop.prompts.cache import template_cache
from tradeloop.prompts.seeds import seed_prompt_templates
from tradeloop.settings import Settings
from tradeloop.signals.flows import ProcessingConfig, process_signal_queue
from tradeloop.signals.models import Signal
from tradeloop.strategies import service as strategies
from tradeloop.strategies.demo import SMA_CROSS
from tradeloop.strategies.models import StrategyStatus
from tradeloop.trading.models import Decision, Position

GENERATE = "/api/signals/generate"
LONG = {"direction": "LONG", "entry_price_low": "99.50", "entry_price_high": "100.00",
        "stop_loss": "97.00", "target_conservative": "104.00", "target_aggressive": "108.00",
        "confidence": 0.72, "reasoning": "Above a rising SMA 50; RSI 58; volume confirms."}


@pytest.fixture(scope="module")
def fake_llm() -> Iterator[FakeLLMServer]:
    server = FakeLLMServer().start()
    yield server
    server.stop()


@pytest.fixture(autouse=True)
def _fresh_prompt_cache() -> None:
    # Tests roll back, so the cache's change counter can repeat between tests.
    template_cache.clear()


@pytest.fixture
def openai_settings(tmp_path: Path, fake_llm: FakeLLMServer) -> Settings:
    fake_llm.reset()
    return make_settings(tmp_path / "data", llm_provider="openai",
                         openai_api_key="sk-test-openai-key-000000000000",
                         openai_api_base=fake_llm.base_url + "/v1", llm_timeout_s=1.0,
                         llm_max_retries=0, llm_deadline_s=5.0)


@pytest.fixture
def client(db: Database, openai_settings: Settings) -> Iterator[TestClient]:
    with db.unit_of_work() as session:
        seed_prompt_templates(session=session)
    store_bars(db, "ACME", 300)
    with TestClient(build_app(openai_settings, db)) as test_client:
        yield test_client


def create_strategy(client: TestClient, headers: dict[str, str]) -> str:
    response = client.post("/api/v1/strategies", json={"definition": SMA_CROSS},
                           headers=headers)
    assert response.status_code == 201, response.text
    return str(response.json()["id"])


def activate(db: Database, strategy_id: str, headers_owner: uuid.UUID) -> None:
    # The activation gate (a finished backtest) has its own tests; here only the status counts.
    with db.unit_of_work() as session:
        strategy = strategies.get_strategy(session=session, owner_id=headers_owner,
                                           strategy_id=uuid.UUID(strategy_id))
        strategies.set_status(session=session, strategy=strategy, status=StrategyStatus.ACTIVE)


def owner_of(client: TestClient, headers: dict[str, str]) -> uuid.UUID:
    return uuid.UUID(client.get("/api/v1/auth/me", headers=headers).json()["id"])


def daily_template_id(client: TestClient, headers: dict[str, str]) -> str:
    listing = client.get("/api/v1/prompts/", headers=headers, params={"type": "analysis"}).json()
    rows = listing["templates"] if isinstance(listing, dict) else listing
    return next(row["id"] for row in rows if row["name"] == "Daily Chart Technical Analysis")


def generate(client: TestClient, headers: dict[str, str], **body: Any) -> Any:
    return client.post(GENERATE, json={"symbol": "ACME", **body}, headers=headers)


def test_an_analysis_becomes_an_llm_signal_with_its_prompt_metadata(
        client: TestClient, alice: dict, fake_llm: FakeLLMServer) -> None:
    strategy_id = create_strategy(client, alice)
    fake_llm.queue(Scripted(text=json.dumps(LONG), usage=(1500, 220)))
    response = generate(client, alice, strategy_id=strategy_id)
    assert response.status_code == 200, response.text
    answer = response.json()
    signal = answer["signal"]
    assert (signal["origin"], signal["symbol"], signal["direction"]) == ("llm", "ACME", "LONG")
    assert signal["prompt_template_id"] == daily_template_id(client, alice)
    assert (signal["prompt_version"], signal["prompt_type"]) == (1, "analysis")
    assert [Decimal(signal[k]) for k in ("entry_price_low", "entry_price_high", "stop_loss",
                                         "target_conservative", "target_aggressive")] == \
        [Decimal(v) for v in ("99.50", "100", "97", "104", "108")]
    assert signal["confidence"] == 0.72
    assert signal["metadata"]["strategy_id"] == strategy_id
    # A draft strategy does not trade: the analysis is recorded for the prompt's statistics.
    assert (signal["status"], answer["queued"]) == ("recorded", False)
    assert (answer["execution"]["input_tokens"], answer["execution"]["output_tokens"]) == \
        (1500, 220)
    assert fake_llm.count() == 1
    listed = client.get("/api/v1/signals", params={"origin": "llm"}, headers=alice).json()
    assert [row["id"] for row in listed["signals"]] == [signal["id"]]
    stats = client.get(f"/api/v1/prompts/{signal['prompt_template_id']}/stats",
                       headers=alice).json()
    assert stats["executions"] >= 1


def test_the_rendered_prompt_carries_the_bars_and_indicators(
        client: TestClient, alice: dict, fake_llm: FakeLLMServer, db: Database) -> None:
    strategy_id = create_strategy(client, alice)
    fake_llm.queue(Scripted(text=json.dumps(LONG)))
    assert generate(client, alice, strategy_id=strategy_id).status_code == 200
    with db.unit_of_work() as session:
        execution = session.scalars(select(PromptExecution)).one()
        assert (execution.success, execution.strategy_id) == (True, uuid.UUID(strategy_id))
        signal = session.scalars(select(Signal).where(Signal.origin == "llm")).one()
        assert execution.signal_id == signal.id


def test_an_active_strategy_sends_the_signal_through_the_decision_pipeline(
        client: TestClient, alice: dict, fake_llm: FakeLLMServer, db: Database,
        openai_settings: Settings) -> None:
    strategy_id = create_strategy(client, alice)
    activate(db, strategy_id, owner_of(client, alice))
    fake_llm.queue(Scripted(text=json.dumps(LONG)))
    answer = generate(client, alice, strategy_id=strategy_id).json()
    assert (answer["signal"]["status"], answer["queued"]) == ("queued", True)
    config = dataclasses.replace(ProcessingConfig.from_settings(openai_settings),
                                 market_hours_enforced=False)
    assert process_signal_queue(db, config) == 1
    signal_id = uuid.UUID(answer["signal"]["id"])
    with db.unit_of_work() as session:
        decision = session.scalars(select(Decision).where(Decision.signal_id == signal_id)).one()
        assert decision.action == "ENTER"
        position = session.scalars(select(Position).where(Position.signal_id == signal_id)).one()
        assert (position.symbol, position.side, position.status) == ("ACME", "LONG", "open")
        assert session.get(Signal, signal_id).status == "processed"


def test_a_neutral_analysis_is_recorded_but_never_traded(
        client: TestClient, alice: dict, fake_llm: FakeLLMServer, db: Database) -> None:
    strategy_id = create_strategy(client, alice)
    activate(db, strategy_id, owner_of(client, alice))
    fake_llm.queue(Scripted(text=json.dumps({**LONG, "direction": "NEUTRAL"})))
    answer = generate(client, alice, strategy_id=strategy_id).json()
    assert (answer["signal"]["direction"], answer["signal"]["status"], answer["queued"]) == \
        ("NEUTRAL", "recorded", False)


@pytest.mark.parametrize("reply", ["I think it goes up.", json.dumps({**LONG, "stop_loss": "101"})])
def test_a_malformed_answer_is_a_failed_execution_never_a_signal(
        client: TestClient, alice: dict, fake_llm: FakeLLMServer, db: Database,
        reply: str) -> None:
    strategy_id = create_strategy(client, alice)
    fake_llm.queue(Scripted(text=reply))
    response = generate(client, alice, strategy_id=strategy_id)
    assert response.status_code == 502, response.text
    assert response.json()["error"]["code"] == "generation_failed"
    with db.unit_of_work() as session:
        assert session.scalars(select(Signal).where(Signal.origin == "llm")).all() == []
        execution = session.scalars(select(PromptExecution)).one()
        assert execution.success is False and execution.error_type


def test_bad_requests_are_clear(client: TestClient, alice: dict, bob: dict,
                                fake_llm: FakeLLMServer) -> None:
    strategy_id = create_strategy(client, alice)
    assert generate(client, bob, strategy_id=strategy_id).status_code == 404
    no_bars = client.post(GENERATE, json={"symbol": "NOPE", "strategy_id": strategy_id},
                          headers=alice)
    assert no_bars.status_code == 422 and no_bars.json()["error"]["code"] == "no_bars"
    assert generate(client, alice, strategy_id="not-a-uuid").status_code == 422
    assert client.post(GENERATE, json={"symbol": "ACME", "strategy_id": strategy_id}
                       ).status_code == 401
    assert fake_llm.count() == 0


def test_the_offline_analyst_answers_by_default(db: Database, settings: Settings,
                                                alice: dict) -> None:
    with db.unit_of_work() as session:
        seed_prompt_templates(session=session)
    store_bars(db, "ACME", 300)
    with TestClient(build_app(settings, db)) as client:
        strategy_id = create_strategy(client, alice)
        response = generate(client, alice, strategy_id=strategy_id)
    assert response.status_code == 200, response.text
    answer = response.json()
    assert answer["execution"]["provider"] == "local"
    assert answer["signal"]["direction"] in ("LONG", "SHORT", "NEUTRAL")
    assert answer["signal"]["source"] == "llm:local"


def test_the_analyst_call_holds_no_transaction(client: TestClient, db: Database, alice: dict,
                                               fake_llm: FakeLLMServer,
                                               monkeypatch: pytest.MonkeyPatch) -> None:
    """Authentication and reads end before the provider is called, and the signal is written
    after it, each in a unit of work of its own: none is open during the call (on SQLite it
    would hold the write lock for the seconds a model takes)."""
    from tradeloop.signals import generation

    connection = db.session_factory.kw["bind"]  # type: ignore[attr-defined]
    calls: list[bool] = []
    execute = generation.llm.execute

    def watched(*args: Any, **kwargs: Any) -> Any:
        calls.append(connection.in_nested_transaction())
        return execute(*args, **kwargs)

    monkeypatch.setattr(generation.llm, "execute", watched)
    strategy_id = create_strategy(client, alice)
    fake_llm.queue(Scripted(text=json.dumps(LONG), usage=(10, 10)))
    assert generate(client, alice, strategy_id=strategy_id).status_code == 200
    assert calls == [False]
