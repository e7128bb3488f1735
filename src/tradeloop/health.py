"""Health checks: a registry that domains add components to, run concurrently with a bound on
each; `tradeloop.health_api` serves them as /health."""

from __future__ import annotations

import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from concurrent.futures import TimeoutError as FutureTimeout
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any, Literal

import structlog

from tradeloop.db import Database
from tradeloop.settings import Settings

log = structlog.get_logger(__name__)

Status = Literal["healthy", "degraded", "unhealthy"]
PUBLIC_MESSAGES: dict[str, str] = {
    "healthy": "OK",
    "degraded": "Degraded: an admin token or the METRICS_TOKEN shows why",
    "unhealthy": "Unhealthy: an admin token or the METRICS_TOKEN shows why",
}


@dataclass
class ComponentHealth:
    status: Status
    message: str
    details: dict[str, Any] = field(default_factory=dict)

    @property
    def healthy(self) -> bool:
        # Degraded still serves requests (seed 004's degraded mode), so it counts as healthy.
        return self.status != "unhealthy"

    def as_dict(self, latency_ms: float) -> dict[str, Any]:
        return {"healthy": self.healthy, "status": self.status, "message": self.message,
                "latency_ms": latency_ms, **self.details}


HealthCheck = Callable[[Database], ComponentHealth]
SettingsHealthCheck = Callable[[Database, Settings], ComponentHealth]
_CHECKS: dict[str, HealthCheck] = {}
_NEEDS_SETTINGS: set[str] = set()
# Checks run off the request thread so that a stuck dependency cannot hang /health.
_executor = ThreadPoolExecutor(max_workers=8, thread_name_prefix="health")
# The per-component waits run on their own pool: sharing one pool with the checks they wait
# for would starve it (each component holds a thread while its check needs another).
_waiters = ThreadPoolExecutor(max_workers=8, thread_name_prefix="health-wait")


def register_health_check(name: str, check: HealthCheck) -> None:
    """Add a component to /health and expose it as /health/{name}."""
    _CHECKS[name] = check
    _NEEDS_SETTINGS.discard(name)


def register_settings_health_check(name: str, check: SettingsHealthCheck) -> None:
    """Like register_health_check, for a check that also reads the app's settings."""
    _CHECKS[name] = check  # type: ignore[assignment]
    _NEEDS_SETTINGS.add(name)


def check_database(db: Database) -> ComponentHealth:
    db.ping()
    return ComponentHealth("healthy", "Database reachable",
                           {"backend": db.engine.dialect.name})


register_health_check("database", check_database)


def _run_check(name: str, check: HealthCheck, db: Database, timeout_s: float,
               settings: Settings | None = None) -> dict[str, Any]:
    started = time.perf_counter()
    args = (db, settings) if name in _NEEDS_SETTINGS else (db,)
    future = _executor.submit(check, *args)
    try:
        result = future.result(timeout=timeout_s)
    except FutureTimeout:
        result = ComponentHealth("unhealthy", f"{name} check timed out after {timeout_s:g}s")
    except Exception as exc:
        log.warning("health_check_failed", component=name, error=str(exc)[:500])
        result = ComponentHealth("unhealthy", f"{name} unavailable: {type(exc).__name__}",
                                 {"error": str(exc).splitlines()[0][:300] if str(exc) else ""})
    return result.as_dict(round((time.perf_counter() - started) * 1000, 1))


def check_components(db: Database, timeout_s: float, names: list[str] | None = None,
                     settings: Settings | None = None) -> dict[str, dict[str, Any]]:
    """Run the named checks (all by default) concurrently, each bounded by `timeout_s`."""
    selected = {name: _CHECKS[name] for name in (names or list(_CHECKS))}
    started = {name: _waiters.submit(_run_check, name, check, db, timeout_s, settings)
               for name, check in selected.items()}
    return {name: future.result() for name, future in started.items()}


def registered_components() -> list[str]:
    return sorted(_CHECKS)


def without_figures(component: dict[str, Any]) -> dict[str, Any]:
    """A component's status only: its message and details count every user's rows (decisions,
    queued signals, snapshots), which only admins and the METRICS_TOKEN may see."""
    return {"healthy": component["healthy"], "status": component["status"],
            "message": PUBLIC_MESSAGES[component["status"]],
            "latency_ms": component["latency_ms"]}


def summarize(components: dict[str, dict[str, Any]]) -> dict[str, Any]:
    """Seed 004's shape: healthy, status, message, timestamp, components."""
    statuses = {c["status"] for c in components.values()}
    if "unhealthy" in statuses:
        status: Status = "unhealthy"
        failing = sorted(name for name, c in components.items() if c["status"] == "unhealthy")
        message = f"Unhealthy components: {', '.join(failing)}"
    elif "degraded" in statuses:
        status = "degraded"
        degraded = sorted(name for name, c in components.items() if c["status"] == "degraded")
        message = f"Degraded mode: {', '.join(degraded)}"
    else:
        status, message = "healthy", "All systems operational"
    return {"healthy": status != "unhealthy", "status": status, "message": message,
            "timestamp": datetime.now(UTC).isoformat(), "components": components}
