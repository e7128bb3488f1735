"""Signal intake (seed 004): authenticate, validate, deduplicate, store as the outbox.

An ACCEPTED signal is one `queued` row in `signals`, committed by the caller's unit of work
before it answers; that row is the durable outbox a processor claims later, so a crash after
the answer loses nothing. Business outcomes (rejections, duplicates) are results, never
exceptions, so that the processing_errors row they write is committed with the answer.
Services flush but never commit.
"""

from __future__ import annotations

import hashlib
import json
import time
import uuid
from collections.abc import Collection, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any, NamedTuple

import structlog
from pydantic import ValidationError
from sqlalchemy.orm import Session

from tradeloop.db import utcnow
from tradeloop.errors import AppError, NotFoundError, validation_fields
from tradeloop.signals.models import SignalOrigin, SignalStatus
from tradeloop.signals.schemas import MAX_KEY_LENGTH, has_surrogate
from tradeloop.webhooks.auth import WEBHOOK_ID_HEADER, EndpointAuth, verify_request
from tradeloop.webhooks.models import AuthMode
from tradeloop.webhooks.repository import IntakeStore
from tradeloop.webhooks.schemas import WebhookSignalIn

log = structlog.get_logger(__name__)

MAX_BODY_BYTES = 64 * 1024
MAX_JSON_DEPTH = 32
DEFAULT_REPLAY_WINDOW = timedelta(hours=24)
# Senders' clocks drift; a signal from further in the future is refused like a stale one.
MAX_CLOCK_SKEW = timedelta(minutes=5)
DEFAULT_ENDPOINT_MODES = frozenset({AuthMode.X_SIGNATURE.value, AuthMode.BODY_SECRET.value})
REDACTED = "[REDACTED]"
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


@dataclass(frozen=True)
class Delivery:
    """One webhook request as the intake sees it (no HTTP objects).

    `received_at` is when it arrived (arrival order is processing order); `started` its
    `time.perf_counter()` then, so that the signal keeps its intake time.
    """

    endpoint_key: str | None  # None: the default `POST /webhook`
    raw_body: bytes
    headers: Mapping[str, str]
    client_ip: str | None
    correlation_id: str | None = None
    received_at: datetime = field(default_factory=utcnow)
    started: float | None = None


# A webhook's outcome: an answer, or the error (401/403/404) that stored nothing.
Outcome = IngestResult | AppError
# (owner id, idempotency key): what the unique index makes unique.
_OwnedKey = tuple[uuid.UUID, str]


@dataclass(frozen=True)
class _Item:
    """An authenticated signal body, not yet validated."""

    intake: Intake
    raw_body: bytes
    parsed: ParsedBody
    webhook_id: str | None
    correlation_id: str | None
    now: datetime
    started: float | None


@dataclass(frozen=True)
class _Candidate:
    """A valid signal waiting for deduplication."""

    item: _Item
    signal_in: WebhookSignalIn
    key: str
    digest: str
    failure: _Failure

    @property
    def owned_key(self) -> _OwnedKey:
        return self.item.intake.owner_id, self.key


class _Stored(NamedTuple):
    id: uuid.UUID
    idempotency_key: str
    body_hash: str
    status: str


def default_intake(*, store: IntakeStore, webhook_secret: str) -> Intake:
    """`POST /webhook`: owned by the earliest admin, WEBHOOK_SECRET, header or body secret."""
    owner_id = store.first_admin_id()
    if owner_id is None:
        raise NotFoundError("The default webhook endpoint has no owner yet: create an admin "
                            "account first", code="no_admin")
    return Intake(owner_id, None, EndpointAuth(webhook_secret, DEFAULT_ENDPOINT_MODES))


def endpoint_intakes(*, store: IntakeStore,
                     endpoint_keys: Collection[str]) -> dict[str, Intake]:
    """`POST /webhook/{endpoint_key}`: the active endpoints among `endpoint_keys`, one query."""
    if not endpoint_keys:
        return {}
    rows = store.active_endpoints(set(endpoint_keys))
    return {key: Intake(owner_id, endpoint_id,
                        EndpointAuth(secret, frozenset(modes), tuple(allowlist)))
            for key, owner_id, endpoint_id, secret, modes, allowlist in rows}


