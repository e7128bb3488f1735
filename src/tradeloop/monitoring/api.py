"""/metrics (seed 004): signals, positions, latency; /metrics/prometheus for scrapers.

Who sees what: metrics describe users' trading, so none is public. A signed-in user sees the
numbers of their own rows; an admin may ask for `?scope=all`; the `METRICS_TOKEN` bearer
(for a Prometheus scraper, which should not hold a user's token) sees the system-wide
aggregates and nothing else. /metrics/prometheus is always system-wide: admin or
METRICS_TOKEN only. The rules live in `accounts.dependencies` (AggregateScope), shared by
every aggregate endpoint.
"""

from __future__ import annotations

from datetime import timedelta
from typing import Any

from fastapi import APIRouter, Response
from prometheus_client import CONTENT_TYPE_LATEST
from sqlalchemy.orm import Session

from tradeloop.accounts.dependencies import AggregateCaller, AggregateScope, AggregateScopeDep
from tradeloop.deps import SessionDep, SettingsDep
from tradeloop.errors import ForbiddenError, error_responses
from tradeloop.monitoring import health  # noqa: F401 - registers context, gex, tasks
from tradeloop.monitoring import service as metrics
from tradeloop.settings import Settings

router = APIRouter(prefix="/metrics", tags=["metrics"])

PROMETHEUS_CONTENT_TYPE = CONTENT_TYPE_LATEST


def _window(settings: Settings) -> timedelta:
    return timedelta(seconds=settings.context_health_window_s)


def _snapshot(session: Session, settings: Settings, scope: AggregateScope) -> dict[str, Any]:
    return metrics.all_metrics(session, scope.owner_id, window=settings.metrics_latency_window,
                               context_window=_window(settings))


@router.get("")
def all_metrics(scope: AggregateScopeDep, session: SessionDep,
                settings: SettingsDep) -> dict[str, Any]:
    """Full snapshot: {signals, positions, latency, context, timestamp, scope}."""
    return _snapshot(session, settings, scope)


@router.get("/signals")
def signal_metrics(scope: AggregateScopeDep, session: SessionDep) -> dict[str, Any]:
    """{totalSignals, acceptedSignals, rejectedSignals, acceptanceRate, …}"""
    return metrics.signal_metrics(session, scope.owner_id)


@router.get("/positions")
def position_metrics(scope: AggregateScopeDep, session: SessionDep) -> dict[str, Any]:
    """{openPositions, totalExposure, unrealizedPnL, realizedPnL, closedPositions}"""
    return metrics.position_metrics(session, scope.owner_id)


@router.get("/latency")
def latency_metrics(scope: AggregateScopeDep, session: SessionDep,
                    settings: SettingsDep) -> dict[str, Any]:
    """p50/p95/p99 (ms) of ingest, decision and endToEnd over the newest rows."""
    return metrics.latency_metrics(session, scope.owner_id, settings.metrics_latency_window)


@router.get("/prometheus", response_class=Response,
            responses={200: {"content": {PROMETHEUS_CONTENT_TYPE: {}}},
                       **error_responses(403)})
def prometheus(caller: AggregateCaller, session: SessionDep,
               settings: SettingsDep) -> Response:
    """System-wide metrics in the Prometheus text format (admin or METRICS_TOKEN)."""
    if not caller.system:
        raise ForbiddenError("Prometheus metrics are system-wide: use an admin token or "
                             "METRICS_TOKEN")
    everyone = AggregateScope(None, system=True)
    body = metrics.prometheus_text(_snapshot(session, settings, everyone))
    return Response(body, media_type=PROMETHEUS_CONTENT_TYPE)
