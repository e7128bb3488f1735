"""The /health endpoints: readiness for anyone (a load balancer holds no token), the figures
behind it (counts, ages, reasons, errors) only for admins and the METRICS_TOKEN, since they
count every user's rows."""

from __future__ import annotations

from fastapi import APIRouter, BackgroundTasks, Request
from fastapi.responses import JSONResponse
from sqlalchemy.exc import SQLAlchemyError

from tradeloop.accounts.dependencies import detached_auth, holds_metrics_token
from tradeloop.db import Database
from tradeloop.deps import DatabaseDep, SettingsDep
from tradeloop.errors import NotFoundError
from tradeloop.health import check_components, registered_components, summarize, without_figures
from tradeloop.settings import Settings

router = APIRouter(tags=["health"])


def _sees_figures(request: Request, db: Database, settings: Settings,
                  after_response: BackgroundTasks) -> bool:
    """The METRICS_TOKEN or an admin. Not a session dependency: the checks open units of work
    of their own, and a request-long transaction would only get in their way."""
    if holds_metrics_token(request, settings):
        return True
    try:
        # Without credentials (a probe) this costs no database round trip.
        auth = detached_auth(request, db, after_response)
    except SQLAlchemyError:
        return False  # the database is down: the components say so, to everyone
    return bool(auth and auth.user.is_admin)


def _health_response(request: Request, db: Database, settings: Settings,
                     after_response: BackgroundTasks, names: list[str] | None) -> JSONResponse:
    components = check_components(db, settings.health_check_timeout_s, names, settings)
    if not _sees_figures(request, db, settings, after_response):
        components = {name: without_figures(c) for name, c in components.items()}
    body = summarize(components)
    return JSONResponse(body, status_code=200 if body["healthy"] else 503)


@router.get("/api/health")
async def api_health() -> dict[str, str]:
    """Liveness: the process answers (seed 000's check)."""
    # On the event loop itself (nothing here blocks): it answers even while every worker
    # thread is busy, and says whether the loop is free.
    return {"status": "healthy"}


UNHEALTHY = {503: {"description": "A component is unhealthy (the same body)"}}


@router.get("/health", responses=UNHEALTHY)
def health(request: Request, db: DatabaseDep, settings: SettingsDep,
           after_response: BackgroundTasks) -> JSONResponse:
    """Readiness of every registered component; 503 when any is unhealthy. Messages and
    details for admins and the METRICS_TOKEN."""
    return _health_response(request, db, settings, after_response, None)


@router.get("/health/{component}", responses=UNHEALTHY)
def component_health(component: str, request: Request, db: DatabaseDep,
                     settings: SettingsDep, after_response: BackgroundTasks) -> JSONResponse:
    """Readiness of one component (database, context, gex, …)."""
    if component not in registered_components():
        raise NotFoundError(f"No health component {component!r}",
                            details={"components": registered_components()})
    return _health_response(request, db, settings, after_response, [component])
