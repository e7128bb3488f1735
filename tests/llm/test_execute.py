"""execute(): guardrails → provider → parsing → cost → execution row, on SQLite and PostgreSQL."""

from __future__ import annotations

import time
import uuid
from decimal import Decimal
from pathlib import Path

import pytest
import structlog
from sqlalchemy import select, text
from sqlalchemy.orm import Session

from tests.conftest import make_settings
from tests.llm.conftest import analysis_json, provider_settings
from tests.llm.fake_llm_server import FakeLLMServer, Scripted
from tradeloop.db import Database
from tradeloop.llm import service as llm
from tradeloop.llm.models import ModelPrice, PromptExecution
from tradeloop.llm.schemas import ModelConfig
from tradeloop.llm.tokens import count_prompt_tokens

CONTEXT = {"symbol": "AAPL", "latest_close": 187.5,
           "indicators": {"sma_20": 182.1, "sma_50": 178.0, "sma_200": 165.0, "rsi_14": 61.0,
                          "macd": 1.2, "macd_signal": 0.8, "atr_14": 3.1}}


def prompt(user_id: uuid.UUID, **overrides: object) -> llm.PromptCall:
    values: dict[str, object] = {"user_id": user_id, "user_text": "Analyse AAPL on the daily.",
                                 "system_text": "You are a technical analyst.",
                                 "context": CONTEXT, "template_id": uuid.uuid4(),
                                 "template_version": 1}
    values.update(overrides)
    return llm.PromptCall(**values)  # type: ignore[arg-type]


def stored(db: Database, execution_id: uuid.UUID | None) -> PromptExecution:
    assert execution_id is not None
    with db.unit_of_work() as session:
        row = session.get(PromptExecution, execution_id)
        assert row is not None
        return row


def add_price(db: Database, provider: str, model: str, per_in: str, per_out: str) -> None:
    with db.unit_of_work() as session:
        session.add(ModelPrice(provider=provider, model=model,
                               input_per_million=Decimal(per_in),
                               output_per_million=Decimal(per_out)))


def execute_on_fake(db: Database, user_id: uuid.UUID, server: FakeLLMServer, tmp_path: Path,
                    provider: str, model: str) -> llm.ExecutionResult:
    """One call of `model` through `provider`; the fake server reports 1000 tokens in, 500 out."""
    server.queue(Scripted(text=analysis_json(), usage=(1000, 500)))
    config = ModelConfig(provider=provider, model_name=model)
    return llm.execute(db, provider_settings(tmp_path, server, "local"),
                       prompt(user_id, model_config=config))


class TestLocalAnalyst:
    def test_answers_offline_and_is_logged(self, db: Database, user_id: uuid.UUID,
                                           tmp_path: Path) -> None:
        call = prompt(user_id)
        result = llm.execute(db, make_settings(tmp_path), call)
        assert result.success and result.analysis is not None
        assert result.analysis.direction.value == "LONG"
        assert "not an LLM" in result.analysis.reasoning
        assert (result.provider, result.model, result.cost_usd) == (
            "local", "rules-analyst-v1", Decimal(0))
        # No usage from a rules engine: both counts come from the offline tokenizer.
        assert result.input_tokens == count_prompt_tokens(call.system_text, call.user_text)
        assert result.output_tokens > 0
        row = stored(db, result.execution_id)
        assert (row.user_id, row.template_id, row.template_version, row.success) == (
            user_id, call.template_id, 1, True)
        assert row.input_token_count == result.input_tokens

    def test_without_a_price_it_fails_clearly(self, db: Database, user_id: uuid.UUID,
                                              tmp_path: Path) -> None:
        result = llm.execute(db, make_settings(tmp_path), prompt(user_id, context={"x": 1}))
        assert not result.success and result.error_type == "insufficient_context"
        assert stored(db, result.execution_id).error_type == "insufficient_context"


