"""Decisions and paper positions API (SPEC §6)."""

from __future__ import annotations

import uuid
from typing import Annotated

from fastapi import APIRouter, Body, Query

from tradeloop.accounts.dependencies import CurrentUser
from tradeloop.deps import SessionDep
from tradeloop.errors import error_responses
from tradeloop.schema_types import Limit, Offset
from tradeloop.trading import service as positions
from tradeloop.trading.models import DecisionAction, PositionStatus
from tradeloop.trading.schemas import (
    ClosePositionIn,
    DecisionList,
    DecisionRead,
    PositionList,
    PositionRead,
    PositionSummary,
)

router = APIRouter(tags=["signals"])


# --- decisions and paper positions ------------------------------------------------------------

@router.get("/api/v1/decisions", tags=["positions"])
def list_decisions(user: CurrentUser, session: SessionDep, signal_id: uuid.UUID | None = None,
                   action: DecisionAction | None = None,
                   limit: Limit = 50,
                   offset: Offset = 0) -> DecisionList:
    """What processing decided for the caller's signals, newest first."""
    rows, total = positions.list_decisions(
        session=session, owner_id=user.id, signal_id=signal_id,
        action=action.value if action else None, limit=limit, offset=offset)
    return DecisionList(decisions=[DecisionRead.model_validate(r) for r in rows], total=total,
                        limit=limit, offset=offset)


@router.get("/api/v1/positions", tags=["positions"])
def list_positions(user: CurrentUser, session: SessionDep,
                   status_: Annotated[PositionStatus | None, Query(alias="status")] = None,
                   symbol: str | None = None,
                   limit: Limit = 50,
                   offset: Offset = 0) -> PositionList:
    """The caller's paper positions, newest first, marked to market, with their totals."""
    rows, total = positions.list_positions(
        session=session, owner_id=user.id, status=status_.value if status_ else None,
        symbol=symbol, limit=limit, offset=offset)
    totals = positions.position_totals(session=session, owner_id=user.id, symbol=symbol)
    return PositionList(positions=[PositionRead.model_validate(r) for r in rows], total=total,
                        limit=limit, offset=offset,
                        summary=PositionSummary.model_validate(totals))


@router.get("/api/v1/positions/{position_id}", tags=["positions"])
def get_position(position_id: uuid.UUID, user: CurrentUser,
                 session: SessionDep) -> PositionRead:
    row = positions.get_position(session=session, owner_id=user.id, position_id=position_id)
    return PositionRead.model_validate(row)


@router.post("/api/v1/positions/{position_id}/close", tags=["positions"],
             responses=error_responses(409))
def close_position(position_id: uuid.UUID, user: CurrentUser, session: SessionDep,
                   body: Annotated[ClosePositionIn | None, Body()] = None) -> PositionRead:
    """Close at the given price, else at the latest stored close; writes the outcome."""
    row = positions.close_position(session=session, owner_id=user.id,
                                   position_id=position_id, price=body.price if body else None)
    return PositionRead.model_validate(row)
