"""Pure ASGI middleware every response and request body passes: security headers, body limits.

Pure ASGI (not Starlette's BaseHTTPMiddleware, which runs the app in a task and buffers), so
the webhooks' fast path pays a function call and a header list per request, nothing more.
"""

from __future__ import annotations

import asyncio
from collections.abc import Mapping

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


class RequestBodyTooLarge(HTTPException):
    """Raised while the body streams in; the app's handler for HTTPException answers 413."""

    def __init__(self, limit: int):
        super().__init__(413, f"Request body larger than {limit} bytes")


class RequestBodyTimeout(HTTPException):
    def __init__(self, timeout_s: float):
        super().__init__(408, f"Request body not received within {timeout_s:g} s")


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
            await send_error(send, 413, "payload_too_large", RequestBodyTooLarge(limit).detail)
            return
        deadline = asyncio.get_running_loop().time() + self.timeout_s
        guarded = _GuardedReceive(receive, limit, deadline, self.timeout_s)
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
            code = "payload_too_large" if exc.status_code == 413 else "request_timeout"
            await send_error(send, exc.status_code, code, exc.detail)

    def _limit_for(self, path: str) -> int | None:
        for prefix, limit in self.route_limits:
            if path == prefix or path.startswith(prefix + "/"):
                return limit
        return self.max_bytes


class _GuardedReceive:
    """`receive` counting the body's bytes and bounding its arrival by the deadline."""

    __slots__ = ("complete", "deadline", "limit", "receive", "received", "timeout_s")

    def __init__(self, receive: Receive, limit: int | None, deadline: float, timeout_s: float):
        self.receive = receive
        self.limit = limit
        self.deadline = deadline
        self.timeout_s = timeout_s
        self.received = 0
        self.complete = False

    async def __call__(self) -> Message:
        if self.complete:
            # Later calls wait for the client to disconnect (streaming responses): no deadline.
            return await self.receive()
        try:
            async with asyncio.timeout_at(self.deadline):
                message = await self.receive()
        except TimeoutError:
            raise RequestBodyTimeout(self.timeout_s) from None
        if message["type"] != "http.request":
            self.complete = True
            return message
        self.received += len(message.get("body", b""))
        if self.limit is not None and self.received > self.limit:
            raise RequestBodyTooLarge(self.limit)
        self.complete = not message.get("more_body", False)
        return message


def declared_length(scope: Scope) -> int | None:
    """The request's Content-Length, or None when absent (chunked) or unreadable."""
    for name, value in scope["headers"]:
        if name == b"content-length":
            try:
                return int(value)
            except ValueError:
                return None
    return None
