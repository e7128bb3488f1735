"""Signal intake (seed 004): authenticate, validate, deduplicate, store as the outbox.

An ACCEPTED signal is one `queued` row in `signals`, committed by the caller's unit of work
before it answers; that row is the durable outbox a processor claims later, so a crash after
the answer loses nothing. Business outcomes (rejections, duplicates) are results, never
exceptions, so that the processing_errors row they write is committed with the answer.
Services flush but never commit.
"""

from __future__ import annotations

import functools
import hashlib
import json
import time
import uuid
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any

import structlog
from pydantic import ValidationError
from sqlalchemy import Insert, Table, bindparam, inspect, select
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session

from tradeloop.accounts import service as accounts
from tradeloop.db import utcnow
from tradeloop.errors import NotFoundError, validation_fields
from tradeloop.ownership import OwnedRepository
from tradeloop.signals.auth import (
    WEBHOOK_ID_HEADER,
    EndpointAuth,
    check_ip,
    verify_request,
)
from tradeloop.signals.models import (
    AuthMode,
    ProcessingError,
    Signal,
    SignalOrigin,
    SignalStatus,
    WebhookEndpoint,
)
from tradeloop.signals.outbox import (
    claim_signals,
    finish_signal,
    next_queued,
    requeue_abandoned,
)
from tradeloop.signals.schemas import MAX_KEY_LENGTH, WebhookSignalIn

# Re-exported: the service is the one entry point for callers outside the package.
__all__ = ["check_ip", "claim_signals", "finish_signal", "next_queued", "requeue_abandoned",
           "verify_request"]

log = structlog.get_logger(__name__)

MAX_BODY_BYTES = 64 * 1024
MAX_JSON_DEPTH = 32
DEFAULT_REPLAY_WINDOW = timedelta(hours=24)
# Senders' clocks drift; a signal from further in the future is refused like a stale one.
MAX_CLOCK_SKEW = timedelta(minutes=5)
DEFAULT_ENDPOINT_MODES = frozenset({AuthMode.X_SIGNATURE.value, AuthMode.BODY_SECRET.value})
REDACTED = "[REDACTED]"
_SIGNAL_COLUMNS = tuple(inspect(Signal).column_attrs)
# The owner's signal with an idempotency key, scoped like SignalRepository.select() but built
# once with bound parameters: every webhook asks it first.
_BY_KEY = select(Signal).where(Signal.user_id == bindparam("owner_id"),
                               Signal.idempotency_key == bindparam("key"))


class SignalRepository(OwnedRepository[Signal]):
    model = Signal
    label = "Signal"


class ProcessingErrorRepository(OwnedRepository[Any]):
    model = ProcessingError
    label = "Processing error"


@dataclass(frozen=True)
class Intake:
    """Where a webhook request lands: the owner, the endpoint (None = default) and its rules."""

    owner_id: uuid.UUID
    endpoint_id: uuid.UUID | None
    auth: EndpointAuth
    # Live strategies ingest through the same path as webhooks, marked as what they are.
    origin: SignalOrigin = SignalOrigin.WEBHOOK


@dataclass(frozen=True)
class ParsedBody:
    """The JSON body (None when it did not parse) and what was wrong with it."""

    payload: Any
    errors: list[dict[str, str]] = field(default_factory=list)


@dataclass(frozen=True)
class IngestResult:
    status: str  # ACCEPTED | DUPLICATE | REJECTED
    message: str
    http_status: int
    signal_id: uuid.UUID | None = None
    error_code: str | None = None
    details: dict[str, Any] = field(default_factory=dict)


def default_intake(*, session: Session, webhook_secret: str) -> Intake:
    """`POST /webhook`: owned by the earliest admin, WEBHOOK_SECRET, header or body secret."""
    owner_id = accounts.first_admin_id(session=session)
    if owner_id is None:
        raise NotFoundError("The default webhook endpoint has no owner yet: create an admin "
                            "account first", code="no_admin")
    return Intake(owner_id, None, EndpointAuth(webhook_secret, DEFAULT_ENDPOINT_MODES))


def endpoint_intake(*, session: Session, endpoint_key: str) -> Intake:
    """`POST /webhook/{endpoint_key}`; an unknown or inactive key is NotFoundError."""
    endpoint = session.scalars(select(WebhookEndpoint).where(
        WebhookEndpoint.endpoint_key == endpoint_key,
        WebhookEndpoint.is_active.is_(True))).first()
    if endpoint is None:
        raise NotFoundError("Unknown or inactive webhook endpoint")
    auth = EndpointAuth(endpoint.secret, frozenset(endpoint.auth_modes),
                        tuple(endpoint.ip_allowlist))
    return Intake(endpoint.user_id, endpoint.id, auth)


