"""Server-rendered pages: sign-up, log-in, log-out, password reset, settings, home."""

from __future__ import annotations

import uuid
from typing import Annotated, Any

from fastapi import APIRouter, Depends, Request
from fastapi.responses import HTMLResponse, RedirectResponse, Response
from sqlalchemy.orm import Session

from tradeloop.accounts import service
from tradeloop.accounts.dependencies import SESSION_COOKIE, Authenticated
from tradeloop.accounts.models import TokenContext
from tradeloop.deps import (
    DatabaseDep,
    RateLimiterDep,
    SessionDep,
    SettingsDep,
    WriteSessionDep,
    client_address,
)
from tradeloop.errors import AppError, FieldValidationError
from tradeloop.mail import mail_after_commit
from tradeloop.ratelimit import RateLimiter
from tradeloop.settings import Settings
from tradeloop.web.pages import OptionalAuth, PageUser, is_https, render, return_path

router = APIRouter(include_in_schema=False)
RESET_SENT = ("If an account exists for that email, a reset link is on its way. "
              "Check your inbox (or the server's outbox when no mail server is set up).")


async def read_form(request: Request) -> dict[str, str]:
    """The submitted form's text fields. Its origin was checked before routing
    (tradeloop.csrf.CsrfMiddleware: same-site Origin or Referer, else the form's token).

    A dependency, on the event loop (reading the body is I/O), so that the form handlers are
    plain `def`s: argon2 and the database run on worker threads, never on the loop."""
    form = await request.form()
    return {key: str(value) for key, value in form.items() if isinstance(value, str)}


# Declared before the caller's identity: the body is read before a POST's unit of work
# begins (on SQLite, with the write lock), never while it is held.
FormDep = Annotated[dict[str, str], Depends(read_form)]


def _limit_form_attempts(request: Request, settings: Settings, limiter: RateLimiter) -> None:
    limiter.hit(settings.auth_rate_limit, "auth", request.url.path, client_address(request))


def _session_started(request: Request, raw_token: str, return_to: str | None = None,
                     ) -> RedirectResponse:
    """The page to return to (home by default), with the new session token in its cookie."""
    response = RedirectResponse(return_path(return_to), status_code=303)
    lifetime = service.TokenLifetimes().session
    response.set_cookie(SESSION_COOKIE, raw_token, httponly=True, samesite="lax",
                        secure=is_https(request), max_age=int(lifetime.total_seconds()),
                        path="/")
    return response


def _field_errors(exc: AppError) -> dict[str, str]:
    if isinstance(exc, FieldValidationError):
        return {f["field"]: f["message"] for f in exc.details["fields"]}
    return {"form": exc.message}


@router.get("/")
def home(request: Request, settings: SettingsDep, auth: PageUser) -> Response:
    return render(request, "home.html", settings, auth=auth)


@router.get("/users/register")
def register_form(request: Request, settings: SettingsDep, auth: OptionalAuth) -> Response:
    return render(request, "register.html", settings, auth=auth, email="", errors={})


@router.post("/users/register")
def register_submit(request: Request, form: FormDep, session: SessionDep, settings: SettingsDep,
                    limiter: RateLimiterDep) -> Response:
    email = ""
    try:
        _limit_form_attempts(request, settings, limiter)
        if not settings.allow_registration:
            raise AppError("Registration is disabled on this server")
        email = form.get("user[email]", "").strip()
        if "@" not in email or len(email) > 320:
            raise FieldValidationError([{"field": "email", "message": "Enter a valid email",
                                         "type": "email"}])
        service.register_user(session=session, email=email, password=form.get("user[password]", ""),
                              confirm_url=f"{settings.public_url}/users/confirm/",
                              send_mail=mail_after_commit(session, settings))
    except AppError as exc:
        return _rejected(request, settings, "register.html", exc, email=email)
    return render(request, "message.html", settings, title="Check your inbox",
                  message="If this email can be registered, a confirmation mail is on its way. "
                          "You can log in now.")


def _rejected(request: Request, settings: Settings, template: str, exc: AppError,
              **context: Any) -> HTMLResponse:
    """The form again, answered with the error's status and what was wrong."""
    return render(request, template, settings, status_code=exc.status_code,
                  errors=_field_errors(exc), **context)


@router.get("/users/log_in")
def log_in_form(request: Request, settings: SettingsDep, auth: OptionalAuth) -> Response:
    return render(request, "log_in.html", settings, auth=auth, email="", errors={},
                  next=return_path(request.query_params.get("next")))


@router.post("/users/log_in")
def log_in_submit(request: Request, form: FormDep, db: DatabaseDep, settings: SettingsDep,
                  limiter: RateLimiterDep) -> Response:
    email = ""
    try:
        _limit_form_attempts(request, settings, limiter)
        email = form.get("user[email]", "")
        raw, _token = service.sign_in(db, email=email, password=form.get("user[password]", ""),
                                      context=TokenContext.SESSION)
    except AppError as exc:  # wrong credentials among them: 401, "Invalid email or password"
        return _rejected(request, settings, "log_in.html", exc, email=email,
                         next=return_path(form.get("next")))
    return _session_started(request, raw, form.get("next"))


