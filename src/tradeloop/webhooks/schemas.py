"""The webhook body and answer (seed 004), and the bodies of the webhook endpoints API."""

from __future__ import annotations

import base64
import binascii
import ipaddress
import uuid
from datetime import datetime
from typing import Annotated, Any, Literal

from pydantic import (
    AfterValidator,
    BaseModel,
    ConfigDict,
    Field,
    computed_field,
    model_validator,
)

from tradeloop.schema_types import MAX_INT32, UTCTimestamp, non_finite_numbers
from tradeloop.signals.models import Direction
from tradeloop.signals.schemas import (
    DIRECTIONS,
    Finite,
    RawDirection,
    SignalId,
    SignalPrice,
    Source,
    Symbol,
    Timeframe,
    _clean_json,
    _printable,
    _stripped,
)
from tradeloop.webhooks.models import AuthMode

WHSEC_PREFIX = "whsec_"  # the Standard Webhooks secret prefix


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