def parse_body(raw_body: bytes) -> ParsedBody:
    """JSON whatever the content type (TradingView posts JSON as text/plain)."""
    try:
        payload = json.loads(raw_body.decode("utf-8-sig"), parse_constant=_no_constant)
    except UnicodeDecodeError as exc:
        return ParsedBody(None, [_body_error(f"Body is not UTF-8 ({exc.reason})")])
    except json.JSONDecodeError as exc:
        return ParsedBody(None, [_body_error(
            f"Body is not valid JSON: {exc.msg} at line {exc.lineno} column {exc.colno}")])
    except (ValueError, RecursionError) as exc:
        return ParsedBody(None, [_body_error(f"Body is not valid JSON: {exc}")])
    if not isinstance(payload, dict):
        return ParsedBody(payload, [_body_error("Body must be a JSON object")])
    depth, has_surrogate = _inspect(payload)
    if depth > MAX_JSON_DEPTH:
        return ParsedBody(payload, [_body_error(f"JSON nested deeper than {MAX_JSON_DEPTH}")])
    if has_surrogate:
        # Unencodable as UTF-8, so neither storable nor checkable field by field.
        return ParsedBody(payload, [_body_error("Body contains a lone unicode surrogate "
                                                "escape (\\ud800-\\udfff)")])
    return ParsedBody(payload)


def receive_webhook(*, session: Session, intake: Intake, raw_body: bytes,
                    headers: Mapping[str, str], client_ip: str | None,
                    correlation_id: str | None = None, now: datetime | None = None,
                    replay_window: timedelta = DEFAULT_REPLAY_WINDOW,
                    started: float | None = None) -> IngestResult:
    """Parse, authenticate (raising 401/403 before anything is stored), then ingest.

    `started` is the request's `time.perf_counter()` start: the signal keeps its intake time.
    """
    parsed = parse_body(raw_body)
    verify_request(auth=intake.auth, raw_body=raw_body, headers=headers,
                   payload=parsed.payload, client_ip=client_ip, now=now)
    webhook_id = {k.lower(): v for k, v in headers.items()}.get(WEBHOOK_ID_HEADER)
    return ingest_signal(session=session, intake=intake, raw_body=raw_body, parsed=parsed,
                         webhook_id=webhook_id, correlation_id=correlation_id, now=now,
                         replay_window=replay_window, started=started)


def ingest_signal(*, session: Session, intake: Intake, raw_body: bytes, parsed: ParsedBody,
                  webhook_id: str | None = None, correlation_id: str | None = None,
                  now: datetime | None = None,
                  replay_window: timedelta = DEFAULT_REPLAY_WINDOW,
                  started: float | None = None) -> IngestResult:
    """Validate, deduplicate and queue an authenticated signal."""
    now = now or utcnow()
    failure = _Failure(session, intake, raw_body, parsed.payload, correlation_id, now)
    if parsed.errors:
        return failure.invalid(parsed.errors)
    try:
        signal_in = WebhookSignalIn.model_validate(parsed.payload)
    except ValidationError as exc:
        return failure.invalid(validation_fields(exc.errors()))
    webhook_id = (webhook_id or "").strip() or None
    if webhook_id and (len(webhook_id) > MAX_KEY_LENGTH or not webhook_id.isprintable()):
        return failure.invalid([{"field": "webhook-id", "type": "value_error",
                                 "message": f"At most {MAX_KEY_LENGTH} printable characters"}])
    key = idempotency_key(signal_in, webhook_id)
    digest = body_hash(parsed.payload)
    existing = _find_by_key(session, intake.owner_id, key)
    if existing is not None:
        return _repeat(existing, digest, failure)
    problem = _timing_problem(signal_in.timestamp, now, replay_window)
    if problem is not None:
        return failure.refused([problem], stage="replay", error_type=problem["type"])
    signal = _new_signal(intake, signal_in, key, digest, correlation_id, now)
    if started is not None:
        # Measured before the INSERT so that recording it costs no extra UPDATE.
        signal.ingest_ms = round((time.perf_counter() - started) * 1000, 3)
    if not _insert_once(session, signal):
        existing = _find_by_key(session, intake.owner_id, key)
        assert existing is not None  # _insert_once only fails when the key exists
        return _repeat(existing, digest, failure)
    log.info("signal_accepted", signal_id=str(signal.id), symbol=signal.symbol,
             direction=signal.direction, endpoint_id=str(intake.endpoint_id))
    return IngestResult("ACCEPTED", "Signal received and queued for processing", 200,
                        signal_id=signal.id)


def idempotency_key(signal_in: WebhookSignalIn, webhook_id: str | None = None) -> str:
    """The body's id, else the Standard Webhooks message id, else a hash of what it says."""
    if signal_in.id:
        return f"id:{signal_in.id}"
    if webhook_id:
        return f"webhook-id:{webhook_id}"
    parts = (signal_in.source, signal_in.symbol, signal_in.side.value, signal_in.timeframe,
             signal_in.timestamp.isoformat())
    return "sha256:" + hashlib.sha256("|".join(parts).encode()).hexdigest()


