"""Signals API (SPEC §6): the webhooks, per-user endpoints, signals and processing errors."""

from __future__ import annotations

import functools
import time
import uuid
from collections.abc import Callable, Coroutine, Sequence
from contextlib import AbstractContextManager
from datetime import timedelta
from typing import Annotated, Any

from fastapi import APIRouter, Body, FastAPI, Query, Request, Response, status
from fastapi.routing import APIRoute

from tradeloop.accounts.dependencies import CurrentUser
from tradeloop.batching import GroupCommit
from tradeloop.db import Database, PinnedDriver, utcnow
from tradeloop.deps import SessionDep, client_address
from tradeloop.driver import DriverConnection
from tradeloop.errors import AppError, error_responses
from tradeloop.logs import current_correlation_id
from tradeloop.schema_types import Limit, Offset
from tradeloop.settings import Settings
from tradeloop.signals import endpoints, generation, positions, service
from tradeloop.signals import tasks as signal_tasks
from tradeloop.signals.models import DecisionAction, PositionStatus, SignalOrigin, SignalStatus
from tradeloop.signals.schemas import (
    EndpointCreate,
    EndpointList,
    EndpointRead,
    EndpointUpdate,
    EndpointWithSecret,
    ExecutionSummary,
    GeneratedSignalRead,
    GenerateSignalIn,
    ProcessingErrorList,
    ProcessingErrorRead,
    SignalList,
    SignalRead,
    WebhookAnswer,
    WebhookError,
)
from tradeloop.signals.trading_schemas import (
    ClosePositionIn,
    DecisionList,
    DecisionRead,
    PositionList,
    PositionRead,
    PositionSummary,
)
from tradeloop.tasks import submit

router = APIRouter(tags=["signals"])

ENDPOINTS = "/api/v1/webhook-endpoints"
SAMPLE_SIGNAL = {"source": "TradingView", "symbol": "SPY", "direction": "CALL",
                 "timeframe": "5m", "timestamp": "2024-01-29T12:00:00Z", "price": 487.12,
                 "secret": "<endpoint secret, if not signing with a header>",
                 "metadata": {"score": 85, "confidence": 0.85}}
WEBHOOK_DOC: dict[str, Any] = {
    "requestBody": {"required": True, "description": "A signal (JSON, also as text/plain)",
                    "content": {"application/json": {"example": SAMPLE_SIGNAL},
                                "text/plain": {"example": SAMPLE_SIGNAL}}}}
WEBHOOK_RESPONSES: dict[int | str, dict[str, Any]] = {
    code: {"model": WebhookAnswer, "description": text} for code, text in {
        200: "ACCEPTED (stored and queued), DUPLICATE (already received, nothing changed) or "
             "REJECTED (a replay, or an idempotency key reused with a different body)",
        401: "Missing or invalid credentials; nothing stored",
        403: "Client address not in the IP allowlist", 404: "Unknown or inactive endpoint",
        413: "Body larger than 64 KiB", 422: "REJECTED: malformed, with every invalid field",
    }.items()}


class PayloadTooLargeError(AppError):
    status_code = 413
    code = "payload_too_large"


class RequestOnlyRoute(APIRoute):
    """A route documented from its endpoint's signature like any other, but called with the
    request and its path parameters only: no per-request dependency solving. For the webhooks,
    the hot path under alert bursts (~30 µs a request less)."""

    def get_route_handler(self) -> Callable[[Request], Coroutine[Any, Any, Response]]:
        endpoint = self.endpoint

        async def handler(request: Request) -> Response:
            response: Response = await endpoint(request=request, **request.path_params)
            return response

        return handler


async def default_webhook(request: Request) -> Response:
    """The default endpoint (the first admin's): WEBHOOK_SECRET as x-signature or body secret."""
    return await _receive(request, None)


async def endpoint_webhook(endpoint_key: str, request: Request) -> Response:
    """A user's endpoint, with its own secret, auth modes and IP allowlist."""
    return await _receive(request, endpoint_key)


for _path, _endpoint in (("/webhook", default_webhook),
                         ("/webhook/{endpoint_key}", endpoint_webhook)):
    router.add_api_route(_path, _endpoint, methods=["POST"], status_code=status.HTTP_200_OK,
                         openapi_extra=WEBHOOK_DOC, responses=WEBHOOK_RESPONSES,
                         route_class_override=RequestOnlyRoute)