@router.get("/users/log_out")
def log_out_form(request: Request, settings: SettingsDep, auth: OptionalAuth) -> Response:
    return render(request, "log_out.html", settings, auth=auth)


@router.post("/users/log_out")
def log_out_submit(request: Request, session: SessionDep) -> Response:
    raw = request.cookies.get(SESSION_COOKIE)
    if raw:
        service.delete_session_token(session=session, raw_token=raw)
    response = RedirectResponse("/users/log_in", status_code=303)
    response.delete_cookie(SESSION_COOKIE, path="/")
    return response


@router.get("/users/reset_password")
def reset_request_form(request: Request, settings: SettingsDep, auth: OptionalAuth) -> Response:
    return render(request, "reset_request.html", settings, auth=auth, errors={})


@router.post("/users/reset_password")
def reset_request_submit(request: Request, form: FormDep, session: SessionDep,
                         settings: SettingsDep, limiter: RateLimiterDep) -> Response:
    try:
        _limit_form_attempts(request, settings, limiter)
    except AppError as exc:
        return _rejected(request, settings, "reset_request.html", exc)
    service.request_password_reset(session=session, email=form.get("user[email]", ""),
                                   reset_url=f"{settings.public_url}/users/reset_password/",
                                   send_mail=mail_after_commit(session, settings))
    return render(request, "message.html", settings, title="Reset link sent", message=RESET_SENT)


@router.get("/users/reset_password/{token}")
def reset_form(token: str, request: Request, settings: SettingsDep) -> Response:
    return render(request, "reset_password.html", settings, token=token, errors={})


@router.post("/users/reset_password/{token}")
def reset_submit(token: str, request: Request, form: FormDep, session: SessionDep,
                 settings: SettingsDep) -> Response:
    try:
        service.reset_password(session=session, raw_token=token,
                               new_password=form.get("user[password]", ""))
    except AppError as exc:
        return _rejected(request, settings, "reset_password.html", exc, token=token)
    return render(request, "message.html", settings, title="Password changed",
                  message="Your password was changed and every session signed out. "
                          "Log in with the new password.")


@router.get("/users/confirm/{token}")
def confirm(token: str, request: Request, session: WriteSessionDep,
            settings: SettingsDep) -> Response:
    """The link of the confirmation mail: a GET that writes (confirms, spends the token)."""
    user = service.confirm_user(session=session, raw_token=token)
    if user is None:
        return render(request, "message.html", settings, status_code=404, title="Link expired",
                      message="This confirmation link is invalid or has expired.")
    return render(request, "message.html", settings, title="Account confirmed",
                  message=f"{user.email} is confirmed.")


@router.get("/users/settings")
def settings_page(request: Request, session: SessionDep, settings: SettingsDep,
                  auth: PageUser) -> Response:
    return _settings_page(request, session, settings, auth)


def _settings_page(request: Request, session: Session, settings: Settings, auth: Authenticated,
                   *, status_code: int = 200, **context: Any) -> HTMLResponse:
    tokens = service.list_tokens(session=session, user=auth.user)
    return render(request, "settings.html", settings, auth=auth, tokens=tokens,
                  current_token_id=auth.token.id, status_code=status_code,
                  errors=context.pop("errors", {}), **context)


@router.post("/users/settings/password")
def change_password(request: Request, form: FormDep, session: SessionDep,
                    settings: SettingsDep, auth: OptionalAuth) -> Response:
    if auth is None:
        return RedirectResponse("/users/log_in", status_code=303)
    try:
        service.change_password(session=session, user=auth.user,
                                current_password=form.get("current_password", ""),
                                new_password=form.get("user[password]", ""),
                                keep_token_id=auth.token.id)
    except AppError as exc:
        return _settings_page(request, session, settings, auth, status_code=exc.status_code,
                              errors=_field_errors(exc))
    return _settings_page(request, session, settings, auth, notice="Password changed.")


@router.post("/users/settings/tokens")
def create_api_token(request: Request, form: FormDep, session: SessionDep,
                     settings: SettingsDep, auth: OptionalAuth) -> Response:
    if auth is None:
        return RedirectResponse("/users/log_in", status_code=303)
    name = form.get("name", "").strip()[:100] or None
    raw = service.issue_token(session=session, user=auth.user, context=TokenContext.API,
                              name=name)
    return _settings_page(request, session, settings, auth, new_token=raw)


@router.post("/users/settings/tokens/{token_id}/revoke")
def revoke_api_token(token_id: uuid.UUID, session: SessionDep, auth: OptionalAuth) -> Response:
    if auth is None:
        return RedirectResponse("/users/log_in", status_code=303)
    service.revoke_token(session=session, user=auth.user, token_id=token_id)
    return RedirectResponse("/users/settings", status_code=303)
