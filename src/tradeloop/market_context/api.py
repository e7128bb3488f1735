"""GEX API (SPEC §6): record gamma-exposure snapshots, list and read them (user-scoped)."""

from __future__ import annotations

import uuid

from fastapi import APIRouter, Response, status

from tradeloop.accounts.dependencies import CurrentUser
from tradeloop.deps import SessionDep
from tradeloop.market_context import gex
from tradeloop.market_context.schemas import GexIn, GexList, GexRead
from tradeloop.schema_types import Limit, Offset

router = APIRouter(prefix="/api/v1/gex", tags=["gex"])


@router.post("", status_code=status.HTTP_201_CREATED,
             responses={200: {"model": GexRead, "description": "Already stored (a retry)"},
                        409: {"description": "Same symbol and as_of, other values"},
                        422: {"description": "Invalid body, with every field's error"}})
def record_gex(body: GexIn, user: CurrentUser, session: SessionDep,
               response: Response) -> GexRead:
    """Store a snapshot (201); the decision of the next signal on the symbol uses it."""
    recorded = gex.record_gex(session=session, owner_id=user.id, data=body)
    if not recorded.created:
        response.status_code = status.HTTP_200_OK
    return GexRead.model_validate(recorded.row)


@router.get("")
def list_gex(user: CurrentUser, session: SessionDep, symbol: str | None = None,
             limit: Limit = 50,
             offset: Offset = 0) -> GexList:
    """The caller's snapshots, newest `as_of` first."""
    rows, total = gex.list_gex(session=session, owner_id=user.id, symbol=symbol, limit=limit,
                               offset=offset)
    return GexList(gex=[GexRead.model_validate(row) for row in rows], total=total, limit=limit,
                   offset=offset)


@router.get("/{gex_id}")
def get_gex(gex_id: uuid.UUID, user: CurrentUser, session: SessionDep) -> GexRead:
    return GexRead.model_validate(gex.get_gex(session=session, owner_id=user.id, gex_id=gex_id))
