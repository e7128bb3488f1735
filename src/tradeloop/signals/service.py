"""Reads of the owner's signals and processing errors (the intake is in tradeloop.webhooks)."""

from __future__ import annotations

import uuid
from typing import Any

from sqlalchemy.orm import Session

from tradeloop.ownership import OwnedRepository
from tradeloop.signals.models import ProcessingError, Signal


class SignalRepository(OwnedRepository[Signal]):
    model = Signal
    label = "Signal"


class ProcessingErrorRepository(OwnedRepository[Any]):
    model = ProcessingError
    label = "Processing error"


def list_signals(*, session: Session, owner_id: uuid.UUID, symbol: str | None = None,
                 status: str | None = None, origin: str | None = None, limit: int = 50,
                 offset: int = 0) -> tuple[list[Signal], int]:
    """The owner's signals, newest first, with the total matching the filters."""
    return SignalRepository(session, owner_id).page(
        {Signal.symbol: symbol.strip().upper() if symbol else None, Signal.status: status,
         Signal.origin: origin},
        order_by=[Signal.received_at.desc(), Signal.id.desc()], limit=limit, offset=offset)


def get_signal(*, session: Session, owner_id: uuid.UUID, signal_id: uuid.UUID) -> Signal:
    return SignalRepository(session, owner_id).get(signal_id)


def list_processing_errors(*, session: Session, owner_id: uuid.UUID, stage: str | None = None,
                           endpoint_id: uuid.UUID | None = None, limit: int = 50,
                           offset: int = 0) -> tuple[list[ProcessingError], int]:
    """The owner's processing errors, newest first."""
    return ProcessingErrorRepository(session, owner_id).page(
        {ProcessingError.stage: stage, ProcessingError.endpoint_id: endpoint_id},
        order_by=[ProcessingError.received_at.desc(), ProcessingError.id.desc()],
        limit=limit, offset=offset)
