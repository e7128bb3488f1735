"""Fixtures of the llm tests: the fake provider server, settings pointing at it, a user."""

from __future__ import annotations

import json
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from tests.conftest import TEST_PASSWORD, make_settings
from tests.llm.fake_llm_server import FakeLLMServer
from tradeloop.db import Database
from tradeloop.settings import Settings

# Where Gemini's OpenAI-compatible endpoint lives under its host (…/v1beta/openai/).
GEMINI_PATH_PREFIX = "/v1beta/openai/"
VALID_LONG = {"direction": "LONG", "entry_price_low": "99.50", "entry_price_high": "100.00",
              "stop_loss": "97.00", "target_conservative": "104.00",
              "target_aggressive": "108.00", "confidence": 0.72,
              "reasoning": "Price above rising SMA 50; RSI 58."}


def analysis_json(**overrides: Any) -> str:
    return json.dumps(VALID_LONG | overrides)


@pytest.fixture(scope="session")
def fake_llm() -> Iterator[FakeLLMServer]:
    server = FakeLLMServer().start()
    yield server
    server.stop()


@pytest.fixture
def llm_server(fake_llm: FakeLLMServer) -> FakeLLMServer:
    fake_llm.reset()
    return fake_llm


def provider_settings(tmp_path: Path, server: FakeLLMServer, provider: str,
                      **overrides: Any) -> Settings:
    """Settings that send `provider` calls to the fake server with short, test-sized waits."""
    values: dict[str, Any] = {
        "llm_provider": provider, "openai_api_key": "sk-test-openai-key-000000000000",
        "openai_api_base": server.base_url + "/v1", "anthropic_api_key": "test-anthropic-key",
        "anthropic_api_base": server.base_url, "gemini_api_key": "test-gemini-key",
        "gemini_api_base": server.base_url + GEMINI_PATH_PREFIX, "llm_timeout_s": 1.0,
        "llm_max_retries": 2,
        "llm_deadline_s": 10.0, "llm_backoff_base_s": 0.01}
    values.update(overrides)
    return make_settings(tmp_path / "data", **values)


@pytest.fixture
def user_id(db: Database) -> uuid.UUID:
    from tradeloop.accounts import service as accounts

    with db.unit_of_work() as session:
        return accounts.create_user(session=session, email=f"llm-{uuid.uuid4().hex[:8]}@ex.com",
                                    password=TEST_PASSWORD).id
