"""The webhook body and answer (seed 004), and the bodies of the signals API."""

from __future__ import annotations

import base64
import binascii
import ipaddress
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
    computed_field,
    model_validator,
)

from tradeloop.schema_types import MAX_INT32, PlainDecimal, UTCTimestamp, non_finite_numbers
from tradeloop.signals.models import PRICE_LIMIT, AuthMode, Direction

DIRECTIONS: dict[str, Direction] = {
    "CALL": Direction.LONG, "BUY": Direction.LONG, "LONG": Direction.LONG,
    "PUT": Direction.SHORT, "SELL": Direction.SHORT, "SHORT": Direction.SHORT,
    # FLAT/CLOSE: what {{strategy.market_position}} and many scripts say for an exit.
    "EXIT": Direction.EXIT, "FLAT": Direction.EXIT, "CLOSE": Direction.EXIT,
}
SYMBOL_PATTERN = re.compile(r"[A-Z0-9][A-Z0-9._:/!^&=+-]{0,31}")
MAX_PRICE = PRICE_LIMIT
MAX_KEY_LENGTH = 200
WHSEC_PREFIX = "whsec_"  # the Standard Webhooks secret prefix


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


class SignalMetadata(BaseModel):
    """Free-form metadata; `score` and `confidence` are also stored as columns."""

    model_config = ConfigDict(extra="allow")

    score: Finite | None = None
    confidence: Finite | None = Field(default=None, ge=0, le=1)

    @model_validator(mode="after")
    def _storable(self) -> SignalMetadata:
        extra = self.model_extra or {}
        _clean_json(extra)
        # JSON would store NaN and infinities (`1e400`) as null: refused, not changed.
        locations = non_finite_numbers(extra)
        if locations:
            paths = [".".join(map(str, ("metadata", *location))) for location in locations]
            raise ValueError(f"{', '.join(paths)} must be finite numbers" if len(paths) > 1
                             else f"{paths[0]} must be a finite number")
        return self


class WebhookSignalIn(BaseModel):
    """A signal as TradingView (or any sender) posts it; unknown top-level fields are refused."""

    model_config = ConfigDict(extra="forbid")

    source: Source
    symbol: Symbol
    direction: RawDirection
    timeframe: Timeframe
    timestamp: UTCTimestamp = Field(description="ISO 8601 (no offset = UTC) or unix seconds")
    price: SignalPrice | None = None
    id: SignalId | None = Field(default=None, description="Idempotency key of this signal")
    secret: str | None = Field(default=None, exclude=True, repr=False,
                               description="Endpoint secret; removed before storage")
    metadata: SignalMetadata = Field(default_factory=SignalMetadata)

    @property
    def side(self) -> Direction:
        """The normalised direction: LONG, SHORT or EXIT."""
        return DIRECTIONS[self.direction.upper()]


class WebhookError(BaseModel):
    code: str
    message: str
    details: dict[str, Any] = Field(default_factory=dict)
    correlation_id: str | None = None


class WebhookAnswer(BaseModel):
    """Seed 004's answer; `error` (the app-wide error object) accompanies every REJECTED."""

    status: Literal["ACCEPTED", "DUPLICATE", "REJECTED"]
    message: str
    correlation_id: str | None
    processing_time_ms: float
    signal_id: uuid.UUID | None = None
    error: WebhookError | None = None


def _cidr(value: str) -> str:
    try:
        return str(ipaddress.ip_network(value.strip(), strict=False))
    except ValueError:
        raise ValueError(f"{value!r} is not an IP address or CIDR network") from None


def _unique_modes(modes: list[AuthMode]) -> list[AuthMode]:
    return list(dict.fromkeys(modes))


def _endpoint_secret(value: str) -> str:
    if value.startswith(WHSEC_PREFIX):
        try:
            base64.b64decode(value.removeprefix(WHSEC_PREFIX), validate=True)
        except (binascii.Error, ValueError):
            raise ValueError("a whsec_ secret must be followed by valid base64") from None
    if any(char.isspace() for char in value):
        raise ValueError("must not contain whitespace")
    return value


Name = Annotated[str, _stripped(100), AfterValidator(_printable)]
Cidr = Annotated[str, AfterValidator(_cidr)]
AuthModes = Annotated[list[AuthMode], Field(min_length=1), AfterValidator(_unique_modes)]
IpAllowlist = Annotated[list[Cidr], Field(max_length=100)]
EndpointSecret = Annotated[str, Field(min_length=16, max_length=255),
                           AfterValidator(_printable), AfterValidator(_endpoint_secret)]
DEFAULT_AUTH_MODES = [AuthMode.X_SIGNATURE, AuthMode.STANDARD_WEBHOOKS, AuthMode.BODY_SECRET]


class RiskSettings(BaseModel):
    """Risk gates of the decision stage, enforced by signal processing (flows.py)."""

    model_config = ConfigDict(extra="forbid")

    min_score: Finite | None = None
    min_confidence: Finite | None = Field(default=None, ge=0, le=1)
    max_open_positions: int | None = Field(default=None, ge=0, le=MAX_INT32)
    max_exposure: Finite | None = Field(default=None, ge=0)
    cooldown_seconds: int | None = Field(default=None, ge=0, le=MAX_INT32)
    daily_loss_limit: Finite | None = Field(default=None, ge=0)
    position_notional: Finite | None = Field(
        default=None, gt=0, description="Notional of each paper position (default 1000)")
    gex_gate: bool | None = Field(
        default=None, description="Refuse entries against the GEX regime (default true; "
        "docs/signals.md)")
    gex_wall_buffer_pct: Finite | None = Field(
        default=None, ge=0, le=20, description="How near a GEX wall counts as at it, in % "
        "of the price (default 0.5)")


class EndpointCreate(BaseModel):
    model_config = ConfigDict(extra="forbid")

    name: Name
    auth_modes: AuthModes = Field(default_factory=lambda: list(DEFAULT_AUTH_MODES))
    ip_allowlist: IpAllowlist = Field(default_factory=list,
                                      description="IPs/CIDRs allowed to post; empty = any")
    is_active: bool = True
    risk: RiskSettings = Field(default_factory=RiskSettings)
    secret: EndpointSecret | None = Field(
        default=None, description="Default: a new random whsec_ secret (shown once)")


class EndpointUpdate(BaseModel):
    model_config = ConfigDict(extra="forbid")

    name: Name | None = None
    auth_modes: AuthModes | None = None
    ip_allowlist: IpAllowlist | None = None
    is_active: bool | None = None
    risk: RiskSettings | None = None


class EndpointRead(BaseModel):
    model_config = ConfigDict(from_attributes=True)

    id: uuid.UUID
    name: str
    endpoint_key: str
    auth_modes: list[str]
    ip_allowlist: list[str]
    is_active: bool
    risk: dict[str, Any]
    inserted_at: datetime
    updated_at: datetime

    @computed_field  # type: ignore[prop-decorator]
    @property
    def path(self) -> str:
        """Where to POST signals for this endpoint."""
        return f"/webhook/{self.endpoint_key}"


class EndpointWithSecret(EndpointRead):
    secret: str = Field(description="Shown only now; store it in your alert or sender")


class EndpointList(BaseModel):
    endpoints: list[EndpointRead]
    total: int


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
