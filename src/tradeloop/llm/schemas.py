"""Value types of the llm package: model configuration, the analysis answer, guardrail
results, and the admin API's request/response shapes."""

from __future__ import annotations

import enum
import uuid
from datetime import datetime
from decimal import Decimal
from typing import Any

from pydantic import BaseModel, ConfigDict, Field, model_validator

from tradeloop.schema_types import PlainDecimal
from tradeloop.settings import LLMProvider

ProviderName = LLMProvider


class ModelConfig(BaseModel):
    """Which provider and model answer a prompt; None fields fall back to the settings."""

    model_config = ConfigDict(frozen=True, extra="ignore", protected_namespaces=())

    # Any name is stored (a template may name a provider configured later); an unknown one
    # fails the execution with error_type configuration_error.
    provider: str | None = Field(default=None, max_length=50)
    model_name: str | None = Field(default=None, max_length=200)
    temperature: float | None = Field(default=None, ge=0, le=2)
    max_tokens: int | None = Field(default=None, ge=1, le=200_000)


class Direction(enum.StrEnum):
    LONG = "LONG"
    SHORT = "SHORT"
    NEUTRAL = "NEUTRAL"


class AnalysisOutput(BaseModel):
    """The structured answer every analysis prompt asks for (SPEC §7).

    The price levels must tell one consistent story: a LONG stop sits below the entry range
    and its targets above it (mirrored for SHORT); an answer that contradicts itself is
    rejected rather than turned into a signal.
    """

    model_config = ConfigDict(extra="ignore")

    direction: Direction
    entry_price_low: Decimal = Field(gt=0)
    entry_price_high: Decimal = Field(gt=0)
    stop_loss: Decimal = Field(gt=0)
    target_conservative: Decimal = Field(gt=0)
    target_aggressive: Decimal = Field(gt=0)
    confidence: float = Field(ge=0, le=1)
    reasoning: str = Field(min_length=1, max_length=20_000)

    @model_validator(mode="after")
    def _levels_are_consistent(self) -> AnalysisOutput:
        if self.entry_price_low > self.entry_price_high:
            raise ValueError("entry_price_low must not exceed entry_price_high")
        if self.direction is Direction.LONG:
            _require(self.stop_loss < self.entry_price_low,
                     "a LONG stop_loss must be below entry_price_low")
            _require(self.target_conservative > self.entry_price_high,
                     "a LONG target_conservative must be above entry_price_high")
            _require(self.target_aggressive >= self.target_conservative,
                     "a LONG target_aggressive must not be below target_conservative")
        elif self.direction is Direction.SHORT:
            _require(self.stop_loss > self.entry_price_high,
                     "a SHORT stop_loss must be above entry_price_high")
            _require(self.target_conservative < self.entry_price_low,
                     "a SHORT target_conservative must be below entry_price_low")
            _require(self.target_aggressive <= self.target_conservative,
                     "a SHORT target_aggressive must not be above target_conservative")
        return self


def _require(condition: bool, message: str) -> None:
    if not condition:
        raise ValueError(message)


class RuleType(enum.StrEnum):
    REGEX_BLOCK = "regex_block"
    REGEX_REQUIRE = "regex_require"
    KEYWORD_BLOCK = "keyword_block"
    MAX_LENGTH = "max_length"
    JSON_SCHEMA = "json_schema"
    PII = "pii"
    PROMPT_INJECTION = "prompt_injection"


class AppliesTo(enum.StrEnum):
    INPUT = "input"
    OUTPUT = "output"


class GuardrailAction(enum.StrEnum):
    BLOCK = "block"
    WARN = "warn"
    REDACT = "redact"


class GuardrailResult(BaseModel):
    """What one guardrail found on one text; stored on the execution row."""

    model_config = ConfigDict(frozen=True)

    guardrail_id: uuid.UUID | None
    name: str
    rule_type: RuleType
    applies_to: AppliesTo
    action: GuardrailAction
    triggered: bool
    findings: list[str] = Field(default_factory=list)
    message: str | None = None


