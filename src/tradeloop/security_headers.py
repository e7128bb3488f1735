"""The security headers of every response: the Content-Security-Policy and its neighbours.

Pure ASGI middleware (not Starlette's BaseHTTPMiddleware, which runs the app in a task and
buffers), so the webhooks' fast path pays a function call and a header list per request.
"""

from __future__ import annotations

from collections.abc import Mapping

from starlette.types import ASGIApp, Message, Receive, Scope, Send

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
