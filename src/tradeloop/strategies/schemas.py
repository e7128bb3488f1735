"""Request and response bodies of the strategies API."""

from __future__ import annotations

import uuid
from datetime import datetime
from typing import Annotated, Any, Literal

from pydantic import BaseModel, ConfigDict, Field

from tradeloop.schema_types import UTCTimestamp, Version
from tradeloop.strategies.definition import MAX_DEFINITION_CHARS

Definition = Annotated[str, Field(max_length=MAX_DEFINITION_CHARS * 2,
                                  description="A strategy in the YAML strategy language "
                                  "(docs/strategies.md)")]
EditableStatus = Literal["draft", "paused", "archived"]


class StrategyCreate(BaseModel):
    definition: Definition
    metadata: dict[str, Any] = Field(default_factory=dict)


class StrategyUpdate(BaseModel):
    lock_version: Version = Field(description="The lock_version you last read; a stale one "
                              "is refused with 409 version_conflict")
    definition: Definition | None = None
    metadata: dict[str, Any] | None = None
    status: EditableStatus | None = None


class StrategyRead(BaseModel):
    model_config = ConfigDict(from_attributes=True, populate_by_name=True)

    id: uuid.UUID
    name: str
    version: int
    status: str
    definition: str
    metadata: dict[str, Any] = Field(validation_alias="metadata_")
    lock_version: int
    inserted_at: datetime
    updated_at: datetime


class StrategyList(BaseModel):
    strategies: list[StrategyRead]
    total: int
    limit: int
    offset: int


class ValidateRequest(BaseModel):
    definition: Definition


class ValidationIssue(BaseModel):
    line: int
    column: int
    message: str


class ValidateResponse(BaseModel):
    valid: bool
    errors: list[ValidationIssue]


class SyntaxTestRequest(BaseModel):
    symbols: list[str] | None = Field(default=None, max_length=50,
                                      description="Default: the definition's symbols")
    params: dict[str, float] | None = None
    start: UTCTimestamp | None = None
    end: UTCTimestamp | None = None
    bars: int = Field(default=1000, ge=2, le=100_000,
                      description="Evaluate on the most recent N bars in range")


class SignalSample(BaseModel):
    ts: datetime
    signal: str


class SymbolSyntaxTest(BaseModel):
    symbol: str
    bars: int
    first_ts: datetime
    last_ts: datetime
    entries_long: int
    exits_long: int
    entries_short: int
    exits_short: int
    recent_signals: list[SignalSample]


class SyntaxTestResponse(BaseModel):
    strategy_id: uuid.UUID
    version: int
    timeframe: str
    params: dict[str, float]
    duration_ms: float
    symbols: list[SymbolSyntaxTest]
