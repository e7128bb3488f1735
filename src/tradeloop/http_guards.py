"""Pure ASGI middleware every response and request body passes: security headers, body limits.

Pure ASGI (not Starlette's BaseHTTPMiddleware, which runs the app in a task and buffers), so
the webhooks' fast path pays a function call and a header list per request, nothing more.
"""

from __future__ import annotations

import asyncio
from collections.abc import Mapping
from typing import Any

from starlette.exceptions import HTTPException
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from tradeloop.errors import send_error

# No inline script or style (pages load theirs from /static), nothing from another host,
# never framed, no <base> or plugin tricks, forms post to this site only.
CSP_DIRECTIVES = {
    "default-src": "'self'", "script-src": "'self'", "style-src": "'self'",
    "img-src": "'self' data:", "frame-ancestors": "'none'", "base-uri": "'none'",
    "form-action": "'self'", "object-src": "'none'",
}


def content_security_policy(overrides: Mapping[str, str] | None = None) -> str:
    """The policy of every response; a page whose vendor bundle needs more (ReDoc,
    web/docs.py) sends its own with some directives replaced by `overrides`."""
    directives = {**CSP_DIRECTIVES, **(overrides or {})}
    return "; ".join(f"{name} {value}" for name, value in directives.items())


CONTENT_SECURITY_POLICY = content_security_policy()
SECURITY_HEADERS: tuple[tuple[bytes, bytes], ...] = (
    (b"content-security-policy", CONTENT_SECURITY_POLICY.encode()),
    (b"x-content-type-options", b"nosniff"),
    # frame-ancestors for today's browsers, X-Frame-Options for older ones.
    (b"x-frame-options", b"DENY"),
    (b"referrer-policy", b"same-origin"),
)
# One year, the usual preload-list minimum; no includeSubDomains: a self-hosted server does
# not speak for its neighbours on the same domain.
HSTS_HEADER = (b"strict-transport-security", b"max-age=31536000")


class SecurityHeadersMiddleware:
    """Add the security headers to every response (pages, API, static files, errors, 404s),
    and HSTS when the request came over https (as uvicorn reports the scheme, X-Forwarded-Proto
    included when the proxy is trusted). A header the response already has is kept: a page
    may set a stricter policy of its own."""

    def __init__(self, app: ASGIApp):
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        added = SECURITY_HEADERS
        if scope.get("scheme") == "https":
            added = (*SECURITY_HEADERS, HSTS_HEADER)

        async def send_with_headers(message: Message) -> None:
            if message["type"] == "http.response.start":
                headers = list(message.get("headers", ()))
                present = {name.lower() for name, _ in headers}
                headers.extend(header for header in added if header[0] not in present)
                message["headers"] = headers
            await send(message)

        await self.app(scope, receive, send_with_headers)


# The rest of the body is never read: closing the connection after the answer (uvicorn does
# on this header) frees it, instead of leaving a sender to go on trickling into it.
CLOSE_CONNECTION = {"connection": "close"}


class RequestBodyTooLarge(HTTPException):
    """Raised while the body streams in; the app's handler for HTTPException answers 413."""

    def __init__(self, limit: int):
        super().__init__(413, f"Request body larger than {limit} bytes", CLOSE_CONNECTION)


class RequestBodyTimeout(HTTPException):
    def __init__(self, timeout_s: float):
        super().__init__(408, f"Request body not received within {timeout_s:g} s",
                         CLOSE_CONNECTION)