class TestCosts:
    def test_seed_cost_example_is_exact_with_an_override(
            self, db: Database, user_id: uuid.UUID, llm_server: FakeLLMServer,
            tmp_path: Path) -> None:
        add_price(db, "openai", "flash-like", "0.075", "0.30")
        llm_server.queue(Scripted(text=analysis_json(), usage=(1234, 567)))
        settings = provider_settings(tmp_path, llm_server, "openai", llm_model="flash-like")
        result = llm.execute(db, settings, prompt(user_id))
        expected = Decimal(1234) * Decimal("0.075") / 10**6 + Decimal(567) * Decimal("0.30") / 10**6
        assert expected == Decimal("0.00026265")
        assert result.cost_usd == expected
        assert (result.input_tokens, result.output_tokens) == (1234, 567)
        assert stored(db, result.execution_id).cost_usd == expected

    def test_bundled_price_table_prices_known_models(
            self, db: Database, user_id: uuid.UUID, llm_server: FakeLLMServer,
            tmp_path: Path) -> None:
        # gemini-1.5-flash is priced $0.075/M in and $0.30/M out in genai-prices; served here
        # through an OpenAI-compatible endpoint, as Gemini's is.
        result = execute_on_fake(db, user_id, llm_server, tmp_path, "openai",
                                 "gemini-1.5-flash")
        assert result.cost_usd == Decimal("0.000225")

    def test_vertex_ai_runs_on_gemini_and_is_priced_as_gemini(
            self, db: Database, user_id: uuid.UUID, llm_server: FakeLLMServer,
            tmp_path: Path) -> None:
        result = execute_on_fake(db, user_id, llm_server, tmp_path, "vertex_ai",
                                 "gemini-2.5-flash")
        assert result.success, result.error_message
        assert (result.provider, result.model) == ("gemini", "gemini-2.5-flash")
        # genai-prices' Google table: gemini-2.5-flash at $0.30/M in and $2.50/M out.
        assert result.cost_usd == Decimal("0.00155")
        row = stored(db, result.execution_id)
        assert (row.provider, row.cost_usd) == ("gemini", Decimal("0.00155"))
        assert llm_server.requests[0]["body"]["model"] == "gemini-2.5-flash"

    def test_override_wins_over_the_bundled_table(
            self, db: Database, user_id: uuid.UUID, llm_server: FakeLLMServer,
            tmp_path: Path) -> None:
        add_price(db, "openai", "gemini-1.5-flash", "1", "2")
        result = execute_on_fake(db, user_id, llm_server, tmp_path, "openai",
                                 "gemini-1.5-flash")
        assert result.cost_usd == Decimal("0.002")

    def test_tokens_fall_back_to_the_offline_tokenizer(
            self, db: Database, user_id: uuid.UUID, llm_server: FakeLLMServer,
            tmp_path: Path) -> None:
        llm_server.queue(Scripted(text=analysis_json(), usage=None))
        call = prompt(user_id)
        result = llm.execute(db, provider_settings(tmp_path, llm_server, "openai"), call)
        assert result.input_tokens == count_prompt_tokens(call.system_text, call.user_text) > 0
        assert result.output_tokens > 10

    def test_estimate_counts_and_prices_the_prompt(self, db: Database, user_id: uuid.UUID,
                                                   tmp_path: Path) -> None:
        add_price(db, "openai", "flash-like", "0.075", "0.30")
        settings = make_settings(tmp_path, llm_provider="openai", llm_model="flash-like")
        call = prompt(user_id)
        tokens, cost = llm.estimate(db, settings, call)
        assert tokens == count_prompt_tokens(call.system_text, call.user_text)
        assert cost == Decimal(tokens) * Decimal("0.075") / 10**6


class TestFailuresAreExecutions:
    @pytest.mark.parametrize(("answer", "error_type"), [
        ("I think it goes up.", "malformed_output"),
        (analysis_json(stop_loss="101"), "invalid_output"),  # a LONG stop above the entry
        (analysis_json(confidence=1.5), "invalid_output"),
    ])
    def test_bad_answers_never_become_analyses(
            self, db: Database, user_id: uuid.UUID, llm_server: FakeLLMServer, tmp_path: Path,
            answer: str, error_type: str) -> None:
        llm_server.queue(Scripted(text=answer))
        result = llm.execute(db, provider_settings(tmp_path, llm_server, "openai"),
                             prompt(user_id))
        assert not result.success and result.analysis is None and result.text is None
        assert result.error_type == error_type
        row = stored(db, result.execution_id)
        assert not row.success and row.error_type == error_type
        assert row.input_token_count == 120  # the provider's usage: the call was paid for

    def test_provider_failure_is_logged(self, db: Database, user_id: uuid.UUID,
                                        llm_server: FakeLLMServer, tmp_path: Path) -> None:
        llm_server.queue(*[Scripted(status=500)] * 3)
        result = llm.execute(db, provider_settings(tmp_path, llm_server, "anthropic"),
                             prompt(user_id))
        assert result.error_type == "server_error" and "HTTP 500" in (result.error_message or "")
        assert stored(db, result.execution_id).error_type == "server_error"

    def test_text_answers_without_analysis(self, db: Database, user_id: uuid.UUID,
                                           llm_server: FakeLLMServer, tmp_path: Path) -> None:
        llm_server.queue(Scripted(text="Photosynthesis turns light into sugar."))
        result = llm.execute(db, provider_settings(tmp_path, llm_server, "openai"),
                             prompt(user_id, expect_analysis=False))
        assert result.success and result.text == "Photosynthesis turns light into sugar."
        assert "response_format" not in llm_server.requests[0]["body"]