def parse_body(raw_body: bytes) -> ParsedBody:
    """JSON whatever the content type (TradingView posts JSON as text/plain)."""
    try:
        text = raw_body.decode("utf-8-sig")
        payload = json.loads(text, parse_constant=_no_constant)
    except UnicodeDecodeError as exc:
        return ParsedBody(None, [_body_error(f"Body is not UTF-8 ({exc.reason})")])
    except json.JSONDecodeError as exc:
        return ParsedBody(None, [_body_error(
            f"Body is not valid JSON: {exc.msg} at line {exc.lineno} column {exc.colno}")])
    except (ValueError, RecursionError) as exc:
        return ParsedBody(None, [_body_error(f"Body is not valid JSON: {exc}")])
    if not isinstance(payload, dict):
        return ParsedBody(payload, [_body_error("Body must be a JSON object")])
    # Cheap bounds before walking the payload: nesting takes brackets, and a lone surrogate
    # can only come from a \u escape (a UTF-8 body cannot hold one).
    if text.count("{") + text.count("[") <= MAX_JSON_DEPTH and "\\u" not in text:
        return ParsedBody(payload)
    depth, surrogate = _inspect(payload)
    if depth > MAX_JSON_DEPTH:
        return ParsedBody(payload, [_body_error(f"JSON nested deeper than {MAX_JSON_DEPTH}")])
    if surrogate:
        # Unencodable as UTF-8, so neither storable nor checkable field by field.
        return ParsedBody(payload, [_body_error("Body contains a lone unicode surrogate "
                                                "escape (\\ud800-\\udfff)")])
    return ParsedBody(payload)


def receive_webhooks(*, store: IntakeStore, deliveries: Sequence[Delivery],
                     webhook_secret: str,
                     replay_window: timedelta = DEFAULT_REPLAY_WINDOW) -> list[Outcome]:
    """Webhook requests in one unit of work, one outcome each, in order.

    Each is authenticated first: an AppError outcome (401/403/404) stores nothing. The rest
    are validated, deduplicated and queued together, as if ingested one after the other.
    In the store's unit of work (IntakeStore.opened): the intake's few statements are most of
    a webhook's latency.
    """
    intakes = _intakes(store, deliveries, webhook_secret)
    outcomes: dict[int, Outcome] = {}
    items: list[tuple[int, _Item]] = []
    for index, (delivery, intake) in enumerate(zip(deliveries, intakes, strict=True)):
        authenticated = _authenticate(delivery, intake)
        if isinstance(authenticated, AppError):
            outcomes[index] = authenticated
        else:
            items.append((index, authenticated))
    results = _ingest(store, [item for _, item in items], replay_window)
    outcomes.update((index, result) for (index, _), result in zip(items, results, strict=True))
    return [outcomes[index] for index in range(len(deliveries))]


def ingest_signal(*, session: Session, intake: Intake, raw_body: bytes, parsed: ParsedBody,
                  webhook_id: str | None = None, correlation_id: str | None = None,
                  now: datetime | None = None,
                  replay_window: timedelta = DEFAULT_REPLAY_WINDOW,
                  started: float | None = None) -> IngestResult:
    """Validate, deduplicate and queue one authenticated signal (live strategies, tests)."""
    item = _Item(intake, raw_body, parsed, webhook_id, correlation_id, now or utcnow(), started)
    return _ingest(IntakeStore.of_session(session), [item], replay_window)[0]


def _intakes(store: IntakeStore, deliveries: Sequence[Delivery],
             webhook_secret: str) -> list[Intake | AppError]:
    """Where each delivery lands, with one query per kind of endpoint in the batch."""
    by_key = endpoint_intakes(store=store, endpoint_keys={
        d.endpoint_key for d in deliveries if d.endpoint_key is not None})
    default: Intake | AppError | None = None
    if any(d.endpoint_key is None for d in deliveries):
        try:
            default = default_intake(store=store, webhook_secret=webhook_secret)
        except AppError as exc:
            default = exc
    unknown = NotFoundError("Unknown or inactive webhook endpoint")
    return [default if d.endpoint_key is None else by_key.get(d.endpoint_key, unknown)
            for d in deliveries]  # type: ignore[misc]