class RequestBodyGuard:
    """Bound every request body in size and in time, before anything parses it.

    A declared Content-Length over the limit is answered 413 at once, without calling the app.
    A chunked body (or one longer than declared) is counted while it streams: the read that
    crosses the limit raises `RequestBodyTooLarge`. The whole body must arrive within
    `timeout_s` of the request's start, else the read raises `RequestBodyTimeout` (408):
    a client trickling bytes cannot hold a connection and a worker forever (uvicorn's own
    timeouts cover idle keep-alive connections, not a slow body). FastAPI passes both
    exceptions through its body parsing to the app's HTTPException handler; raised outside
    it (a middleware reading the body), they are answered here.

    `route_limits` maps a path (and everything below it) to its own limit, or to None for
    routes that enforce one themselves (the webhooks); the deadline applies everywhere.
    """

    def __init__(self, app: ASGIApp, *, max_bytes: int, timeout_s: float,
                 route_limits: Mapping[str, int | None] | None = None):
        self.app = app
        self.max_bytes = max_bytes
        self.timeout_s = timeout_s
        self.route_limits = tuple((route_limits or {}).items())

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        limit = self._limit_for(scope["path"])
        declared = declared_length(scope)
        if limit is not None and declared is not None and declared > limit:
            await _answer(send, RequestBodyTooLarge(limit))
            return
        guarded = _GuardedReceive(receive, limit, self.timeout_s)
        started = False

        async def tracking_send(message: Message) -> None:
            nonlocal started
            started = True
            await send(message)

        try:
            await self.app(scope, guarded, tracking_send)
        except (RequestBodyTooLarge, RequestBodyTimeout) as exc:
            if started:
                raise
            await _answer(send, exc)

    def _limit_for(self, path: str) -> int | None:
        for prefix, limit in self.route_limits:
            if path == prefix or path.startswith(prefix + "/"):
                return limit
        return self.max_bytes


class _GuardedReceive:
    """`receive` counting the body's bytes and bounding its arrival by a deadline.

    The deadline is one timer per request, set at the first read, cancelled when the body is
    complete: when it fires during a read, it cancels the reading task, and that read raises
    RequestBodyTimeout; between reads, the next read does. (asyncio.timeout around each read
    costs several times more, on every request of the webhooks' fast path.)
    """

    __slots__ = ("complete", "expired", "limit", "receive", "received", "task", "timeout_s",
                 "timer", "waiting")

    def __init__(self, receive: Receive, limit: int | None, timeout_s: float):
        self.receive = receive
        self.limit = limit
        self.timeout_s = timeout_s
        self.received = 0
        self.complete = False
        self.expired = False
        self.waiting = False
        self.task: asyncio.Task[Any] | None = None
        self.timer: asyncio.TimerHandle | None = None

    async def __call__(self) -> Message:
        if self.complete:
            # Later calls wait for the client to disconnect (streaming responses): no deadline.
            return await self.receive()
        message = await self._read_before_deadline()
        if message["type"] != "http.request":
            self._finish()
            return message
        self.received += len(message.get("body", b""))
        if self.limit is not None and self.received > self.limit:
            self._finish()
            raise RequestBodyTooLarge(self.limit)
        if not message.get("more_body", False):
            self._finish()
        return message

    async def _read_before_deadline(self) -> Message:
        if self.expired:
            raise RequestBodyTimeout(self.timeout_s)
        self.task = asyncio.current_task()
        if self.timer is None:
            loop = asyncio.get_running_loop()
            self.timer = loop.call_at(loop.time() + self.timeout_s, self._expire)
        self.waiting = True
        try:
            return await self.receive()
        except asyncio.CancelledError:
            if self.expired and self.task is not None and self.task.uncancel() == 0:
                raise RequestBodyTimeout(self.timeout_s) from None
            raise
        finally:
            self.waiting = False

    def _expire(self) -> None:
        self.expired = True
        if self.waiting and self.task is not None:
            self.task.cancel()

    def _finish(self) -> None:
        self.complete = True
        if self.timer is not None:
            self.timer.cancel()


async def _answer(send: Send, exc: RequestBodyTooLarge | RequestBodyTimeout) -> None:
    code = "payload_too_large" if exc.status_code == 413 else "request_timeout"
    await send_error(send, exc.status_code, code, exc.detail, [(b"connection", b"close")])


def declared_length(scope: Scope) -> int | None:
    """The request's Content-Length, or None when absent (chunked) or unreadable."""
    for name, value in scope["headers"]:
        if name == b"content-length":
            try:
                return int(value)
            except ValueError:
                return None
    return None