async def read_body(request: Request, limit: int = service.MAX_BODY_BYTES) -> bytes:
    """The raw body, refused with 413 past `limit` by Content-Length or by bytes received."""
    declared = request.headers.get("content-length", "").strip()
    if declared and (not declared.isdigit() or int(declared) > limit):
        raise PayloadTooLargeError(f"Body larger than {limit} bytes")
    chunks, size = [], 0
    # Counted while streaming: a chunked or lying sender never makes us buffer more.
    async for chunk in request.stream():
        size += len(chunk)
        if size > limit:
            raise PayloadTooLargeError(f"Body larger than {limit} bytes")
        chunks.append(chunk)
    return b"".join(chunks)


def replay_window(settings: Settings) -> timedelta:
    """SIGNAL_REPLAY_WINDOW_S as a timedelta."""
    return timedelta(seconds=settings.signal_replay_window_s)


async def _receive(request: Request, endpoint_key: str | None) -> Response:
    started = time.perf_counter()
    correlation_id = current_correlation_id()
    try:
        raw_body = await read_body(request)
        delivery = service.Delivery(endpoint_key, raw_body, request.headers,
                                    client_address(request), correlation_id, utcnow(), started)
        outcome = await webhook_intake(request.app).submit(delivery)
    except AppError as exc:
        outcome = exc
    if isinstance(outcome, AppError):
        error = WebhookError(code=outcome.code, message=outcome.message,
                             details=outcome.details, correlation_id=correlation_id)
        return _answer("REJECTED", outcome.message, outcome.status_code, started,
                       correlation_id, error=error, headers=outcome.headers)
    error = None
    if outcome.status == "REJECTED":
        error = WebhookError(code=outcome.error_code or "rejected", message=outcome.message,
                             details=outcome.details, correlation_id=correlation_id)
    return _answer(outcome.status, outcome.message, outcome.http_status, started,
                   correlation_id, signal_id=outcome.signal_id, error=error)


def webhook_intake(app: FastAPI) -> GroupCommit[service.Delivery, service.Outcome]:
    """The app's webhook writer: concurrent webhooks share one committed transaction.

    Batches go one at a time through a connection kept for them (no pool checkout or
    pre-ping round trip per batch); the retries of a failed batch run side by side on pooled
    connections.
    """
    intake = getattr(app.state, "webhook_intake", None)
    if intake is None:
        db: Database = app.state.db
        pinned = PinnedDriver(db)
        app.state.resources.callback(pinned.close)
        intake = GroupCommit(
            functools.partial(_commit_deliveries, pinned.unit_of_work, app.state.settings),
            write_alone=functools.partial(_commit_deliveries, db.driver_unit_of_work,
                                          app.state.settings))
        app.state.webhook_intake = intake
    return intake


def _commit_deliveries(unit_of_work: Callable[[], AbstractContextManager[DriverConnection]],
                       settings: Settings,
                       deliveries: Sequence[service.Delivery]) -> list[service.Outcome]:
    # Committed before anyone is answered: ACCEPTED means durably stored.
    with unit_of_work() as connection:
        outcomes = service.receive_webhooks(
            connection=connection, deliveries=deliveries,
            webhook_secret=settings.secret("WEBHOOK_SECRET"),
            replay_window=replay_window(settings))
    accepted = any(isinstance(o, service.IngestResult) and o.status == "ACCEPTED"
                   for o in outcomes)
    if accepted and settings.signal_process_on_ingest:
        # After the commit: the processor only ever sees durably queued rows.
        submit(signal_tasks.process_signal_queue.__name__)
    return outcomes


def _answer(status_: str, message: str, http_status: int, started: float,
            correlation_id: str | None, *, signal_id: uuid.UUID | None = None,
            error: WebhookError | None = None,
            headers: dict[str, str] | None = None) -> Response:
    answer = WebhookAnswer(
        status=status_, message=message, correlation_id=correlation_id,  # type: ignore[arg-type]
        processing_time_ms=round((time.perf_counter() - started) * 1000, 2),
        signal_id=signal_id, error=error)
    # Serialised by pydantic-core in one step (no dict, no json.dumps): the hot path.
    return Response(answer.model_dump_json(exclude_none=True), status_code=http_status,
                    headers=headers, media_type="application/json")


