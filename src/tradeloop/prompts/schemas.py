"""Request and response bodies of the prompts API (user API and admin API of seed 001)."""

from __future__ import annotations

import uuid
from datetime import datetime
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, model_validator

from tradeloop.llm.schemas import ProviderName
from tradeloop.schema_types import Version

TEXT_LIMIT = 200_000  # parsing bound; the configured template cap is checked by the service


class ModelConfigBody(BaseModel):
    """Which model runs a template; provider null = the configured default (LLM_PROVIDER)."""

    model_config = ConfigDict(extra="forbid")

    provider: ProviderName | None = None
    model_name: str | None = Field(default=None, max_length=200)
    temperature: float | None = Field(default=None, ge=0, le=2)
    max_tokens: int | None = Field(default=None, ge=1, le=200_000)


class VariableBody(BaseModel):
    model_config = ConfigDict(extra="forbid")

    name: str = Field(max_length=100)
    type: Literal["string", "number", "integer", "boolean", "list", "object", "any"] = "any"
    description: str = Field(default="", max_length=1000)
    nullable: bool = False


Variables = list[VariableBody | str]


class TemplateCreate(BaseModel):
    model_config = ConfigDict(extra="forbid", populate_by_name=True, protected_namespaces=())

    name: str = Field(min_length=1, max_length=200)
    description: str = Field(default="", max_length=5000)
    template_type: str = Field(default="analysis", min_length=1, max_length=32)
    timeframe: str = Field(default="daily", min_length=1, max_length=32)
    language: str = Field(default="en", min_length=2, max_length=16)
    template_text: str = Field(min_length=1, max_length=TEXT_LIMIT)
    variables: Variables = Field(default_factory=list, max_length=100)
    model_config_: ModelConfigBody = Field(default_factory=ModelConfigBody,
                                           alias="model_config")
    strategy_id: uuid.UUID | None = None
    is_active: bool = True
    is_default: bool = False
    change_note: str = Field(default="", max_length=2000)
    # Seed 001 sends a free-form version string ("1.0.0"); versions here are numbered 1..n,
    # so it is kept as the first version's change note.
    version: str | None = Field(default=None, max_length=50)


class TemplateUpdate(BaseModel):
    model_config = ConfigDict(extra="forbid", populate_by_name=True, protected_namespaces=())

    name: str | None = Field(default=None, min_length=1, max_length=200)
    description: str | None = Field(default=None, max_length=5000)
    template_type: str | None = Field(default=None, min_length=1, max_length=32)
    timeframe: str | None = Field(default=None, min_length=1, max_length=32)
    language: str | None = Field(default=None, min_length=2, max_length=16)
    template_text: str | None = Field(default=None, min_length=1, max_length=TEXT_LIMIT)
    variables: Variables | None = Field(default=None, max_length=100)
    model_config_: ModelConfigBody | None = Field(default=None, alias="model_config")
    change_note: str = Field(default="", max_length=2000)
    is_active: bool | None = None  # admin API (seed 001) toggles it with an update


class UsageStats(BaseModel):
    executions: int
    success_rate: float | None
    avg_latency_ms: float | None
    last_executed_at: datetime | None


class TemplateRead(BaseModel):
    model_config = ConfigDict(populate_by_name=True, serialize_by_alias=True,
                              protected_namespaces=())

    id: uuid.UUID
    name: str
    description: str
    template_type: str
    timeframe: str
    language: str
    strategy_id: uuid.UUID | None
    is_global: bool
    is_active: bool
    is_default: bool
    version: int
    served_version: int
    labels: dict[str, int]
    template_text: str
    variables: list[dict[str, Any]]
    model_config_: dict[str, Any] = Field(alias="model_config")
    created_by: str
    created_at: datetime
    updated_at: datetime
    usage: UsageStats


class TemplateList(BaseModel):
    templates: list[TemplateRead]
    total: int
    limit: int
    offset: int


class AdminTemplateList(BaseModel):
    templates: list[TemplateRead]
    total: int


class VersionRead(BaseModel):
    model_config = ConfigDict(from_attributes=True, populate_by_name=True, protected_namespaces=(),
                              serialize_by_alias=True)

    template_id: uuid.UUID
    version: int
    previous_version_id: uuid.UUID | None
    template_text: str
    variables: list[dict[str, Any]]
    model_config_: dict[str, Any] = Field(alias="model_config")
    change_note: str
    created_by: str
    created_at: datetime
    labels: list[str] = Field(default_factory=list)


class VersionList(BaseModel):
    template_id: uuid.UUID
    versions: list[VersionRead]


class DiffRead(BaseModel):
    template_id: uuid.UUID
    from_version: int
    to_version: int
    diff: str


class LabelBody(BaseModel):
    model_config = ConfigDict(extra="forbid")

    label: str = Field(min_length=1, max_length=64)
    version: Version | None = None


class LabelRead(BaseModel):
    model_config = ConfigDict(from_attributes=True)

    label: str
    version: int
    updated_by: str
    updated_at: datetime


class LabelEventRead(BaseModel):
    model_config = ConfigDict(from_attributes=True)

    label: str
    from_version: int | None
    to_version: int | None
    action: str
    actor: str
    at: datetime


class LabelHistory(BaseModel):
    template_id: uuid.UUID
    events: list[LabelEventRead]


class RollbackBody(BaseModel):
    model_config = ConfigDict(extra="forbid")

    version: Version


class CloneBody(BaseModel):
    model_config = ConfigDict(extra="forbid")

    strategy_id: uuid.UUID | None = None
    name: str | None = Field(default=None, min_length=1, max_length=200)
    version: Version | None = None


class ValidateBody(BaseModel):
    model_config = ConfigDict(extra="forbid")

    template_text: str = Field(max_length=TEXT_LIMIT)
    variables: Variables | None = Field(default=None, max_length=100)


class ValidateRead(BaseModel):
    valid: bool
    errors: list[dict[str, Any]]


class RenderBody(BaseModel):
    """Render a stored template (by id, optionally one version) or raw text."""

    model_config = ConfigDict(extra="forbid")

    template_id: uuid.UUID | None = None
    version: Version | None = None
    template_text: str | None = Field(default=None, max_length=TEXT_LIMIT)
    variables: dict[str, Any] = Field(default_factory=dict)

    @model_validator(mode="after")
    def _one_source(self) -> RenderBody:
        if (self.template_id is None) == (self.template_text is None):
            raise ValueError("give either template_id or template_text")
        return self


class RenderRead(BaseModel):
    rendered: str
    chars: int
    template_id: uuid.UUID | None
    version: int | None
    render_ms: float


class TestBody(RenderBody):
    """Render (as /render) and optionally execute through the LLM service."""

    model_config = ConfigDict(extra="forbid", populate_by_name=True, protected_namespaces=())

    model_config_: ModelConfigBody | None = Field(default=None, alias="model_config")
    system_text: str | None = Field(default=None, max_length=TEXT_LIMIT)
    execute: bool = False
    expect_analysis: bool = True


class TestRead(BaseModel):
    rendered: str
    chars: int
    template_id: uuid.UUID | None
    version: int | None
    executed: bool
    success: bool | None
    provider: str | None
    model: str | None
    input_tokens: int
    output_tokens: int
    cost_usd: str
    latency_ms: float
    render_ms: float
    response_text: str | None
    analysis: dict[str, Any] | None
    error_type: str | None
    error_message: str | None
    guardrails: list[dict[str, Any]]
    execution_id: uuid.UUID | None