class GuardrailIn(BaseModel):
    """Body of `POST /api/v1/admin/guardrails`."""

    model_config = ConfigDict(extra="forbid")

    name: str = Field(min_length=1, max_length=100)
    description: str | None = Field(default=None, max_length=2000)
    rule_type: RuleType
    applies_to: AppliesTo = AppliesTo.INPUT
    action: GuardrailAction = GuardrailAction.BLOCK
    config: dict[str, Any] = Field(default_factory=dict)
    is_active: bool = True
    template_id: uuid.UUID | None = None


class GuardrailUpdate(BaseModel):
    """Body of `PUT /api/v1/admin/guardrails/{id}`: only the given fields change."""

    model_config = ConfigDict(extra="forbid")

    name: str | None = Field(default=None, min_length=1, max_length=100)
    description: str | None = Field(default=None, max_length=2000)
    rule_type: RuleType | None = None
    applies_to: AppliesTo | None = None
    action: GuardrailAction | None = None
    config: dict[str, Any] | None = None
    is_active: bool | None = None
    template_id: uuid.UUID | None = None


class GuardrailRead(BaseModel):
    model_config = ConfigDict(from_attributes=True)

    id: uuid.UUID
    name: str
    description: str | None
    rule_type: RuleType
    applies_to: AppliesTo
    action: GuardrailAction
    config: dict[str, Any]
    is_active: bool
    template_id: uuid.UUID | None
    created_by: uuid.UUID | None
    created_at: datetime
    updated_at: datetime


class GuardrailList(BaseModel):
    guardrails: list[GuardrailRead]
    total: int


class ModelPriceIn(BaseModel):
    """Body of `POST /api/v1/admin/model-prices`: USD per million tokens."""

    model_config = ConfigDict(extra="forbid", protected_namespaces=())

    provider: str = Field(min_length=1, max_length=50)
    model: str = Field(min_length=1, max_length=200)
    input_per_million: Decimal = Field(ge=0, max_digits=18, decimal_places=8)
    output_per_million: Decimal = Field(ge=0, max_digits=18, decimal_places=8)


class ModelPriceUpdate(BaseModel):
    model_config = ConfigDict(extra="forbid")

    input_per_million: Decimal | None = Field(default=None, ge=0, max_digits=18,
                                              decimal_places=8)
    output_per_million: Decimal | None = Field(default=None, ge=0, max_digits=18,
                                               decimal_places=8)


class ModelPriceRead(BaseModel):
    model_config = ConfigDict(from_attributes=True, protected_namespaces=())

    id: uuid.UUID
    provider: str
    model: str
    input_per_million: PlainDecimal
    output_per_million: PlainDecimal
    created_at: datetime
    updated_at: datetime


class ModelPriceList(BaseModel):
    prices: list[ModelPriceRead]
    total: int


class LoggedExecution(BaseModel):
    """An execution row just written, as execution listeners receive it."""

    model_config = ConfigDict(frozen=True, protected_namespaces=())

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
    error_message: str | None
    response_time_ms: float
    input_token_count: int
    output_token_count: int
    cost_usd: PlainDecimal
    guardrail_results: list[dict[str, Any]]
    executed_at: datetime


class ExecutionRead(LoggedExecution):
    """One logged execution, as the executions API shows it."""

    model_config = ConfigDict(from_attributes=True, protected_namespaces=())

    # Nullable in the published API schema (kept as it is), though every row has a user.
    user_id: uuid.UUID | None


class ExecutionList(BaseModel):
    executions: list[ExecutionRead]
    total: int


class TemplateStats(BaseModel):
    """Usage statistics of one template (optionally one version)."""

    executions: int
    success_rate: float | None
    avg_latency_ms: float | None
    p95_latency_ms: float | None
    total_cost_usd: PlainDecimal
    input_tokens: int
    output_tokens: int
    last_executed_at: datetime | None


class EffectivePrice(BaseModel):
    """The cost of a call of a given size and where its price comes from."""

    model_config = ConfigDict(protected_namespaces=())

    provider: str
    model: str
    input_tokens: int
    output_tokens: int
    cost_usd: PlainDecimal
    source: str  # override | genai-prices | free | unknown
