"""What every page of the web UI shares: rendering a template with the signed-in user and the
CSRF token of its forms, and `PageUser`, which sends a visitor without a (live) session to the
log-in page and, once logged in, back to where they were."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Any
from urllib.parse import quote

from fastapi import Depends, FastAPI, Request
from fastapi.responses import HTMLResponse, RedirectResponse, Response
from fastapi.templating import Jinja2Templates

from tradeloop.accounts.dependencies import Authenticated, optional_auth
from tradeloop.csrf import CSRF_FIELD, csrf_token, set_csrf_cookie
from tradeloop.settings import Settings

TEMPLATES = Jinja2Templates(directory=Path(__file__).parent / "templates")
LOG_IN_PATH = "/users/log_in"
HOME_PATH = "/"

OptionalAuth = Annotated[Authenticated | None, Depends(optional_auth)]


class LogInRequiredError(Exception):
    """A page was asked for without a live session: answered with the log-in page's URL."""

    def __init__(self, return_to: str):
        super().__init__(return_to)
        self.return_to = return_to


def is_https(request: Request) -> bool:
    return request.url.scheme == "https"


def render(request: Request, template: str, settings: Settings, *, status_code: int = 200,
           auth: Authenticated | None = None, **context: Any) -> HTMLResponse:
    """Render a page with a CSRF token for its forms (and the cookie that backs it)."""
    token = csrf_token(request, settings.secret("SECRET_KEY"))
    response = TEMPLATES.TemplateResponse(
        request, template,
        {"csrf_field": CSRF_FIELD, "csrf_token": token, "current_user": auth.user if auth else None,
         "allow_registration": settings.allow_registration, **context},
        status_code=status_code,
    )
    set_csrf_cookie(response, token, secure=is_https(request))
    return response


def require_page_user(request: Request, auth: OptionalAuth) -> Authenticated:
    """The signed-in caller of a page; without one, LogInRequiredError (see `install_page_auth`)."""
    if auth is None:
        path = request.url.path + (f"?{request.url.query}" if request.url.query else "")
        raise LogInRequiredError(path)
    return auth


PageUser = Annotated[Authenticated, Depends(require_page_user)]


def return_path(value: str | None) -> str:
    """Where to go after logging in: a path on this site, never another host (an open
    redirect would let a link to tradeloop's log-in page send the user anywhere)."""
    if not value or not value.startswith("/") or value.startswith("//") or "\\" in value:
        return HOME_PATH
    return value


def log_in_url(return_to: str) -> str:
    """The log-in page, remembering the page to come back to."""
    target = return_path(return_to)
    return LOG_IN_PATH if target == HOME_PATH else f"{LOG_IN_PATH}?next={quote(target)}"


def _log_in_first(request: Request, exc: Exception) -> Response:
    assert isinstance(exc, LogInRequiredError)
    url = log_in_url(exc.return_to)
    if request.headers.get("hx-request"):
        # A partial update of an expired page: htmx follows HX-Redirect with a full navigation.
        return Response(status_code=401, headers={"HX-Redirect": url})
    return RedirectResponse(url, status_code=303)


def install_page_auth(app: FastAPI) -> None:
    """Answer LogInRequiredError with the log-in page (a redirect, or HX-Redirect for htmx)."""
    app.add_exception_handler(LogInRequiredError, _log_in_first)
