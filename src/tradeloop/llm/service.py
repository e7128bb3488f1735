"""The llm package's public entry point: run one prompt through guardrails, a provider and
the execution log.

    result = execute(db, settings, PromptCall(user_id=..., user_text=rendered, context=vars))

`execute` never raises for provider, parsing or guardrail failures: they come back as an
`ExecutionResult` with `success=False` and an `error_type`. The execution row is handed to
the database's background writer (PROMPT_LOG_MODE=background, `log_writer`): the caller does
not wait for it, `flush_execution_log(db)` does. With PROMPT_LOG_MODE=inline it is written in
its own unit of work before `execute` returns. Either way a failing log write is logged and
otherwise ignored. On SQLite, call `execute` outside an open write transaction (the log
write takes the write lock).
"""

from __future__ import annotations

import time
import uuid
from dataclasses import dataclass, replace
from decimal import Decimal
from typing import Any

import structlog
from sqlalchemy.orm import Session

from tradeloop.db import Database, utcnow
from tradeloop.llm import guardrails, log_writer, pricing
from tradeloop.llm.executions import (
    ExecutionListener,
    LoggedExecution,
    TemplateUsage,
    add_execution_listener,
    remove_execution_listener,
    template_stats,
    usage_by_template,
    write_execution,
)
from tradeloop.llm.parsing import OutputError, parse_analysis
from tradeloop.llm.providers import (
    DEFAULT_MODELS,
    Provider,
    ProviderError,
    ProviderRequest,
    RetryPolicy,
    canonical_provider,
    complete_with_retries,
    get_provider,
)
from tradeloop.llm.schemas import AnalysisOutput, AppliesTo, GuardrailResult, ModelConfig
from tradeloop.llm.tokens import count_prompt_tokens, count_tokens
from tradeloop.settings import Settings

__all__ = ["ExecutionListener", "ExecutionResult", "LoggedExecution", "PromptCall",
           "TemplateUsage", "add_execution_listener", "estimate", "execute",
           "flush_execution_log", "remove_execution_listener", "resolve_model",
           "template_stats", "usage_by_template"]

log = structlog.get_logger(__name__)
MAX_ERROR_MESSAGE = 2000


@dataclass(frozen=True)
class PromptCall:
    """One prompt to execute, with the metadata its execution row records."""

    user_id: uuid.UUID
    user_text: str  # the rendered prompt
    system_text: str | None = None  # the rendered system message
    # None, or a config whose provider is None, means the settings' default provider/model.
    model_config: ModelConfig | None = None
    # The variables the prompt was rendered from; the local analyst reads them.
    context: dict[str, Any] | None = None
    template_id: uuid.UUID | None = None
    template_version: int | None = None
    strategy_id: uuid.UUID | None = None
    signal_id: uuid.UUID | None = None
    expect_analysis: bool = True  # parse and validate the answer as an AnalysisOutput


@dataclass(frozen=True)
class ExecutionResult:
    """What happened: the answer (or why there is none), its cost and its guardrail results."""

    success: bool
    text: str | None
    analysis: AnalysisOutput | None
    error_type: str | None
    error_message: str | None
    provider: str
    model: str
    input_tokens: int
    output_tokens: int
    cost_usd: Decimal
    latency_ms: float
    guardrails: list[GuardrailResult]
    # The execution row's id (chosen before the write). None when logging is disabled, the
    # background queue was full, or (inline mode) the write failed; in background mode a
    # write that fails later is only logged, so the row may be missing although an id is set.
    execution_id: uuid.UUID | None


@dataclass(frozen=True)
class _Prepared:
    """What is read from the database before the call: rules and the price override."""

    rules: list[guardrails.Rule]
    override: pricing.PerMillionPrice | None


class _FailedExecutionError(Exception):
    def __init__(self, error_type: str, message: str):
        super().__init__(message)
        self.error_type = error_type
        self.message = message


