"""Who is calling: bearer API tokens or the session cookie, as `CurrentUser` / `AdminUser`;
and whose rows an aggregate (metrics, statistics, health figures) may count for them."""

from __future__ import annotations

import hmac
import uuid
from dataclasses import dataclass
from typing import Annotated, Literal

from fastapi import BackgroundTasks, Depends, Query, Request
from sqlalchemy.orm import Session

from tradeloop.accounts import service
from tradeloop.accounts.models import TokenContext, User, UserToken
from tradeloop.db import READ_ONLY_KEY, Database
from tradeloop.deps import DatabaseDep, RateLimiterDep, SessionDep, SettingsDep, client_address
from tradeloop.errors import ForbiddenError, NotFoundError, UnauthorizedError, answers

SESSION_COOKIE = "tradeloop_session"


@dataclass(frozen=True)
class Authenticated:
    user: User
    token: UserToken


def bearer_token(request: Request) -> str | None:
    header = request.headers.get("authorization", "")
    scheme, _, value = header.partition(" ")
    return value.strip() if scheme.lower() == "bearer" and value.strip() else None


def identify_caller(request: Request, session: Session) -> Authenticated | None:
    """The caller's identity from `Authorization: Bearer` or the session cookie, if any."""
    raw = bearer_token(request)
    context = TokenContext.API
    if raw is None:
        raw, context = request.cookies.get(SESSION_COOKIE), TokenContext.SESSION
    if not raw:
        return None
    found = service.user_for_token(session=session, raw_token=raw, context=context)
    return Authenticated(*found) if found else None


def optional_auth(request: Request, session: SessionDep, db: DatabaseDep,
                  after_response: BackgroundTasks) -> Authenticated | None:
    """The caller's identity (see `identify_caller`), its token's use recorded."""
    auth = identify_caller(request, session)
    if auth is not None and service.token_use_is_stale(auth.token):
        _record_token_use(session, db, after_response, auth.token.id)
    return auth


def _record_token_use(session: Session, db: Database, after_response: BackgroundTasks,
                      token_id: uuid.UUID) -> None:
    # A read request must not take the write lock for this: it is recorded once the answer
    # has gone, in a unit of work of its own (on a worker thread, off the event loop).
    if session.info.get(READ_ONLY_KEY):
        after_response.add_task(_record_token_use_later, db, token_id)
    else:
        service.record_token_use(session=session, token_id=token_id)


def _record_token_use_later(db: Database, token_id: uuid.UUID) -> None:
    with db.unit_of_work() as session:
        service.record_token_use(session=session, token_id=token_id)


def detached_auth(request: Request, db: DatabaseDep,
                  after_response: BackgroundTasks) -> Authenticated | None:
    """`optional_auth` read in a short read session of its own, closed before the endpoint
    runs: the user and token come back detached (loaded, bound to no session).

    For endpoints that open their own units of work around slow work (an LLM call, parsing
    an upload): the request's session would hold a transaction (on SQLite, for a POST, the
    write lock) from the token lookup to the answer.
    """
    if not (bearer_token(request) or request.cookies.get(SESSION_COOKIE)):
        return None  # nothing to look up: no database round trip
    with db.read_session() as session:
        return optional_auth(request, session, db, after_response)


MISSING_CREDENTIALS = ("Missing, invalid or expired credentials: send "
                       "'Authorization: Bearer <token>' or log in")


@answers(401)
def require_auth(auth: Annotated[Authenticated | None, Depends(optional_auth)]) -> Authenticated:
    if auth is None:
        raise UnauthorizedError(MISSING_CREDENTIALS)
    return auth


def require_user(auth: Annotated[Authenticated, Depends(require_auth)]) -> User:
    return auth.user


@answers(401)
def require_detached_user(
        auth: Annotated[Authenticated | None, Depends(detached_auth)]) -> User:
    """`require_user` without the request's session (see `detached_auth`)."""
    if auth is None:
        raise UnauthorizedError(MISSING_CREDENTIALS)
    return auth.user


@answers(404)
def require_admin(user: Annotated[User, Depends(require_user)]) -> User:
    return _admin_only(user)


