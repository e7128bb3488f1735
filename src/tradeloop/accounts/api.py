"""Accounts API: register, obtain a token, who am I, list and revoke tokens."""

from __future__ import annotations

import uuid
from datetime import timedelta

from fastapi import APIRouter, Response, status

from tradeloop.accounts import service
from tradeloop.accounts.dependencies import AuthDep, AuthRateLimit, CurrentUser
from tradeloop.accounts.models import TokenContext
from tradeloop.accounts.schemas import (
    RegisterRequest,
    RegisterResponse,
    TokenList,
    TokenRead,
    TokenRequest,
    TokenResponse,
    UserRead,
)
from tradeloop.deps import DatabaseDep, SessionDep, SettingsDep
from tradeloop.errors import ForbiddenError, error_responses
from tradeloop.mail import mail_after_commit

router = APIRouter(prefix="/api/v1/auth", tags=["auth"])

REGISTERED_MESSAGE = "If this email can be registered, a confirmation mail is on its way"


@router.post("/register", status_code=status.HTTP_201_CREATED, dependencies=[AuthRateLimit],
             responses=error_responses(403))
def register(body: RegisterRequest, session: SessionDep, settings: SettingsDep) -> RegisterResponse:
    """Create an account. The answer is the same whether or not the email already has one."""
    if not settings.allow_registration:
        raise ForbiddenError("Registration is disabled on this server",
                             code="registration_disabled")
    service.register_user(
        session=session, email=body.email, password=body.password,
        confirm_url=f"{settings.public_url}/users/confirm/",
        send_mail=mail_after_commit(session, settings),
    )
    return RegisterResponse(email=service.normalize_email(body.email), message=REGISTERED_MESSAGE)


@router.post("/token", dependencies=[AuthRateLimit], responses=error_responses(401))
def create_token(body: TokenRequest, db: DatabaseDep) -> TokenResponse:
    """Exchange email and password for a bearer API token (shown once; store it safely)."""
    lifetime = timedelta(days=body.expires_in_days) if body.expires_in_days else None
    raw, token = service.sign_in(db, email=body.email, password=body.password,
                                 context=TokenContext.API, name=body.name, lifetime=lifetime)
    return TokenResponse(id=token.id, access_token=raw, expires_at=token.expires_at)


@router.get("/me")
def me(user: CurrentUser) -> UserRead:
    """The authenticated user."""
    return UserRead.model_validate(user)


@router.get("/tokens")
def list_tokens(auth: AuthDep, session: SessionDep) -> TokenList:
    """The caller's live API tokens and web sessions (secrets are never shown again)."""
    tokens = service.list_tokens(session=session, user=auth.user)
    items = [TokenRead.model_validate(t).model_copy(update={"current": t.id == auth.token.id})
             for t in tokens]
    return TokenList(tokens=items, total=len(items))


@router.delete("/tokens/{token_id}", status_code=status.HTTP_204_NO_CONTENT)
def revoke_token(token_id: uuid.UUID, user: CurrentUser, session: SessionDep) -> Response:
    """Revoke one of the caller's tokens; another user's token id is 404."""
    service.revoke_token(session=session, user=user, token_id=token_id)
    return Response(status_code=status.HTTP_204_NO_CONTENT)
