"""Webhooks API (SPEC §6): the webhooks themselves and the per-user endpoints."""

from __future__ import annotations

import time
import uuid
from collections.abc import Callable, Coroutine
from typing import Any

from fastapi import APIRouter, Request, Response, status
from fastapi.routing import APIRoute

from tradeloop.accounts.dependencies import CurrentUser
from tradeloop.db import utcnow
from tradeloop.deps import SessionDep, client_address
from tradeloop.errors import AppError
from tradeloop.logs import current_correlation_id
from tradeloop.webhooks import endpoints, service
from tradeloop.webhooks.schemas import (
    EndpointCreate,
    EndpointList,
    EndpointRead,
    EndpointUpdate,
    EndpointWithSecret,
    WebhookAnswer,
    WebhookError,
)

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


async def _receive(request: Request, endpoint_key: str | None) -> Response:
    started = time.perf_counter()
    correlation_id = current_correlation_id()
    try:
        raw_body = await read_body(request)
        delivery = service.Delivery(endpoint_key, raw_body, request.headers,
                                    client_address(request), correlation_id, utcnow(), started)
        outcome = await request.app.state.webhook_writer.submit(delivery)
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
