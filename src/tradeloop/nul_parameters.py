"""Refuse NUL characters in the path and query string, with a 422 naming the parameter.

PostgreSQL cannot store or compare text containing NUL (psycopg raises DataError, a 500),
while SQLite can: a `?symbol=%00` would be a 500 on one database and a silent non-match on
the other. Refused before routing, so no endpoint has to think of it. (Request bodies are
validated field by field by their schemas.)
"""

from __future__ import annotations

from urllib.parse import parse_qsl

from starlette.responses import JSONResponse
from starlette.types import ASGIApp, Receive, Scope, Send

from tradeloop.errors import error_body

NUL = "\x00"
MESSAGE = "must not contain a NUL character (%00)"


class RejectNulParameters:
    """ASGI middleware: 422 `validation_error` for a NUL in the path or a query parameter."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        fields = nul_fields(scope) if scope["type"] == "http" else []
        if fields:
            body = error_body("validation_error", "Invalid input", {"fields": fields})
            await JSONResponse(body, status_code=422)(scope, receive, send)
            return
        await self.app(scope, receive, send)


def nul_fields(scope: Scope) -> list[dict[str, str]]:
    """The field errors of the parameters holding a NUL (none for almost every request: the
    query string is only parsed when its raw bytes hold an encoded or literal NUL)."""
    fields = [_field("path")] if NUL in scope.get("path", "") else []
    raw: bytes = scope.get("query_string", b"")
    if b"%00" in raw or b"\x00" in raw:
        # Decoded as Starlette decodes it for the endpoints.
        fields += [_field(name) for name, value in parse_qsl(raw.decode("latin-1"),
                                                               keep_blank_values=True)
                   if NUL in name or NUL in value]
    return fields


def _field(name: str) -> dict[str, str]:
    return {"field": name.replace(NUL, "\\0"), "message": MESSAGE, "type": "string_nul"}