@answers(404)
def require_detached_admin(user: Annotated[User, Depends(require_detached_user)]) -> User:
    """`require_admin` without the request's session (see `detached_auth`)."""
    return _admin_only(user)


def _admin_only(user: User) -> User:
    # Non-admins get 404, like for anything else they may not see.
    if not user.is_admin:
        raise NotFoundError("Not found")
    return user


@answers(429)
def limit_auth_attempts(request: Request, limiter: RateLimiterDep, settings: SettingsDep) -> None:
    """Count an attempt on a login/registration/reset endpoint per client address."""
    limiter.hit(settings.auth_rate_limit, "auth", request.url.path, client_address(request))


# --- aggregates: a user's own rows; every user's only for admins and the METRICS_TOKEN --------

@dataclass(frozen=True)
class AggregateScope:
    """Whose rows an aggregate counts: one user's, or every user's (`owner_id` None)."""

    owner_id: uuid.UUID | None
    system: bool  # an admin or the METRICS_TOKEN: may see system-wide figures

    @property
    def label(self) -> Literal["user", "all"]:
        return "all" if self.owner_id is None else "user"


ScopeQuery = Annotated[Literal["me", "all"] | None, Query(
    description="me: your own rows (the default); all: every user's (admins only; the "
                "METRICS_TOKEN always counts every user's)")]


def holds_metrics_token(request: Request, settings: SettingsDep) -> bool:
    """True when the bearer token is the configured METRICS_TOKEN (a scraper, not a user)."""
    raw = bearer_token(request)
    token = settings.metrics_token.get_secret_value() if settings.metrics_token else ""
    return bool(raw and token and hmac.compare_digest(raw.encode(), token.encode()))


@answers(401)
def aggregate_caller(request: Request, settings: SettingsDep,
                     auth: Annotated[Authenticated | None, Depends(optional_auth)],
                     ) -> AggregateScope:
    """The METRICS_TOKEN (every user's rows) or a signed-in user (their own); 401 else."""
    if holds_metrics_token(request, settings):
        return AggregateScope(None, system=True)
    if auth is None:
        raise UnauthorizedError("Aggregates need 'Authorization: Bearer <API token or "
                                "METRICS_TOKEN>' or a signed-in session")
    return AggregateScope(auth.user.id, system=bool(auth.user.is_admin))


@answers(403)
def aggregate_scope(caller: Annotated[AggregateScope, Depends(aggregate_caller)],
                    scope: ScopeQuery = None) -> AggregateScope:
    """The rows an aggregate counts for the caller (see `_widened`)."""
    return _widened(caller, scope)


@answers(403)
def user_aggregate_scope(user: Annotated[User, Depends(require_user)],
                         scope: ScopeQuery = None) -> AggregateScope:
    """The same for endpoints that need a user (the METRICS_TOKEN is not one)."""
    return _widened(AggregateScope(user.id, system=bool(user.is_admin)), scope)


def _widened(caller: AggregateScope, scope: Literal["me", "all"] | None) -> AggregateScope:
    """The caller's own rows, or every user's when an admin asks `scope=all` (403 for
    anyone else asking)."""
    if caller.owner_id is None or scope != "all":
        return caller
    if not caller.system:
        raise ForbiddenError("scope=all counts every user's rows: it needs an admin account")
    return AggregateScope(None, system=True)


AuthDep = Annotated[Authenticated, Depends(require_auth)]
CurrentUser = Annotated[User, Depends(require_user)]
AdminUser = Annotated[User, Depends(require_admin)]
# The same for endpoints that hold no request session (see `detached_auth`).
DetachedUser = Annotated[User, Depends(require_detached_user)]
DetachedAdmin = Annotated[User, Depends(require_detached_admin)]
AuthRateLimit = Depends(limit_auth_attempts)
AggregateCaller = Annotated[AggregateScope, Depends(aggregate_caller)]
AggregateScopeDep = Annotated[AggregateScope, Depends(aggregate_scope)]
UserAggregateScope = Annotated[AggregateScope, Depends(user_aggregate_scope)]