# --- per-user endpoints ----------------------------------------------------------------------

@router.get(ENDPOINTS, tags=["webhook endpoints"])
def list_endpoints(user: CurrentUser, session: SessionDep) -> EndpointList:
    """The caller's webhook endpoints (secrets are never shown again)."""
    rows = endpoints.list_endpoints(session=session, owner_id=user.id)
    return EndpointList(endpoints=[EndpointRead.model_validate(r) for r in rows],
                        total=len(rows))


@router.post(ENDPOINTS, status_code=status.HTTP_201_CREATED, tags=["webhook endpoints"])
def create_endpoint(body: EndpointCreate, user: CurrentUser,
                    session: SessionDep) -> EndpointWithSecret:
    """Create an endpoint; the answer carries its secret, shown this once."""
    endpoint = endpoints.create_endpoint(session=session, owner_id=user.id, data=body)
    return EndpointWithSecret.model_validate(endpoint)


@router.get(ENDPOINTS + "/{endpoint_id}", tags=["webhook endpoints"])
def get_endpoint(endpoint_id: uuid.UUID, user: CurrentUser,
                 session: SessionDep) -> EndpointRead:
    endpoint = endpoints.get_endpoint(session=session, owner_id=user.id,
                                      endpoint_id=endpoint_id)
    return EndpointRead.model_validate(endpoint)


@router.patch(ENDPOINTS + "/{endpoint_id}", tags=["webhook endpoints"])
def update_endpoint(endpoint_id: uuid.UUID, body: EndpointUpdate, user: CurrentUser,
                    session: SessionDep) -> EndpointRead:
    """Change name, auth modes, IP allowlist, active flag or risk settings."""
    endpoint = endpoints.update_endpoint(session=session, owner_id=user.id,
                                         endpoint_id=endpoint_id, changes=body)
    return EndpointRead.model_validate(endpoint)


@router.delete(ENDPOINTS + "/{endpoint_id}", status_code=status.HTTP_204_NO_CONTENT,
               tags=["webhook endpoints"])
def delete_endpoint(endpoint_id: uuid.UUID, user: CurrentUser, session: SessionDep) -> Response:
    """Delete an endpoint; signals it received are kept."""
    endpoints.delete_endpoint(session=session, owner_id=user.id, endpoint_id=endpoint_id)
    return Response(status_code=status.HTTP_204_NO_CONTENT)


@router.post(ENDPOINTS + "/{endpoint_id}/rotate-secret", tags=["webhook endpoints"])
def rotate_secret(endpoint_id: uuid.UUID, user: CurrentUser,
                  session: SessionDep) -> EndpointWithSecret:
    """Replace the secret (shown this once); the old one stops working at once."""
    endpoint = endpoints.rotate_secret(session=session, owner_id=user.id,
                                       endpoint_id=endpoint_id)
    return EndpointWithSecret.model_validate(endpoint)


# --- signals and processing errors -------------------------------------------------------------

@router.get("/api/v1/signals")
def list_signals(user: CurrentUser, session: SessionDep, symbol: str | None = None,
                 status_: Annotated[SignalStatus | None, Query(alias="status")] = None,
                 origin: SignalOrigin | None = None,
                 limit: Limit = 50,
                 offset: Offset = 0) -> SignalList:
    """The caller's signals, newest first."""
    rows, total = service.list_signals(
        session=session, owner_id=user.id, symbol=symbol,
        status=status_.value if status_ else None, origin=origin.value if origin else None,
        limit=limit, offset=offset)
    return SignalList(signals=[SignalRead.model_validate(r) for r in rows], total=total,
                      limit=limit, offset=offset)


@router.get("/api/v1/signals/{signal_id}")
def get_signal(signal_id: uuid.UUID, user: CurrentUser, session: SessionDep) -> SignalRead:
    signal = service.get_signal(session=session, owner_id=user.id, signal_id=signal_id)
    return SignalRead.model_validate(signal)