class TestLogging:
    def test_disabled_logging_writes_nothing(self, db: Database, user_id: uuid.UUID,
                                             tmp_path: Path) -> None:
        settings = make_settings(tmp_path, disable_prompt_logging=True)
        result = llm.execute(db, settings, prompt(user_id))
        assert result.success and result.execution_id is None
        with db.unit_of_work() as session:
            assert session.scalars(select(PromptExecution)).first() is None

    def test_unwritable_log_never_fails_the_caller(self, db: Database, user_id: uuid.UUID,
                                                   tmp_path: Path) -> None:
        with db.unit_of_work() as session:
            session.execute(text("ALTER TABLE prompt_executions RENAME TO prompt_executions_off"))
        with structlog.testing.capture_logs() as logs:
            started = time.perf_counter()
            result = llm.execute(db, make_settings(tmp_path), prompt(user_id))
            elapsed = time.perf_counter() - started
        assert result.success and result.analysis is not None
        assert result.execution_id is None
        assert any(entry["event"] == "prompt_execution_log_failed" for entry in logs)
        assert elapsed < 1.0  # noisy machine: generous, yet far below any lock wait

    def test_listener_runs_after_the_write_and_a_failing_one_is_contained(
            self, db: Database, user_id: uuid.UUID, tmp_path: Path) -> None:
        seen: list[tuple[uuid.UUID, int]] = []

        def count_rows(session: Session, logged: llm.LoggedExecution) -> None:
            row = session.get(PromptExecution, logged.id)
            assert row is not None  # the row is written before listeners run
            seen.append((logged.id, logged.input_token_count))

        def broken(_session: Session, _logged: llm.LoggedExecution) -> None:
            raise RuntimeError("listener bug")

        llm.add_execution_listener(broken)
        llm.add_execution_listener(count_rows)
        try:
            with structlog.testing.capture_logs() as logs:
                result = llm.execute(db, make_settings(tmp_path), prompt(user_id))
        finally:
            llm.remove_execution_listener(broken)
            llm.remove_execution_listener(count_rows)
        assert seen == [(result.execution_id, result.input_tokens)]
        assert stored(db, result.execution_id).success
        assert any(entry["event"] == "prompt_execution_listener_failed" for entry in logs)


class TestTemplateStats:
    def test_stats_per_template_and_version(self, db: Database, user_id: uuid.UUID,
                                            llm_server: FakeLLMServer, tmp_path: Path) -> None:
        template_id = uuid.uuid4()
        add_price(db, "openai", "flash-like", "0.075", "0.30")
        settings = provider_settings(tmp_path, llm_server, "openai", llm_model="flash-like",
                                     llm_max_retries=0)
        llm_server.queue(Scripted(text=analysis_json(), usage=(1000, 100)),
                         Scripted(text=analysis_json(), usage=(2000, 200)),
                         Scripted(status=500))
        for version in (1, 1, 2):
            llm.execute(db, settings, prompt(user_id, template_id=template_id,
                                             template_version=version))
        with db.unit_of_work() as session:
            stats = llm.template_stats(session, template_id, owner_id=None)
            only_v1 = llm.template_stats(session, template_id, version=1, owner_id=None)
            empty = llm.template_stats(session, uuid.uuid4(), owner_id=None)
        assert stats["executions"] == 3 and stats["success_rate"] == round(2 / 3, 4)
        assert stats["input_tokens"] == 3000 and stats["output_tokens"] == 300
        assert stats["total_cost_usd"] == Decimal("0.000315")
        assert stats["p95_latency_ms"] >= stats["avg_latency_ms"] > 0
        assert stats["last_executed_at"].tzinfo is not None
        assert only_v1["executions"] == 2 and only_v1["success_rate"] == 1.0
        assert empty == {"executions": 0, "success_rate": None, "avg_latency_ms": None,
                         "p95_latency_ms": None, "total_cost_usd": Decimal(0),
                         "input_tokens": 0, "output_tokens": 0, "last_executed_at": None}