def body_hash(payload: dict[str, Any]) -> str:
    """SHA-256 of the canonical body without its secret: formatting and key order don't count."""
    canonical = json.dumps(_without_secret(payload), sort_keys=True, separators=(",", ":"))
    return hashlib.sha256(canonical.encode()).hexdigest()


def _new_signal(intake: Intake, signal_in: WebhookSignalIn, key: str, digest: str,
                correlation_id: str | None, now: datetime) -> Signal:
    metadata = signal_in.metadata.model_dump(mode="json", exclude_unset=True)
    return Signal(
        id=uuid.uuid4(), user_id=intake.owner_id, endpoint_id=intake.endpoint_id,
        origin=intake.origin.value, source=signal_in.source, symbol=signal_in.symbol,
        direction=signal_in.side.value, raw_direction=signal_in.direction,
        timeframe=signal_in.timeframe, signal_time=signal_in.timestamp, price=signal_in.price,
        score=signal_in.metadata.score, confidence=signal_in.metadata.confidence,
        metadata_=metadata, idempotency_key=key, body_hash=digest,
        status=SignalStatus.QUEUED.value, received_at=now, correlation_id=correlation_id)


def _insert_once(session: Session, signal: Signal) -> bool:
    """Insert; False when a concurrent request stored the same key first (the index decides)."""
    statement = _insert_unless_key_exists(session.get_bind().dialect.name)
    if statement is not None:
        # One statement, no savepoint and no ORM flush: the webhook's hot path. Any other
        # constraint still raises IntegrityError.
        return session.execute(statement, _column_values(signal)).first() is not None
    try:
        with session.begin_nested():
            session.add(signal)
    except IntegrityError:
        if _find_by_key(session, signal.user_id, signal.idempotency_key) is None:
            raise  # some other constraint: a real failure, not a duplicate
        return False
    return True


@functools.cache
def _insert_unless_key_exists(dialect: str) -> Insert | None:
    """INSERT … ON CONFLICT (user_id, idempotency_key) DO NOTHING, where the dialect has it."""
    dialects: dict[str, Callable[[Table], Any]] = {"postgresql": postgresql.insert,
                                                  "sqlite": sqlite.insert}
    if dialect not in dialects:
        return None
    # RETURNING says whether the row went in (rowcount is not reliable on every driver).
    table = Signal.__table__
    return (dialects[dialect](table)
            .on_conflict_do_nothing(index_elements=["user_id", "idempotency_key"])
            .returning(table.c.id))


def _column_values(signal: Signal) -> dict[str, Any]:
    """The new signal's row, keyed by column name (`metadata_` is stored as `metadata`)."""
    return {attribute.columns[0].key: getattr(signal, attribute.key)
            for attribute in _SIGNAL_COLUMNS}


def _find_by_key(session: Session, owner_id: uuid.UUID, key: str) -> Signal | None:
    return session.scalars(_BY_KEY, {"owner_id": owner_id, "key": key}).first()


def _repeat(existing: Signal, digest: str, failure: _Failure) -> IngestResult:
    if existing.body_hash == digest:
        return IngestResult("DUPLICATE", f"Signal already received (status {existing.status}); "
                            "nothing changed", 200, signal_id=existing.id)
    return failure.conflict(existing)


def _timing_problem(signal_time: datetime, now: datetime,
                    replay_window: timedelta) -> dict[str, str] | None:
    if signal_time < now - replay_window:
        hours = replay_window.total_seconds() / 3600
        return {"field": "timestamp", "type": "stale_signal",
                "message": f"Older than the {hours:g} h replay window; refused as a replay"}
    if signal_time > now + MAX_CLOCK_SKEW:
        return {"field": "timestamp", "type": "future_signal",
                "message": "More than 5 minutes in the future; check the sender's clock"}
    return None


