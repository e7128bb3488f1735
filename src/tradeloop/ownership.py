"""Per-user isolation: every user-owned row and every query on it goes through here.

A row owned by someone else is answered exactly like a row that does not exist (404), so a
user can never infer that another user's strategy, backtest or token exists.
"""

from __future__ import annotations

import uuid
from collections.abc import Mapping, Sequence
from typing import Any, ClassVar, Generic, TypeVar

from sqlalchemy import ColumnElement, ForeignKey, Select, func, select
from sqlalchemy.orm import Mapped, Session, mapped_column

from tradeloop.errors import NotFoundError


class UserOwned:
    """Mixin for tables whose rows belong to one user."""

    user_id: Mapped[uuid.UUID] = mapped_column(
        ForeignKey("users.id", ondelete="CASCADE"), index=True)


M = TypeVar("M", bound=UserOwned)


class OwnedRepository(Generic[M]):
    """Queries on one user-owned model, always scoped to one owner."""

    model: ClassVar[type[Any]]
    label: ClassVar[str] = "Resource"

    def __init__(self, session: Session, owner_id: uuid.UUID):
        self.session = session
        self.owner_id = owner_id

    def select(self) -> Select[tuple[M]]:
        """SELECT of this owner's rows; every read starts here."""
        return select(self.model).where(self.model.user_id == self.owner_id)

    def get(self, row_id: Any) -> M:
        """The owner's row with this id; NotFoundError for missing and foreign rows alike."""
        row = self.find(row_id)
        if row is None:
            raise NotFoundError(f"{self.label} not found", details={"id": str(row_id)})
        return row

    def find(self, row_id: Any) -> M | None:
        return self.session.scalars(self.select().where(self.model.id == row_id)).first()

    def list(self, *criteria: ColumnElement[bool], order_by: Sequence[Any] = (),
             limit: int | None = None, offset: int = 0) -> list[M]:
        query = self.select().where(*criteria).order_by(*order_by).offset(offset)
        if limit is not None:
            query = query.limit(limit)
        return list(self.session.scalars(query))

    def page(self, equal: Mapping[Any, Any], *, order_by: Sequence[Any], limit: int,
             offset: int = 0) -> tuple[list[M], int]:
        """One page of rows whose columns equal the given values (None means any), and how
        many match in all: what every filtered, paginated listing needs."""
        criteria = [column == value for column, value in equal.items() if value is not None]
        return (self.list(*criteria, order_by=order_by, limit=limit, offset=offset),
                self.count(*criteria))

    def count(self, *criteria: ColumnElement[bool]) -> int:
        query = select(func.count()).select_from(self.model).where(
            self.model.user_id == self.owner_id, *criteria)
        return int(self.session.scalar(query) or 0)

    def add(self, row: M) -> M:
        """Add a new row owned by this owner (whatever user_id it was given)."""
        row.user_id = self.owner_id
        self.session.add(row)
        self.session.flush()
        return row

    def delete(self, row_id: Any) -> None:
        self.session.delete(self.get(row_id))
        self.session.flush()