def _authenticate(delivery: Delivery, intake: Intake | AppError) -> _Item | AppError:
    """Parse and check the caller's credentials; an AppError when they fail."""
    if isinstance(intake, AppError):
        return intake
    parsed = parse_body(delivery.raw_body)
    try:
        verify_request(auth=intake.auth, raw_body=delivery.raw_body, headers=delivery.headers,
                       payload=parsed.payload, client_ip=delivery.client_ip,
                       now=delivery.received_at)
    except AppError as exc:
        return exc
    webhook_id = {k.lower(): v for k, v in delivery.headers.items()}.get(WEBHOOK_ID_HEADER)
    return _Item(intake, delivery.raw_body, parsed, webhook_id, delivery.correlation_id,
                 delivery.received_at, delivery.started)


def _ingest(store: IntakeStore, items: Sequence[_Item],
            replay_window: timedelta) -> list[IngestResult]:
    """Validate, deduplicate and queue authenticated signals, as if one after the other."""
    results: dict[int, IngestResult] = {}
    pending: list[tuple[int, _Candidate]] = []
    for position, item in enumerate(items):
        checked = _validate(store, item)
        if isinstance(checked, IngestResult):
            results[position] = checked
        else:
            pending.append((position, checked))
    while pending:
        unsettled = _dedup_round(store, pending, results, replay_window)
        if len(unsettled) == len(pending):
            raise RuntimeError("signal deduplication made no progress")  # a broken index
        pending = unsettled
    return [results[position] for position in range(len(items))]


def _validate(store: IntakeStore, item: _Item) -> IngestResult | _Candidate:
    failure = _Failure(store, item)
    if item.parsed.errors:
        return failure.invalid(item.parsed.errors)
    try:
        signal_in = WebhookSignalIn.model_validate(item.parsed.payload)
    except ValidationError as exc:
        return failure.invalid(validation_fields(exc.errors()))
    webhook_id = (item.webhook_id or "").strip() or None
    if webhook_id and (len(webhook_id) > MAX_KEY_LENGTH or not webhook_id.isprintable()):
        return failure.invalid([{"field": "webhook-id", "type": "value_error",
                                 "message": f"At most {MAX_KEY_LENGTH} printable characters"}])
    return _Candidate(item, signal_in, idempotency_key(signal_in, webhook_id),
                      body_hash(item.parsed.payload), failure)


def _dedup_round(store: IntakeStore, pending: list[tuple[int, _Candidate]],
                 results: dict[int, IngestResult],
                 replay_window: timedelta) -> list[tuple[int, _Candidate]]:
    """Settle the first signal of each key in `pending` and the later ones whose key is then
    stored; returns the rest for another round (later signals whose key's first signal was
    refused, so that they are judged on their own).

    Timely signals are inserted straight away (one statement) and the unique index skips
    keys already stored; only those, and signals outside the replay window (a stored one is
    a duplicate, not a replay), are looked up (one query).
    """
    firsts: dict[_OwnedKey, tuple[int, _Candidate]] = {}
    repeats: list[tuple[int, _Candidate]] = []
    for position, candidate in pending:
        if candidate.owned_key in firsts:
            repeats.append((position, candidate))
        else:
            firsts[candidate.owned_key] = (position, candidate)
    fresh: list[tuple[int, _Candidate, dict[str, Any]]] = []
    untimely: list[tuple[int, _Candidate, dict[str, str]]] = []
    for position, candidate in firsts.values():
        problem = _timing_problem(candidate.signal_in.timestamp, candidate.item.now,
                                  replay_window)
        if problem is None:
            fresh.append((position, candidate, _signal_row(candidate)))
        else:
            untimely.append((position, candidate, problem))
    inserted = store.insert_new([row for _, _, row in fresh])
    stored: dict[_OwnedKey, _Stored] = {}
    skipped: list[tuple[int, _Candidate]] = []
    for position, candidate, row in fresh:
        if row["id"] in inserted:
            stored[candidate.owned_key] = _Stored(row["id"], row["idempotency_key"],
                                                  row["body_hash"], row["status"])
            results[position] = _accepted(candidate, row)
        else:  # stored before (a repeat), or by a concurrent request a moment ago
            skipped.append((position, candidate))
    stored.update(_stored_by_key(store, [c.owned_key for _, c in skipped]
                                 + [c.owned_key for _, c, _ in untimely]))
    for position, candidate, problem in untimely:
        if candidate.owned_key in stored:
            results[position] = _repeat(stored[candidate.owned_key], candidate)
        else:
            results[position] = candidate.failure.refused(
                [problem], stage="replay", error_type=problem["type"])
    later = []
    for position, candidate in [*skipped, *repeats]:
        if candidate.owned_key in stored:
            results[position] = _repeat(stored[candidate.owned_key], candidate)
        else:
            later.append((position, candidate))
    return later