def resolve_model(settings: Settings, config: ModelConfig | None) -> tuple[str, str]:
    """(provider, model) for a call: the config's, else the settings', else the provider's
    default model. The local analyst has one model whatever is asked."""
    configured = canonical_provider(settings.llm_provider)
    provider = canonical_provider(config.provider) if config and config.provider else configured
    if provider == "local":
        return provider, DEFAULT_MODELS["local"]
    if config and config.model_name:
        return provider, config.model_name
    if settings.llm_model and provider == configured:
        return provider, settings.llm_model
    return provider, DEFAULT_MODELS.get(provider, "unknown")


def execute(db: Database, settings: Settings, call: PromptCall) -> ExecutionResult:
    """Check input guardrails, call the provider, check output guardrails, parse and
    validate the answer, price it and log it."""
    started = time.perf_counter()
    provider_name, model = resolve_model(settings, call.model_config)
    outcome = _Outcome(provider=provider_name, model=model)
    try:
        prepared = _prepare(db, call, provider_name, model)
        _run(settings, call, prepared, outcome)
    except _FailedExecutionError as failure:
        outcome.error_type, outcome.error_message = failure.error_type, failure.message
    outcome.latency_ms = (time.perf_counter() - started) * 1000
    result = outcome.result()
    if call.expect_analysis and result.success:
        log.info("llm_execution_succeeded", provider=provider_name, model=model,
                 template_id=str(call.template_id) if call.template_id else None,
                 template_version=call.template_version)
    elif not result.success:
        log.warning("llm_execution_failed", provider=provider_name, model=model,
                    error_type=result.error_type)
    if settings.disable_prompt_logging:
        return result
    execution_id = _log(db, settings, call, result)
    return replace(result, execution_id=execution_id)


def flush_execution_log(db: Database, timeout_s: float = 5.0) -> bool:
    """Wait until the execution rows handed over so far are written (read-after-write);
    False when `timeout_s` passed first. Immediate in inline mode."""
    return log_writer.flush(db, timeout_s)


@dataclass
class _Outcome:
    """The pieces of an ExecutionResult as they become known."""

    provider: str
    model: str
    text: str | None = None
    analysis: AnalysisOutput | None = None
    error_type: str | None = None
    error_message: str | None = None
    input_tokens: int = 0
    output_tokens: int = 0
    cost_usd: Decimal = Decimal(0)
    latency_ms: float = 0.0
    guardrails: list[GuardrailResult] | None = None

    def result(self) -> ExecutionResult:
        success = self.error_type is None
        return ExecutionResult(
            success=success, text=self.text if success else None,
            analysis=self.analysis if success else None, error_type=self.error_type,
            error_message=(self.error_message or "")[:MAX_ERROR_MESSAGE] or None,
            provider=self.provider, model=self.model, input_tokens=self.input_tokens,
            output_tokens=self.output_tokens, cost_usd=self.cost_usd,
            latency_ms=round(self.latency_ms, 3), guardrails=list(self.guardrails or []),
            execution_id=None)


def _prepare(db: Database, call: PromptCall, provider: str, model: str) -> _Prepared:
    try:
        # A read session: on SQLite it neither waits for nor takes the write lock.
        with db.read_session() as session:
            return _Prepared(guardrails.active_rules(session, call.template_id),
                             pricing.find_override(session, provider, model))
    except Exception as exc:
        # Fail closed: without the guardrails nobody can say the prompt may be sent.
        log.error("llm_guardrails_unavailable", error=f"{type(exc).__name__}: {exc}"[:300])
        raise _FailedExecutionError("guardrail_unavailable",
                       "the guardrails could not be read, so nothing was sent") from exc


