"""The execution log: write one row per call without ever failing the caller, tell the
listeners, and answer statistics per template."""

from __future__ import annotations

import math
import uuid
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import datetime
from decimal import Decimal
from typing import Any

import structlog
from sqlalchemy import case, func, insert, select, text
from sqlalchemy.orm import Session

from tradeloop.db import Database
from tradeloop.llm.models import PromptExecution
from tradeloop.llm.schemas import LoggedExecution

log = structlog.get_logger(__name__)


# A listener runs inside the unit of work that wrote the row, in a savepoint: a failing
# listener is logged and rolled back alone, the execution row stays.
ExecutionListener = Callable[[Session, LoggedExecution], None]
_listeners: list[ExecutionListener] = []


def add_execution_listener(listener: ExecutionListener) -> None:
    """Call `listener(session, logged)` after each execution row is written (once per
    listener, however often it is added)."""
    if listener not in _listeners:
        _listeners.append(listener)


def remove_execution_listener(listener: ExecutionListener) -> None:
    if listener in _listeners:
        _listeners.remove(listener)


def write_execution(db: Database, logged: LoggedExecution) -> bool:
    """Store the row and run the listeners; False (and a logged error) when the write fails."""
    try:
        write_batch(db, [logged])
    except Exception as exc:  # logging must never break the caller
        log_write_failure(logged, exc)
        return False
    return True


def log_write_failure(logged: LoggedExecution, exc: Exception) -> None:
    log.error("prompt_execution_log_failed", execution_id=str(logged.id),
              error=f"{type(exc).__name__}: {str(exc)[:300]}")


def write_batch(db: Database, batch: list[LoggedExecution]) -> None:
    """Store the rows in one unit of work, each followed by its listeners; raises (and writes
    nothing) when a row cannot be inserted."""
    with db.unit_of_work() as session:
        _relax_commit_durability(session)
        for logged in batch:
            # A Core INSERT: the ORM's flush machinery would cost more than the row itself.
            session.execute(insert(PromptExecution), [_row_values(logged)])
            _notify_listeners(session, logged)


def _row_values(logged: LoggedExecution) -> dict[str, Any]:
    # The fields as they are: model_dump would copy the guardrail results for nothing.
    return dict(logged.__dict__)


def _relax_commit_durability(session: Session) -> None:
    # PostgreSQL: do not wait for the WAL flush of a log row (a crash may lose the last few
    # rows, never corrupt anything); the caller is not held up by a disk sync it does not need.
    if session.get_bind().dialect.name == "postgresql":
        session.execute(text("SET LOCAL synchronous_commit = off"))


def _notify_listeners(session: Session, logged: LoggedExecution) -> None:
    for listener in list(_listeners):
        try:
            with session.begin_nested():
                listener(session, logged)
        except Exception as exc:
            log.error("prompt_execution_listener_failed", execution_id=str(logged.id),
                      listener=getattr(listener, "__qualname__", repr(listener)),
                      error=f"{type(exc).__name__}: {str(exc)[:300]}")


def template_stats(session: Session, template_id: uuid.UUID, version: int | None = None, *,
                   owner_id: uuid.UUID | None) -> dict[str, Any]:
    """{executions, success_rate, avg_latency_ms, p95_latency_ms, total_cost_usd,
    input_tokens, output_tokens, last_executed_at} of a template, or of one version, over
    one owner's executions (every user's when `owner_id` is None)."""
    criteria = [PromptExecution.template_id == template_id]
    if version is not None:
        criteria.append(PromptExecution.template_version == version)
    if owner_id is not None:
        criteria.append(PromptExecution.user_id == owner_id)
    row = session.execute(select(
        func.count(), func.sum(case((PromptExecution.success, 1), else_=0)),
        func.avg(PromptExecution.response_time_ms), func.sum(PromptExecution.cost_usd),
        func.sum(PromptExecution.input_token_count), func.sum(PromptExecution.output_token_count),
        func.max(PromptExecution.executed_at)).where(*criteria)).one()
    count = int(row[0] or 0)
    return {
        "executions": count,
        "success_rate": None if count == 0 else round(int(row[1] or 0) / count, 4),
        "avg_latency_ms": None if row[2] is None else round(float(row[2]), 3),
        "p95_latency_ms": _p95_latency(session, criteria, count),
        "total_cost_usd": Decimal(row[3] or 0),
        "input_tokens": int(row[4] or 0),
        "output_tokens": int(row[5] or 0),
        "last_executed_at": row[6],
    }


def _p95_latency(session: Session, criteria: list[Any], count: int) -> float | None:
    # Nearest-rank percentile: the ceil(0.95 n)-th smallest latency, one indexed query.
    if count == 0:
        return None
    rank = math.ceil(0.95 * count)
    value = session.scalar(select(PromptExecution.response_time_ms).where(*criteria)
                           .order_by(PromptExecution.response_time_ms).offset(rank - 1).limit(1))
    return None if value is None else round(float(value), 3)


@dataclass(frozen=True)
class TemplateUsage:
    """One owner's executions of one template: what a template's usage counters hold."""

    executions: int = 0
    successes: int = 0
    total_latency_ms: float = 0.0
    last_executed_at: datetime | None = None

    @property
    def success_rate(self) -> float | None:
        return self.successes / self.executions if self.executions else None

    @property
    def avg_latency_ms(self) -> float | None:
        return self.total_latency_ms / self.executions if self.executions else None


def usage_by_template(session: Session, template_ids: Sequence[uuid.UUID],
                      owner_id: uuid.UUID) -> dict[uuid.UUID, TemplateUsage]:
    """The owner's usage of each template, in one grouped query (templates they never ran
    are left out)."""
    if not template_ids:
        return {}
    rows = session.execute(select(
        PromptExecution.template_id, func.count(),
        func.sum(case((PromptExecution.success, 1), else_=0)),
        func.sum(PromptExecution.response_time_ms), func.max(PromptExecution.executed_at))
        .where(PromptExecution.user_id == owner_id,
               PromptExecution.template_id.in_(template_ids))
        .group_by(PromptExecution.template_id))
    return {template_id: TemplateUsage(int(count), int(successes or 0), float(latency or 0.0),
                                       last)
            for template_id, count, successes, latency, last in rows}
