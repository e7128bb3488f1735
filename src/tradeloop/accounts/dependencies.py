"""Who is calling: bearer API tokens or the session cookie, as `CurrentUser` / `AdminUser`."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Annotated

from fastapi import Depends, Request

from tradeloop.accounts import service
from tradeloop.accounts.models import TokenContext, User, UserToken
from tradeloop.deps import RateLimiterDep, SessionDep, SettingsDep, client_address
from tradeloop.errors import NotFoundError, UnauthorizedError, answers

SESSION_COOKIE = "tradeloop_session"


@dataclass(frozen=True)
class Authenticated:
    user: User
    token: UserToken


def bearer_token(request: Request) -> str | None:
    header = request.headers.get("authorization", "")
    scheme, _, value = header.partition(" ")
    return value.strip() if scheme.lower() == "bearer" and value.strip() else None


def optional_auth(request: Request, session: SessionDep) -> Authenticated | None:
    """The caller's identity from `Authorization: Bearer` or the session cookie, if any."""
    raw = bearer_token(request)
    context = TokenContext.API
    if raw is None:
        raw, context = request.cookies.get(SESSION_COOKIE), TokenContext.SESSION
    if not raw:
        return None
    found = service.user_for_token(session=session, raw_token=raw, context=context)
    return Authenticated(*found) if found else None


@answers(401)
def require_auth(auth: Annotated[Authenticated | None, Depends(optional_auth)]) -> Authenticated:
    if auth is None:
        raise UnauthorizedError("Missing, invalid or expired credentials: send "
                                "'Authorization: Bearer <token>' or log in")
    return auth


def require_user(auth: Annotated[Authenticated, Depends(require_auth)]) -> User:
    return auth.user


@answers(404)
def require_admin(user: Annotated[User, Depends(require_user)]) -> User:
    # Non-admins get 404, like for anything else they may not see.
    if not user.is_admin:
        raise NotFoundError("Not found")
    return user


@answers(429)
def limit_auth_attempts(request: Request, limiter: RateLimiterDep, settings: SettingsDep) -> None:
    """Count an attempt on a login/registration/reset endpoint per client address."""
    limiter.hit(settings.auth_rate_limit, "auth", request.url.path, client_address(request))


AuthDep = Annotated[Authenticated, Depends(require_auth)]
CurrentUser = Annotated[User, Depends(require_user)]
AdminUser = Annotated[User, Depends(require_admin)]
AuthRateLimit = Depends(limit_auth_attempts)