def _run(settings: Settings, call: PromptCall, prepared: _Prepared, outcome: _Outcome) -> None:
    texts = {"user": call.user_text} | ({"system": call.system_text} if call.system_text else {})
    checked_input = guardrails.check(prepared.rules, AppliesTo.INPUT, texts)
    outcome.guardrails = list(checked_input.results)
    if checked_input.blocked:
        raise _FailedExecutionError("guardrail_blocked", checked_input.block_message())
    provider = _provider(outcome.provider, settings)
    request = ProviderRequest(
        user_text=checked_input.texts["user"], system_text=checked_input.texts.get("system"),
        model=outcome.model, temperature=_config(call, "temperature"),
        max_tokens=_config(call, "max_tokens"), json_mode=call.expect_analysis,
        context=call.context or {})
    try:
        reply = complete_with_retries(provider, request, _policy(settings))
    except ProviderError as exc:
        raise _FailedExecutionError(exc.error_type, exc.message) from exc
    outcome.input_tokens = (reply.input_tokens if reply.input_tokens is not None
                            else count_prompt_tokens(request.system_text, request.user_text))
    outcome.output_tokens = (reply.output_tokens if reply.output_tokens is not None
                             else count_tokens(reply.text))
    outcome.cost_usd = pricing.call_cost(outcome.provider, outcome.model, outcome.input_tokens,
                                         outcome.output_tokens, prepared.override).usd
    checked_output = guardrails.check(prepared.rules, AppliesTo.OUTPUT, {"answer": reply.text})
    outcome.guardrails.extend(checked_output.results)
    if checked_output.blocked:
        raise _FailedExecutionError("guardrail_blocked_output", checked_output.block_message())
    outcome.text = checked_output.texts["answer"]
    if call.expect_analysis:
        try:
            outcome.analysis = parse_analysis(outcome.text)
        except OutputError as exc:
            raise _FailedExecutionError(exc.error_type, exc.message) from exc


def _provider(name: str, settings: Settings) -> Provider:
    try:
        return get_provider(name, settings)
    except ProviderError as exc:
        raise _FailedExecutionError(exc.error_type, exc.message) from exc


def _config(call: PromptCall, field: str) -> Any:
    return getattr(call.model_config, field) if call.model_config else None


def _policy(settings: Settings) -> RetryPolicy:
    return RetryPolicy(timeout_s=settings.llm_timeout_s, max_retries=settings.llm_max_retries,
                       deadline_s=settings.llm_deadline_s,
                       backoff_base_s=settings.llm_backoff_base_s)


def _log(db: Database, settings: Settings, call: PromptCall,
         result: ExecutionResult) -> uuid.UUID | None:
    logged = LoggedExecution(
        id=uuid.uuid4(), user_id=call.user_id, template_id=call.template_id,
        template_version=call.template_version, strategy_id=call.strategy_id,
        signal_id=call.signal_id, provider=result.provider, model=result.model,
        success=result.success, error_type=result.error_type,
        error_message=result.error_message, response_time_ms=result.latency_ms,
        input_token_count=result.input_tokens, output_token_count=result.output_tokens,
        cost_usd=result.cost_usd,
        guardrail_results=[g.model_dump(mode="json") for g in result.guardrails],
        executed_at=utcnow())
    if settings.prompt_log_mode == "inline":
        stored = write_execution(db, logged)
    else:
        stored = log_writer.submit(db, logged, settings.prompt_log_queue_size)
    return logged.id if stored else None


def estimate(db_or_session: Database | Session, settings: Settings,
             call: PromptCall) -> tuple[int, Decimal]:
    """Input tokens of the call (offline tokenizer) and their cost, without calling anyone."""
    provider, model = resolve_model(settings, call.model_config)
    tokens = count_prompt_tokens(call.system_text, call.user_text)
    if isinstance(db_or_session, Database):
        with db_or_session.read_session() as session:
            override = pricing.find_override(session, provider, model)
    else:
        override = pricing.find_override(db_or_session, provider, model)
    return tokens, pricing.call_cost(provider, model, tokens, 0, override).usd
