"""The /health endpoints: readiness for anyone (a load balancer holds no token), the figures
behind it (counts, ages, reasons, errors) only for admins and the METRICS_TOKEN, since they
count every user's rows."""

from __future__ import annotations

from fastapi import APIRouter, Request
from fastapi.responses import JSONResponse
from sqlalchemy.exc import SQLAlchemyError

from tradeloop.accounts.dependencies import (
    SESSION_COOKIE,
    bearer_token,
    holds_metrics_token,
    identify_caller,
)
from tradeloop.db import Database
from tradeloop.errors import NotFoundError
from tradeloop.health import check_components, registered_components, summarize, without_figures
from tradeloop.settings import Settings

router = APIRouter(tags=["health"])


def _sees_figures(request: Request, db: Database, settings: Settings) -> bool:
    """The METRICS_TOKEN or an admin. Not a session dependency: the checks open units of work
    of their own, and a request-long one (a write lock on SQLite) would block them."""
    if holds_metrics_token(request, settings):
        return True
    if not (bearer_token(request) or request.cookies.get(SESSION_COOKIE)):
        return False  # a probe: no database round trip
    try:
        with db.read_session() as session:
            auth = identify_caller(request, session)
            return bool(auth and auth.user.is_admin)
    except SQLAlchemyError:
        return False  # the database is down: the components say so, to everyone


def _health_response(request: Request, names: list[str] | None) -> JSONResponse:
    db: Database = request.app.state.db
    settings: Settings = request.app.state.settings
    components = check_components(db, settings.health_check_timeout_s, names, settings)
    if not _sees_figures(request, db, settings):
        components = {name: without_figures(c) for name, c in components.items()}
    body = summarize(components)
    return JSONResponse(body, status_code=200 if body["healthy"] else 503)


@router.get("/api/health")
def api_health() -> dict[str, str]:
    """Liveness: the process answers (seed 000's check)."""
    return {"status": "healthy"}


UNHEALTHY = {503: {"description": "A component is unhealthy (the same body)"}}


@router.get("/health", responses=UNHEALTHY)
def health(request: Request) -> JSONResponse:
    """Readiness of every registered component; 503 when any is unhealthy. Messages and
    details for admins and the METRICS_TOKEN."""
    return _health_response(request, None)


@router.get("/health/{component}", responses=UNHEALTHY)
def component_health(component: str, request: Request) -> JSONResponse:
    """Readiness of one component (database, context, gex, …)."""
    if component not in registered_components():
        raise NotFoundError(f"No health component {component!r}",
                            details={"components": registered_components()})
    return _health_response(request, [component])
