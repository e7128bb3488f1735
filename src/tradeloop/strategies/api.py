"""Strategies API (SPEC §3): CRUD, validate, syntax-test, versions; all scoped to the caller.

Activation (POST /api/v1/strategies/{id}/activate) needs a finished backtest of the version, so
its route lives in backtest/api.py: strategies does not import backtest."""

from __future__ import annotations

import uuid
from typing import Annotated

from fastapi import APIRouter, Query, Response, status

from tradeloop.accounts.dependencies import CurrentUser
from tradeloop.deps import SessionDep
from tradeloop.errors import error_responses
from tradeloop.schema_types import Limit, Offset
from tradeloop.strategies import service
from tradeloop.strategies.definition import validate_definition
from tradeloop.strategies.schemas import (
    StrategyCreate,
    StrategyList,
    StrategyRead,
    StrategyUpdate,
    SyntaxTestRequest,
    SyntaxTestResponse,
    ValidateRequest,
    ValidateResponse,
    ValidationIssue,
)

router = APIRouter(prefix="/api/v1/strategies", tags=["strategies"])


@router.post("/validate")
def validate(body: ValidateRequest, user: CurrentUser) -> ValidateResponse:
    """Check a definition without storing it: every error with its line and column."""
    errors = [ValidationIssue(**e.as_dict()) for e in validate_definition(body.definition)]
    return ValidateResponse(valid=not errors, errors=errors)


@router.post("", status_code=status.HTTP_201_CREATED, responses=error_responses(409))
def create(body: StrategyCreate, user: CurrentUser, session: SessionDep) -> StrategyRead:
    """Store version 1 of a strategy (422 with every error when the definition is invalid)."""
    strategy = service.create_strategy(session=session, owner_id=user.id,
                                       definition=body.definition, metadata=body.metadata)
    return StrategyRead.model_validate(strategy)


@router.get("")
def list_strategies(user: CurrentUser, session: SessionDep,
                    status_: Annotated[str | None, Query(alias="status")] = None,
                    name: str | None = None,
                    limit: Limit = 50,
                    offset: Offset = 0) -> StrategyList:
    """The caller's strategies, most recently changed first."""
    rows, total = service.list_strategies(session=session, owner_id=user.id, status=status_,
                                          name=name, limit=limit, offset=offset)
    return StrategyList(strategies=[StrategyRead.model_validate(r) for r in rows],
                        total=total, limit=limit, offset=offset)


@router.get("/{strategy_id}")
def get(strategy_id: uuid.UUID, user: CurrentUser, session: SessionDep) -> StrategyRead:
    strategy = service.get_strategy(session=session, owner_id=user.id, strategy_id=strategy_id)
    return StrategyRead.model_validate(strategy)


@router.patch("/{strategy_id}", responses=error_responses(409))
def update(strategy_id: uuid.UUID, body: StrategyUpdate, user: CurrentUser,
           session: SessionDep) -> StrategyRead:
    """Change a strategy; send the lock_version you read (409 version_conflict if stale)."""
    changes = service.StrategyChanges(lock_version=body.lock_version, definition=body.definition,
                                      metadata=body.metadata, status=body.status)
    strategy = service.update_strategy(session=session, owner_id=user.id,
                                       strategy_id=strategy_id, changes=changes)
    return StrategyRead.model_validate(strategy)


@router.delete("/{strategy_id}", status_code=status.HTTP_204_NO_CONTENT)
def delete(strategy_id: uuid.UUID, user: CurrentUser, session: SessionDep) -> Response:
    service.delete_strategy(session=session, owner_id=user.id, strategy_id=strategy_id)
    return Response(status_code=status.HTTP_204_NO_CONTENT)


@router.post("/{strategy_id}/versions", status_code=status.HTTP_201_CREATED,
             responses=error_responses(409))
def create_version(strategy_id: uuid.UUID, user: CurrentUser,
                   session: SessionDep) -> StrategyRead:
    """Copy the strategy into a new draft version n+1."""
    strategy = service.create_version(session=session, owner_id=user.id,
                                      strategy_id=strategy_id)
    return StrategyRead.model_validate(strategy)


@router.post("/{strategy_id}/syntax-test")
def syntax_test(strategy_id: uuid.UUID, user: CurrentUser, session: SessionDep,
                body: SyntaxTestRequest | None = None) -> SyntaxTestResponse:
    """Evaluate the strategy on stored bars and report entries and exits per symbol."""
    body = body or SyntaxTestRequest()
    options = service.SyntaxTestOptions(symbols=body.symbols, params=body.params,
                                        start=body.start, end=body.end, bars=body.bars)
    report = service.syntax_test(session=session, owner_id=user.id, strategy_id=strategy_id,
                                 options=options)
    return SyntaxTestResponse.model_validate(report)