def _accepted(candidate: _Candidate, row: dict[str, Any]) -> IngestResult:
    log.info("signal_accepted", signal_id=str(row["id"]), symbol=row["symbol"],
             direction=row["direction"], endpoint_id=str(candidate.item.intake.endpoint_id),
             correlation_id=candidate.item.correlation_id)
    return IngestResult("ACCEPTED", "Signal received and queued for processing", 200,
                        signal_id=row["id"])


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


def _signal_row(candidate: _Candidate) -> dict[str, Any]:
    """The new signal's row, keyed by column name (`metadata_` is stored as `metadata`)."""
    item, signal_in = candidate.item, candidate.signal_in
    # Measured before the INSERT, so that recording it costs no extra UPDATE.
    ingest_ms = (None if item.started is None
                 else round((time.perf_counter() - item.started) * 1000, 3))
    return {
        "id": uuid.uuid4(), "user_id": item.intake.owner_id,
        "endpoint_id": item.intake.endpoint_id, "origin": item.intake.origin.value,
        "source": signal_in.source, "symbol": signal_in.symbol,
        "direction": signal_in.side.value, "raw_direction": signal_in.direction,
        "timeframe": signal_in.timeframe, "signal_time": signal_in.timestamp,
        "price": signal_in.price, "score": signal_in.metadata.score,
        "confidence": signal_in.metadata.confidence,
        "metadata": signal_in.metadata.model_dump(mode="json", exclude_unset=True),
        "idempotency_key": candidate.key, "body_hash": candidate.digest,
        "status": SignalStatus.QUEUED.value, "received_at": item.now, "ingest_ms": ingest_ms,
        "correlation_id": item.correlation_id, "inserted_at": item.now, "updated_at": item.now}


def _stored_by_key(store: IntakeStore,
                   owned_keys: Collection[_OwnedKey]) -> dict[_OwnedKey, _Stored]:
    """The stored signals with these (owner, idempotency key) pairs, in one query."""
    if not owned_keys:
        return {}
    keys_by_owner: dict[uuid.UUID, list[str]] = {}
    for owner_id, key in owned_keys:
        keys_by_owner.setdefault(owner_id, []).append(key)
    return {(owner_id, row[1]): _Stored(*row)
            for owner_id, keys in keys_by_owner.items()  # one owner, but for live strategies
            for row in store.stored_by_key(owner_id, keys)}


def _repeat(existing: _Stored, candidate: _Candidate) -> IngestResult:
    if existing.body_hash == candidate.digest:
        return IngestResult("DUPLICATE", f"Signal already received (status {existing.status}); "
                            "nothing changed", 200, signal_id=existing.id)
    return candidate.failure.conflict(existing)


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

    def __init__(self, store: IntakeStore, item: _Item):
        self.store, self.item = store, item

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

    def conflict(self, existing: _Stored) -> IngestResult:
        message = "idempotency key reused with a different body"
        details = {"idempotency_key": existing.idempotency_key, "signal_id": str(existing.id)}
        self._record("deduplication", "idempotency_conflict", message, details)
        return IngestResult("REJECTED", message, 200, signal_id=existing.id,
                            error_code="idempotency_conflict", details=details)

    def _record(self, stage: str, error_type: str, message: str,
                details: dict[str, Any]) -> None:
        item = self.item
        self.store.record_error({
            "id": uuid.uuid4(), "user_id": item.intake.owner_id,
            "endpoint_id": item.intake.endpoint_id, "correlation_id": item.correlation_id,
            "stage": stage, "error_type": error_type, "message": storable_text(message)[:4000],
            "details": details,
            "raw_body": redacted_body(item.raw_body, item.parsed.payload, item.intake.auth.secret),
            "received_at": item.now})
        log.info("signal_rejected", stage=stage, error_type=error_type,
                 endpoint_id=str(item.intake.endpoint_id), correlation_id=item.correlation_id)


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
            surrogate = surrogate or has_surrogate(item)
        elif isinstance(item, dict):
            stack.extend((key, level) for key in item)
            stack.extend((child, level + 1) for child in item.values())
        elif isinstance(item, list):
            stack.extend((child, level + 1) for child in item)
    return deepest, surrogate
