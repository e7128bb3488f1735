"""Request-scoped dependencies shared by every router: the unit of work and the settings."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Annotated

from fastapi import Depends, Request
from sqlalchemy.orm import Session

from tradeloop.db import Database
from tradeloop.ratelimit import RateLimiter
from tradeloop.settings import Settings


def get_session(request: Request) -> Iterator[Session]:
    """One unit of work per request: commit when the endpoint returns, roll back if it raises."""
    db: Database = request.app.state.db
    with db.unit_of_work() as session:
        yield session


def get_settings_dep(request: Request) -> Settings:
    return request.app.state.settings


def get_rate_limiter(request: Request) -> RateLimiter:
    return request.app.state.rate_limiter


def client_address(request: Request) -> str:
    return request.client.host if request.client else "unknown"


SessionDep = Annotated[Session, Depends(get_session)]
SettingsDep = Annotated[Settings, Depends(get_settings_dep)]
RateLimiterDep = Annotated[RateLimiter, Depends(get_rate_limiter)]
