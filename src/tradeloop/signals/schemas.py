"""The signal's field types and the bodies of the signals API."""

from __future__ import annotations

import re
import uuid
from datetime import datetime
from decimal import Decimal
from typing import Annotated, Any, Literal

from pydantic import (
    AfterValidator,
    BaseModel,
    BeforeValidator,
    ConfigDict,
    Field,
    StringConstraints,
)

from tradeloop.schema_types import PlainDecimal
from tradeloop.signals.models import PRICE_LIMIT, Direction

DIRECTIONS: dict[str, Direction] = {
    "CALL": Direction.LONG, "BUY": Direction.LONG, "LONG": Direction.LONG,
    "PUT": Direction.SHORT, "SELL": Direction.SHORT, "SHORT": Direction.SHORT,
    # FLAT/CLOSE: what {{strategy.market_position}} and many scripts say for an exit.
    "EXIT": Direction.EXIT, "FLAT": Direction.EXIT, "CLOSE": Direction.EXIT,
}
SYMBOL_PATTERN = re.compile(r"[A-Z0-9][A-Z0-9._:/!^&=+-]{0,31}")
MAX_PRICE = PRICE_LIMIT
MAX_KEY_LENGTH = 200


def _printable(value: str) -> str:
    # Control characters, NUL and lone surrogates cannot be stored in a PostgreSQL text column.
    if not value.isprintable():
        raise ValueError("must not contain control characters")
    return value


def _symbol(value: str) -> str:
    value = value.upper()
    if not SYMBOL_PATTERN.fullmatch(value):
        raise ValueError("must be 1-32 letters, digits or . _ : / ! ^ & = + - "
                         "(e.g. SPY, BTCUSDT, ES1!, BRK.B)")
    return value


def _direction(value: str) -> str:
    if value.upper() not in DIRECTIONS:
        raise ValueError("must be one of CALL, PUT, LONG, SHORT, BUY, SELL, EXIT "
                         "(any case; FLAT and CLOSE mean EXIT)")
    return value


def _int_as_str(value: Any) -> Any:
    return str(value) if isinstance(value, int) and not isinstance(value, bool) else value


def _clean_json(value: Any, path: str = "metadata") -> None:
    """Raise when a nested string cannot be stored (NUL, lone surrogates)."""
    if isinstance(value, str):
        if "\x00" in value or has_surrogate(value):
            raise ValueError(f"{path} contains a NUL byte or an invalid unicode character")
    elif isinstance(value, dict):
        for key, item in value.items():
            _clean_json(key, path)
            _clean_json(item, f"{path}.{key}")
    elif isinstance(value, list):
        for index, item in enumerate(value):
            _clean_json(item, f"{path}[{index}]")


_SURROGATE = re.compile("[\ud800-\udfff]")


def has_surrogate(value: str) -> bool:
    """Whether `value` holds a lone surrogate (a JSON `\\ud800` escape), which UTF-8 and
    PostgreSQL cannot store."""
    return _SURROGATE.search(value) is not None


def _stripped(max_length: int) -> Any:
    return StringConstraints(strip_whitespace=True, min_length=1, max_length=max_length)


Finite = Annotated[float, Field(allow_inf_nan=False)]
Source = Annotated[str, _stripped(100), AfterValidator(_printable)]
Symbol = Annotated[str, _stripped(32), AfterValidator(_symbol)]
RawDirection = Annotated[str, _stripped(16), AfterValidator(_direction)]
Timeframe = Annotated[str, _stripped(16), AfterValidator(_printable)]
SignalId = Annotated[str, BeforeValidator(_int_as_str), _stripped(MAX_KEY_LENGTH),
                     AfterValidator(_printable)]
# The Numeric(20, 8) price columns: a price they cannot hold exactly is refused, not rounded
# (1e-9 would be stored as 0 and the decision would see no price).
SignalPrice = Annotated[Decimal, Field(gt=0, lt=MAX_PRICE, max_digits=20, decimal_places=8,
                                       allow_inf_nan=False)]


class SignalRead(BaseModel):
    model_config = ConfigDict(from_attributes=True, populate_by_name=True)

    id: uuid.UUID
    endpoint_id: uuid.UUID | None
    origin: str
    source: str
    symbol: str
    direction: str
    raw_direction: str
    timeframe: str
    signal_time: datetime
    price: PlainDecimal | None
    score: float | None
    confidence: float | None
    metadata: dict[str, Any] = Field(validation_alias="metadata_")
    idempotency_key: str
    status: str
    received_at: datetime
    claimed_at: datetime | None
    processed_at: datetime | None
    correlation_id: str | None
    prompt_template_id: uuid.UUID | None
    prompt_version: int | None
    prompt_type: str | None
    outcome: str | None
    actual_r_multiple: float | None
    profit_loss: PlainDecimal | None
    exit_price: PlainDecimal | None
    exit_time: datetime | None
    entry_price_low: PlainDecimal | None
    entry_price_high: PlainDecimal | None
    stop_loss: PlainDecimal | None
    target_conservative: PlainDecimal | None
    target_aggressive: PlainDecimal | None
    execution_price: PlainDecimal | None


class SignalList(BaseModel):
    signals: list[SignalRead]
    total: int
    limit: int
    offset: int


class ProcessingErrorRead(BaseModel):
    model_config = ConfigDict(from_attributes=True)

    id: uuid.UUID
    endpoint_id: uuid.UUID | None
    signal_id: uuid.UUID | None
    correlation_id: str | None
    stage: str
    error_type: str
    message: str
    details: dict[str, Any]
    raw_body: str | None
    received_at: datetime


class ProcessingErrorList(BaseModel):
    processing_errors: list[ProcessingErrorRead]
    total: int
    limit: int
    offset: int


class GenerateSignalIn(BaseModel):
    """Body of `POST /api/signals/generate` (seed 000)."""

    model_config = ConfigDict(extra="forbid")

    symbol: Symbol
    strategy_id: uuid.UUID
    template_id: uuid.UUID | None = None
    timeframe: str = Field(default="1d", min_length=1, max_length=16)
    analysis: Literal["daily", "weekly", "consolidation"] | None = None


class ExecutionSummary(BaseModel):
    """The analyst call behind a generated signal (its row is in the execution log)."""

    id: uuid.UUID | None
    provider: str
    model: str
    input_tokens: int
    output_tokens: int
    cost_usd: PlainDecimal
    latency_ms: float


class GeneratedSignalRead(BaseModel):
    signal: SignalRead
    queued: bool  # true: on its way to a decision; false: recorded only (NEUTRAL / not active)
    execution: ExecutionSummary
