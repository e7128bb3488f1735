"""The llm package's public entry point: run one prompt through guardrails, a provider and
the execution log.

    result = execute(db, settings, PromptCall(user_id=..., user_text=rendered, context=vars))

`execute` never raises for provider, parsing or guardrail failures: they come back as an
`ExecutionResult` with `success=False` and an `error_type`. Logging happens in its own unit
of work after the call; a failing log write is logged and otherwise ignored. On SQLite, call
`execute` outside an open write transaction (the log write takes the database's write lock).
"""

from __future__ import annotations

import uuid
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime
from decimal import Decimal
from typing import Any

from sqlalchemy.orm import Session

from tradeloop.db import Database
from tradeloop.llm.schemas import AnalysisOutput, GuardrailResult, ModelConfig
from tradeloop.settings import Settings


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
    execution_id: uuid.UUID | None  # None when logging is disabled or the log write failed


@dataclass(frozen=True)
class LoggedExecution:
    """An execution row just written, as execution listeners receive it."""

    id: uuid.UUID
    user_id: uuid.UUID
    template_id: uuid.UUID | None
    template_version: int | None
    strategy_id: uuid.UUID | None
    signal_id: uuid.UUID | None
    provider: str
    model: str
    success: bool
    error_type: str | None
    response_time_ms: float
    input_token_count: int
    output_token_count: int
    cost_usd: Decimal
    executed_at: datetime


# A listener runs inside the unit of work that wrote the row (in a savepoint: a failing
# listener is logged and rolled back alone, the execution row stays).
ExecutionListener = Callable[[Session, LoggedExecution], None]


def execute(db: Database, settings: Settings, call: PromptCall) -> ExecutionResult:
    """Check input guardrails, call the provider, parse the answer, check output guardrails,
    price it and log it."""
    raise NotImplementedError


def estimate(db_or_session: Database | Session, settings: Settings,
             call: PromptCall) -> tuple[int, Decimal]:
    """Input tokens of the call (offline tokenizer) and their cost, without calling anyone."""
    raise NotImplementedError


def add_execution_listener(listener: ExecutionListener) -> None:
    """Call `listener(session, logged)` after each execution row is written."""
    raise NotImplementedError


def template_stats(session: Session, template_id: uuid.UUID,
                   version: int | None = None) -> dict[str, Any]:
    """{executions, success_rate, avg_latency_ms, p95_latency_ms, total_cost_usd,
    input_tokens, output_tokens, last_executed_at} of a template (or one version)."""
    raise NotImplementedError
