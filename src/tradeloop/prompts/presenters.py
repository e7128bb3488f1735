"""Turn API bodies into service values and rows into API shapes (batched: one query for the
versions and one for the labels of a whole page)."""

from __future__ import annotations

import uuid
from collections.abc import Sequence
from typing import Any

from sqlalchemy import select, tuple_
from sqlalchemy.orm import Session

from tradeloop.llm import service as llm
from tradeloop.prompts import service
from tradeloop.prompts.models import PromptLabelEvent, PromptTemplate, PromptTemplateVersion
from tradeloop.prompts.resolution import SERVED_LABEL
from tradeloop.prompts.schemas import (
    LabelEventRead,
    TemplateCreate,
    TemplateRead,
    TemplateUpdate,
    UsageStats,
    VariableBody,
    VersionRead,
)


def raw_variables(variables: Sequence[VariableBody | str]) -> list[Any]:
    return [v if isinstance(v, str) else v.model_dump() for v in variables]


def draft(body: TemplateCreate) -> service.TemplateDraft:
    content = service.TemplateContent(
        template_text=body.template_text, variables=raw_variables(body.variables),
        model_config=body.model_config_.model_dump())
    note = body.change_note or (f"version {body.version}" if body.version else "")
    return service.TemplateDraft(
        name=body.name, description=body.description, template_type=body.template_type,
        timeframe=body.timeframe, language=body.language, strategy_id=body.strategy_id,
        is_active=body.is_active, is_default=body.is_default, content=content,
        change_note=note)


def changes(body: TemplateUpdate) -> service.TemplateChanges:
    return service.TemplateChanges(
        template_text=body.template_text,
        variables=None if body.variables is None else raw_variables(body.variables),
        model_config=None if body.model_config_ is None else body.model_config_.model_dump(),
        name=body.name, description=body.description, template_type=body.template_type,
        timeframe=body.timeframe, language=body.language, is_active=body.is_active,
        change_note=body.change_note)


def template(session: Session, row: PromptTemplate,
             usage_of: uuid.UUID | None) -> TemplateRead:
    return templates(session, [row], usage_of)[0]


def templates(session: Session, rows: Sequence[PromptTemplate],
              usage_of: uuid.UUID | None) -> list[TemplateRead]:
    """API shapes of `rows` with their latest version, labels and the usage of `usage_of`'s
    executions (every user's when None), in at most three queries."""
    if not rows:
        return []
    session.flush()
    keys = [(row.id, row.latest_version) for row in rows]
    latest = {v.template_id: v for v in session.scalars(select(PromptTemplateVersion).where(
        tuple_(PromptTemplateVersion.template_id, PromptTemplateVersion.version).in_(keys)))}
    labels = service.labels_of(session=session, template_ids=[row.id for row in rows])
    usage = _usage(session, rows, usage_of)
    return [_read(row, latest[row.id], labels[row.id], usage[row.id]) for row in rows]


def _usage(session: Session, rows: Sequence[PromptTemplate],
           owner_id: uuid.UUID | None) -> dict[uuid.UUID, llm.TemplateUsage]:
    """Per template: its counters when they hold only what is asked for (every user's, or
    the owner's own template, which nobody else can run), else the owner's executions of it
    from the log: a global template's counters hold every user's, which are not theirs to see."""
    if owner_id is None:
        return {row.id: _counters(row) for row in rows}
    shared = {row.id for row in rows if row.user_id != owner_id}
    runs = llm.usage_by_template(session, sorted(shared), owner_id)
    return {row.id: runs.get(row.id, llm.TemplateUsage()) if row.id in shared
            else _counters(row) for row in rows}


def _counters(row: PromptTemplate) -> llm.TemplateUsage:
    return llm.TemplateUsage(row.executions_count, row.success_count, row.total_latency_ms,
                             row.last_executed_at)


def _read(row: PromptTemplate, latest: PromptTemplateVersion, labels: dict[str, int],
          usage: llm.TemplateUsage) -> TemplateRead:
    return TemplateRead(
        id=row.id, name=row.name, description=row.description,
        template_type=row.template_type, timeframe=row.timeframe, language=row.language,
        strategy_id=row.strategy_id, is_global=row.user_id is None, is_active=row.is_active,
        is_default=row.is_default, version=row.latest_version,
        served_version=labels.get(SERVED_LABEL, row.latest_version), labels=labels,
        template_text=latest.template_text, variables=latest.variables,
        model_config_=latest.model_config_, created_by=row.created_by,
        created_at=row.inserted_at, updated_at=row.updated_at,
        usage=UsageStats(executions=usage.executions, success_rate=usage.success_rate,
                         avg_latency_ms=usage.avg_latency_ms,
                         last_executed_at=usage.last_executed_at))


def versions(session: Session, row: PromptTemplate,
             version_rows: Sequence[PromptTemplateVersion]) -> list[VersionRead]:
    labels = service.labels_of(session=session, template_ids=[row.id])[row.id]
    by_version: dict[int, list[str]] = {}
    for label, number in sorted(labels.items()):
        by_version.setdefault(number, []).append(label)
    return [VersionRead(
        template_id=v.template_id, version=v.version, previous_version_id=v.previous_version_id,
        template_text=v.template_text, variables=v.variables, model_config_=v.model_config_,
        change_note=v.change_note, created_by=v.created_by, created_at=v.created_at,
        labels=by_version.get(v.version, [])) for v in version_rows]


def label_event(event: PromptLabelEvent) -> LabelEventRead:
    action = "set" if event.from_version is None else \
        "removed" if event.to_version is None else "moved"
    return LabelEventRead(label=event.label, from_version=event.from_version,
                          to_version=event.to_version, action=action, actor=event.actor,
                          at=event.at)
