"""/metrics (seed 004): signals, positions, latency; /metrics/prometheus for scrapers.

Who sees what: metrics describe users' trading, so none is public. A signed-in user sees the
numbers of their own rows; an admin may ask for `?scope=all`; the `METRICS_TOKEN` bearer
(for a Prometheus scraper, which should not hold a user's token) sees the system-wide
aggregates and nothing else. /metrics/prometheus is always system-wide: admin or
METRICS_TOKEN only.
"""

from __future__ import annotations

import hmac
import uuid
from dataclasses import dataclass
from datetime import timedelta
from typing import Annotated, Any, Literal

from fastapi import APIRouter, Depends, Query, Request, Response
from prometheus_client import CONTENT_TYPE_LATEST
from sqlalchemy.orm import Session

from tradeloop.accounts.dependencies import bearer_token, optional_auth
from tradeloop.deps import SessionDep, SettingsDep
from tradeloop.errors import ForbiddenError, UnauthorizedError, answers, error_responses
from tradeloop.settings import Settings
from tradeloop.signals import (
    health_checks,  # noqa: F401 - registers context, gex, tasks
    metrics,
)

router = APIRouter(prefix="/metrics", tags=["metrics"])

PROMETHEUS_CONTENT_TYPE = CONTENT_TYPE_LATEST


@dataclass(frozen=True)
class MetricsScope:
    owner_id: uuid.UUID | None  # None: every user
    admin: bool  # an admin or the METRICS_TOKEN: may see system-wide numbers


@answers(401)
def metrics_caller(request: Request, session: SessionDep,
                   settings: SettingsDep) -> MetricsScope:
    """The METRICS_TOKEN scraper, or a signed-in user; 401 for anyone else."""
    raw = bearer_token(request)
    token = settings.metrics_token.get_secret_value() if settings.metrics_token else ""
    if raw and token and hmac.compare_digest(raw.encode(), token.encode()):
        return MetricsScope(None, admin=True)
    auth = optional_auth(request, session)
    if auth is None:
        raise UnauthorizedError("Metrics need 'Authorization: Bearer <API token or "
                                "METRICS_TOKEN>'")
    return MetricsScope(auth.user.id, admin=auth.user.is_admin)


@answers(403)
def metrics_scope(caller: Annotated[MetricsScope, Depends(metrics_caller)],
                  scope: Annotated[Literal["me", "all"] | None, Query(
                      description="me: your rows (default for users); all: every user's "
                                  "(admins; the METRICS_TOKEN always sees all)")] = None,
                  ) -> MetricsScope:
    if caller.owner_id is None:
        return caller
    if scope == "all":
        if not caller.admin:
            raise ForbiddenError("scope=all needs an admin account")
        return MetricsScope(None, admin=True)
    return caller


ScopeDep = Annotated[MetricsScope, Depends(metrics_scope)]


def _window(settings: Settings) -> timedelta:
    return timedelta(seconds=settings.context_health_window_s)


def _snapshot(session: Session, settings: Settings, scope: MetricsScope) -> dict[str, Any]:
    return metrics.all_metrics(session, scope.owner_id, window=settings.metrics_latency_window,
                               context_window=_window(settings))


@router.get("")
def all_metrics(scope: ScopeDep, session: SessionDep, settings: SettingsDep) -> dict[str, Any]:
    """Full snapshot: {signals, positions, latency, context, timestamp, scope}."""
    return _snapshot(session, settings, scope)


@router.get("/signals")
def signal_metrics(scope: ScopeDep, session: SessionDep) -> dict[str, Any]:
    """{totalSignals, acceptedSignals, rejectedSignals, acceptanceRate, …}"""
    return metrics.signal_metrics(session, scope.owner_id)


@router.get("/positions")
def position_metrics(scope: ScopeDep, session: SessionDep) -> dict[str, Any]:
    """{openPositions, totalExposure, unrealizedPnL, realizedPnL, closedPositions}"""
    return metrics.position_metrics(session, scope.owner_id)


@router.get("/latency")
def latency_metrics(scope: ScopeDep, session: SessionDep,
                    settings: SettingsDep) -> dict[str, Any]:
    """p50/p95/p99 (ms) of ingest, decision and endToEnd over the newest rows."""
    return metrics.latency_metrics(session, scope.owner_id, settings.metrics_latency_window)


@router.get("/prometheus", response_class=Response,
            responses={200: {"content": {PROMETHEUS_CONTENT_TYPE: {}}},
                       **error_responses(403)})
def prometheus(caller: Annotated[MetricsScope, Depends(metrics_caller)], session: SessionDep,
               settings: SettingsDep) -> Response:
    """System-wide metrics in the Prometheus text format (admin or METRICS_TOKEN)."""
    if not caller.admin:
        raise ForbiddenError("Prometheus metrics are system-wide: use an admin token or "
                             "METRICS_TOKEN")
    body = metrics.prometheus_text(_snapshot(session, settings, MetricsScope(None, True)))
    return Response(body, media_type=PROMETHEUS_CONTENT_TYPE)