@router.get("/api/v1/processing-errors")
def list_processing_errors(user: CurrentUser, session: SessionDep, stage: str | None = None,
                           endpoint_id: uuid.UUID | None = None,
                           limit: Limit = 50,
                           offset: Offset = 0) -> ProcessingErrorList:
    """Why the caller's signals were refused, newest first (bodies without secrets)."""
    rows, total = service.list_processing_errors(
        session=session, owner_id=user.id, stage=stage, endpoint_id=endpoint_id, limit=limit,
        offset=offset)
    return ProcessingErrorList(
        processing_errors=[ProcessingErrorRead.model_validate(r) for r in rows], total=total,
        limit=limit, offset=offset)


# --- decisions and paper positions ------------------------------------------------------------

@router.get("/api/v1/decisions", tags=["positions"])
def list_decisions(user: CurrentUser, session: SessionDep, signal_id: uuid.UUID | None = None,
                   action: DecisionAction | None = None,
                   limit: Limit = 50,
                   offset: Offset = 0) -> DecisionList:
    """What processing decided for the caller's signals, newest first."""
    rows, total = positions.list_decisions(
        session=session, owner_id=user.id, signal_id=signal_id,
        action=action.value if action else None, limit=limit, offset=offset)
    return DecisionList(decisions=[DecisionRead.model_validate(r) for r in rows], total=total,
                        limit=limit, offset=offset)


@router.get("/api/v1/positions", tags=["positions"])
def list_positions(user: CurrentUser, session: SessionDep,
                   status_: Annotated[PositionStatus | None, Query(alias="status")] = None,
                   symbol: str | None = None,
                   limit: Limit = 50,
                   offset: Offset = 0) -> PositionList:
    """The caller's paper positions, newest first, marked to market, with their totals."""
    rows, total = positions.list_positions(
        session=session, owner_id=user.id, status=status_.value if status_ else None,
        symbol=symbol, limit=limit, offset=offset)
    totals = positions.position_totals(session=session, owner_id=user.id, symbol=symbol)
    return PositionList(positions=[PositionRead.model_validate(r) for r in rows], total=total,
                        limit=limit, offset=offset,
                        summary=PositionSummary.model_validate(totals))


@router.get("/api/v1/positions/{position_id}", tags=["positions"])
def get_position(position_id: uuid.UUID, user: CurrentUser,
                 session: SessionDep) -> PositionRead:
    row = positions.get_position(session=session, owner_id=user.id, position_id=position_id)
    return PositionRead.model_validate(row)


@router.post("/api/v1/positions/{position_id}/close", tags=["positions"],
             responses=error_responses(409))
def close_position(position_id: uuid.UUID, user: CurrentUser, session: SessionDep,
                   body: Annotated[ClosePositionIn | None, Body()] = None) -> PositionRead:
    """Close at the given price, else at the latest stored close; writes the outcome."""
    row = positions.close_position(session=session, owner_id=user.id,
                                   position_id=position_id, price=body.price if body else None)
    return PositionRead.model_validate(row)


# --- signals generated by analysis -----------------------------------------------------------

@router.post("/api/signals/generate", tags=["signals"], responses=error_responses(404, 502))
@router.post("/api/v1/signals/generate", tags=["signals"], responses=error_responses(404, 502))
def generate_signal(body: GenerateSignalIn, user: CurrentUser, session: SessionDep,
                    request: Request) -> GeneratedSignalRead:
    """Analyse a symbol with the strategy's prompt and store the answer as an `llm` signal
    (queued for a decision when the strategy is active). 502 when the analyst fails."""
    # The analyst call must not run inside the request's transaction (SQLite write lock).
    session.commit()
    generated = generation.generate_signal(
        request.app.state.db, request.app.state.settings, generation.GenerationRequest(
            owner_id=user.id, symbol=body.symbol, strategy_id=body.strategy_id,
            template_id=body.template_id, timeframe=body.timeframe, analysis=body.analysis))
    run = generated.execution
    return GeneratedSignalRead(
        signal=SignalRead.model_validate(generated.signal), queued=generated.queued,
        execution=ExecutionSummary(
            id=run.execution_id, provider=run.provider, model=run.model,
            input_tokens=run.input_tokens, output_tokens=run.output_tokens,
            cost_usd=run.cost_usd, latency_ms=run.latency_ms))
