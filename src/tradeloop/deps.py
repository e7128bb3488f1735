"""Request-scoped dependencies shared by every router: the unit of work, the settings, and
the check of JSON bodies the app applies to every route."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Annotated

from fastapi import Depends, Request
from sqlalchemy.orm import Session

from tradeloop.db import Database
from tradeloop.errors import FieldValidationError, validation_fields
from tradeloop.ratelimit import RateLimiter
from tradeloop.schema_types import non_finite_numbers, strings_with_nul
from tradeloop.settings import Settings

# Methods that never change state (RFC 9110 "safe"): their requests read in a deferred
# transaction, so on SQLite they never wait for the write lock another connection holds.
SAFE_METHODS = frozenset({"GET", "HEAD", "OPTIONS"})


def get_database(request: Request) -> Database:
    """The app's database, for handlers that open their own short units of work."""
    return request.app.state.db


def get_session(request: Request) -> Iterator[Session]:
    """The request's session, shared by its dependencies (the caller's identity included).

    A safe request (GET, HEAD) reads in a read session that never takes SQLite's write lock;
    any other request is one unit of work: committed when the endpoint returns, rolled back
    when it raises. A GET that must write declares WriteSessionDep.
    """
    db = get_database(request)
    opened = db.read_session() if request.method in SAFE_METHODS else db.unit_of_work()
    with opened as session:
        yield session


def get_write_session(request: Request) -> Iterator[Session]:
    """A unit of work whatever the method: for the rare safe request that records something."""
    with get_database(request).unit_of_work() as session:
        yield session


def get_read_session(request: Request) -> Iterator[Session]:
    """A read session whatever the method: for a POST that only reads (a preview, a check),
    so that on SQLite it neither waits for nor takes the write lock."""
    with get_database(request).read_session() as session:
        yield session


def get_settings_dep(request: Request) -> Settings:
    """The app's settings."""
    return request.app.state.settings


def get_rate_limiter(request: Request) -> RateLimiter:
    """The app's rate limiter (its counters are shared by every request)."""
    return request.app.state.rate_limiter


def client_address(request: Request) -> str:
    """The client's IP address (behind a trusted proxy, the one it forwarded)."""
    return request.client.host if request.client else "unknown"


async def refuse_unstorable_values(request: Request) -> None:
    """422 naming the field when a route's JSON body holds NaN or an infinity (`1e400`), or a
    string with a NUL character.

    Typed fields could refuse them one by one, but free-form ones (metadata, variables,
    params) would take them and store null (or fail at the database): the body is checked as
    a whole, once FastAPI has parsed it (the parsed document is cached on the request, so
    nothing is parsed twice).
    """
    route = request.scope.get("route")
    if getattr(route, "body_field", None) is None or not _declares_json(request):
        return
    if not await request.body():
        return
    document = await request.json()
    problems = [
        {"loc": ("body", *location), "type": "finite_number",
         "msg": "must be a finite number (NaN, Infinity and numbers beyond ±1.8e308 are "
                "refused)"} for location in non_finite_numbers(document)
    ] + [
        {"loc": ("body", *location), "type": "nul_character",
         "msg": "must not contain a NUL character (\\u0000)"}
        for location in strings_with_nul(document)
    ]
    if problems:
        raise FieldValidationError(validation_fields(problems))


def _declares_json(request: Request) -> bool:
    # FastAPI parses a body as JSON for these media types only (others stay bytes).
    media_type = request.headers.get("content-type", "").split(";")[0].strip().lower()
    return media_type == "application/json" or (
        media_type.startswith("application/") and media_type.endswith("+json"))


# The sessions end with the endpoint function ("function" scope), before the answer is sent:
# FastAPI's default would commit after the client already has its 2xx, and on SQLite hold the
# write lock while the answer goes out.
DatabaseDep = Annotated[Database, Depends(get_database)]
SessionDep = Annotated[Session, Depends(get_session, scope="function")]
WriteSessionDep = Annotated[Session, Depends(get_write_session, scope="function")]
ReadSessionDep = Annotated[Session, Depends(get_read_session, scope="function")]
SettingsDep = Annotated[Settings, Depends(get_settings_dep)]
RateLimiterDep = Annotated[RateLimiter, Depends(get_rate_limiter)]