class _Failure:
    """Writes the processing_errors row of a refused signal and builds its answer."""

    def __init__(self, session: Session, intake: Intake, raw_body: bytes, payload: Any,
                 correlation_id: str | None, now: datetime):
        self.session, self.intake, self.correlation_id, self.now = (
            session, intake, correlation_id, now)
        self.raw_body, self.payload = raw_body, payload

    def invalid(self, fields: list[dict[str, str]], *, stage: str = "validation",
                error_type: str = "validation_error") -> IngestResult:
        """A malformed signal: 422 with every field error."""
        return self._rejected(fields, stage, error_type, http_status=422)

    def refused(self, fields: list[dict[str, str]], *, stage: str,
                error_type: str) -> IngestResult:
        """A well-formed signal refused for a business reason (a replay): 200 REJECTED, so
        TradingView does not treat it as a delivery failure."""
        return self._rejected(fields, stage, error_type, http_status=200)

    def _rejected(self, fields: list[dict[str, str]], stage: str, error_type: str, *,
                  http_status: int) -> IngestResult:
        message = "Invalid signal: " + "; ".join(f"{f['field']}: {f['message']}" for f in fields)
        self._record(stage, error_type, message, {"fields": fields})
        return IngestResult("REJECTED", message, http_status, error_code=error_type,
                            details={"fields": fields})

    def conflict(self, existing: Signal) -> IngestResult:
        message = "idempotency key reused with a different body"
        details = {"idempotency_key": existing.idempotency_key, "signal_id": str(existing.id)}
        self._record("deduplication", "idempotency_conflict", message, details)
        return IngestResult("REJECTED", message, 200, signal_id=existing.id,
                            error_code="idempotency_conflict", details=details)

    def _record(self, stage: str, error_type: str, message: str,
                details: dict[str, Any]) -> None:
        self.session.add(ProcessingError(
            user_id=self.intake.owner_id, endpoint_id=self.intake.endpoint_id,
            correlation_id=self.correlation_id, stage=stage, error_type=error_type,
            message=storable_text(message)[:4000], details=details,
            raw_body=redacted_body(self.raw_body, self.payload, self.intake.auth.secret),
            received_at=self.now))
        self.session.flush()
        log.info("signal_rejected", stage=stage, error_type=error_type,
                 endpoint_id=str(self.intake.endpoint_id))


def redacted_body(raw_body: bytes, payload: Any, secret: str) -> str:
    """The body as stored with an error: without its secret, storable, at most 64 KiB."""
    if isinstance(payload, dict) and "secret" in payload:
        text = json.dumps(_without_secret(payload), ensure_ascii=False)
    else:
        text = raw_body.decode("utf-8", "replace")
    if secret:
        text = text.replace(secret, REDACTED)
    return storable_text(text)[:MAX_BODY_BYTES]


def storable_text(text: str) -> str:
    """`text` without what a PostgreSQL text column refuses (NUL, lone surrogates)."""
    return text.replace("\x00", "\ufffd").encode("utf-8", "replace").decode("utf-8")


def _without_secret(payload: dict[str, Any]) -> dict[str, Any]:
    return {key: value for key, value in payload.items() if key != "secret"}


def _no_constant(name: str) -> Any:
    raise ValueError(f"{name} is not a number JSON allows")


def _body_error(message: str) -> dict[str, str]:
    return {"field": "body", "message": message, "type": "json_invalid"}


def _inspect(value: Any) -> tuple[int, bool]:
    """Nesting depth, and whether any key or string holds a lone surrogate; iteratively, as
    a recursive walk could itself overflow."""
    deepest, surrogate, stack = 0, False, [(value, 1)]
    while stack:
        item, level = stack.pop()
        deepest = max(deepest, level)
        if isinstance(item, str):
            surrogate = surrogate or _has_surrogate(item)
        elif isinstance(item, dict):
            stack.extend((key, level) for key in item)
            stack.extend((child, level + 1) for child in item.values())
        elif isinstance(item, list):
            stack.extend((child, level + 1) for child in item)
    return deepest, surrogate


def _has_surrogate(text: str) -> bool:
    return any("\ud800" <= char <= "\udfff" for char in text)


# --- reads ----------------------------------------------------------------------------------

def list_signals(*, session: Session, owner_id: uuid.UUID, symbol: str | None = None,
                 status: str | None = None, origin: str | None = None, limit: int = 50,
                 offset: int = 0) -> tuple[list[Signal], int]:
    """The owner's signals, newest first, with the total matching the filters."""
    return SignalRepository(session, owner_id).page(
        {Signal.symbol: symbol.strip().upper() if symbol else None, Signal.status: status,
         Signal.origin: origin},
        order_by=[Signal.received_at.desc(), Signal.id.desc()], limit=limit, offset=offset)


def get_signal(*, session: Session, owner_id: uuid.UUID, signal_id: uuid.UUID) -> Signal:
    return SignalRepository(session, owner_id).get(signal_id)


def list_processing_errors(*, session: Session, owner_id: uuid.UUID, stage: str | None = None,
                           endpoint_id: uuid.UUID | None = None, limit: int = 50,
                           offset: int = 0) -> tuple[list[ProcessingError], int]:
    """The owner's processing errors, newest first."""
    return ProcessingErrorRepository(session, owner_id).page(
        {ProcessingError.stage: stage, ProcessingError.endpoint_id: endpoint_id},
        order_by=[ProcessingError.received_at.desc(), ProcessingError.id.desc()],
        limit=limit, offset=offset)
