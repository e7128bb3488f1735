"""Structured logging with a correlation id bound to every line of a request or task."""

from __future__ import annotations

import json
import logging
import sys
import uuid
from contextvars import ContextVar

import structlog
from starlette.types import ASGIApp, Message, Receive, Scope, Send

_correlation_id: ContextVar[str | None] = ContextVar("correlation_id", default=None)

CORRELATION_HEADER = "X-Request-ID"
_MAX_INCOMING_ID_LENGTH = 128


def current_correlation_id() -> str | None:
    return _correlation_id.get()


def bind_correlation_id(value: str | None = None) -> str:
    """Set the correlation id for the current context (generated when not given)."""
    correlation_id = value or uuid.uuid4().hex
    _correlation_id.set(correlation_id)
    structlog.contextvars.bind_contextvars(correlation_id=correlation_id)
    return correlation_id


def _add_correlation_id(_logger: object, _name: str, event: dict) -> dict:
    correlation_id = _correlation_id.get()
    if correlation_id and "correlation_id" not in event:
        event["correlation_id"] = correlation_id
    return event


def configure_logging(level: str = "INFO", fmt: str = "json") -> None:
    """Route structlog and stdlib loggers (uvicorn, alembic, celery) through one renderer."""
    shared: list = [
        structlog.contextvars.merge_contextvars,
        _add_correlation_id,
        structlog.stdlib.add_log_level,
        structlog.stdlib.add_logger_name,
        structlog.processors.TimeStamper(fmt="iso", utc=True),
    ]
    renderer = (structlog.processors.JSONRenderer() if fmt == "json"
                else structlog.dev.ConsoleRenderer(colors=False))
    structlog.configure(
        processors=[*shared, structlog.stdlib.ProcessorFormatter.wrap_for_formatter],
        logger_factory=structlog.stdlib.LoggerFactory(),
        wrapper_class=structlog.stdlib.BoundLogger,
        cache_logger_on_first_use=True,
    )
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(structlog.stdlib.ProcessorFormatter(
        processors=[structlog.stdlib.ProcessorFormatter.remove_processors_meta,
                    structlog.processors.format_exc_info, renderer],
        foreign_pre_chain=shared,
    ))
    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel(level.upper())
    for name in ("uvicorn", "uvicorn.error", "uvicorn.access"):
        logging.getLogger(name).handlers[:] = []
        logging.getLogger(name).propagate = True


class CorrelationIdMiddleware:
    """Accept `X-Request-ID` (or generate one), bind it for the request, echo it back."""

    def __init__(self, app: ASGIApp):
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        incoming = dict(scope["headers"]).get(CORRELATION_HEADER.lower().encode())
        candidate = incoming.decode("latin-1").strip() if incoming else ""
        valid = 0 < len(candidate) <= _MAX_INCOMING_ID_LENGTH and candidate.isprintable()
        structlog.contextvars.clear_contextvars()
        correlation_id = bind_correlation_id(candidate if valid else None)

        async def send_with_header(message: Message) -> None:
            if message["type"] == "http.response.start":
                headers = list(message.get("headers", []))
                headers.append((CORRELATION_HEADER.lower().encode(), correlation_id.encode()))
                message["headers"] = headers
            await send(message)

        response_started = False

        async def tracking_send(message: Message) -> None:
            nonlocal response_started
            response_started = response_started or message["type"] == "http.response.start"
            await send_with_header(message)

        try:
            await self.app(scope, receive, tracking_send)
        except Exception:
            # Answer here rather than in Starlette's outermost error middleware, so the
            # 500 still carries the correlation id in its body and header.
            logging.getLogger("tradeloop.errors").exception("unhandled_error")
            if response_started:
                raise
            await _send_internal_error(send_with_header, correlation_id)


async def _send_internal_error(send: Send, correlation_id: str) -> None:
    body = json.dumps({"error": {
        "code": "internal_error",
        "message": "Internal server error; quote the correlation_id when reporting it",
        "details": {}, "correlation_id": correlation_id}}).encode()
    await send({"type": "http.response.start", "status": 500,
                "headers": [(b"content-type", b"application/json"),
                            (b"content-length", str(len(body)).encode())]})
    await send({"type": "http.response.body", "body": body})
