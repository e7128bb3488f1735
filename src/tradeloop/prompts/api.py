"""Prompts API (SPEC §7, seed 000's 18 endpoints) under /api/v1/prompts/.

`{template_id}` is a template's stable id; versions are numbered 1..n. Callers see global
templates and their own; someone else's template answers 404, a global one answers 403 to a
non-admin who tries to change it.
"""

from __future__ import annotations

import uuid
from typing import Annotated

from fastapi import APIRouter, Query, status

from tradeloop.accounts.dependencies import CurrentUser, DetachedUser, UserAggregateScope
from tradeloop.deps import DatabaseDep, ReadSessionDep, SessionDep, SettingsDep
from tradeloop.errors import error_responses
from tradeloop.prompts import playground, presenters, service
from tradeloop.prompts.rendering import validate_template
from tradeloop.prompts.resolution import render_limits
from tradeloop.prompts.schemas import (
    CloneBody,
    DiffRead,
    LabelBody,
    LabelHistory,
    LabelRead,
    RenderBody,
    RenderRead,
    RollbackBody,
    TemplateCreate,
    TemplateList,
    TemplateRead,
    TemplateUpdate,
    TestBody,
    TestRead,
    ValidateBody,
    ValidateRead,
    VersionList,
    VersionRead,
)
from tradeloop.prompts.service import Actor, TemplateFilters
from tradeloop.prompts.variables import VariableSpecError, normalize_variables, variable_names
from tradeloop.schema_types import Limit, Offset, Version

router = APIRouter(prefix="/api/v1/prompts", tags=["prompts"])
# Global templates are changed by admins only (403 to others); a clone names a strategy.
CHANGES_TEMPLATE = error_responses(403)

@router.get("/")
@router.get("", include_in_schema=False)
def list_templates(
        user: CurrentUser, session: SessionDep,
        type_: Annotated[str | None, Query(alias="type")] = None,
        language: str | None = None, timeframe: str | None = None,
        strategy_id: uuid.UUID | None = None, active: bool | None = None,
        default: bool | None = None, label: str | None = None,
        limit: Limit = 50,
        offset: Offset = 0) -> TemplateList:
    """Templates the caller can see (global and their own), filtered and paginated."""
    filters = TemplateFilters(template_type=type_, language=language, timeframe=timeframe,
                              strategy_id=strategy_id, is_active=active, is_default=default,
                              label=label)
    rows, total = service.list_templates(session=session, actor=Actor.of(user),
                                         filters=filters, limit=limit, offset=offset)
    return TemplateList(templates=presenters.templates(session, rows, user.id), total=total,
                        limit=limit, offset=offset)


@router.post("/", status_code=status.HTTP_201_CREATED, responses=error_responses(403, 404))
@router.post("", status_code=status.HTTP_201_CREATED, include_in_schema=False)
def create(body: TemplateCreate, user: CurrentUser, session: SessionDep,
           settings: SettingsDep) -> TemplateRead:
    """Create a template (version 1): global for admins, else for one of your strategies."""
    template = service.create_template(session=session, actor=Actor.of(user),
                                       draft=presenters.draft(body),
                                       limits=render_limits(settings))
    return presenters.template(session, template, user.id)


@router.post("/validate")
def validate(body: ValidateBody, user: DetachedUser, settings: SettingsDep) -> ValidateRead:
    """Check a template text without saving it: syntax errors with line numbers, and the
    variables it uses without declaring them (when `variables` is given)."""
    # A detached caller: no transaction (on SQLite, for a POST, the write lock) is held
    # while the text compiles.
    try:
        declared = None if body.variables is None else variable_names(
            normalize_variables(presenters.raw_variables(body.variables)))
    except VariableSpecError as exc:
        return ValidateRead(valid=False, errors=[{"kind": "invalid_variables",
                                                  "message": str(exc), "line": None,
                                                  "variable": None}])
    with playground.adhoc_render_slot(settings):
        issues = validate_template(body.template_text, declared,
                                   limits=render_limits(settings))
    return ValidateRead(valid=not issues, errors=[issue.as_dict() for issue in issues])


@router.post("/render", responses=error_responses(404))
def render(body: RenderBody, user: DetachedUser, session: ReadSessionDep,
           settings: SettingsDep) -> RenderRead:
    """Render a stored template (any version) or raw text with `variables`."""
    # Reads only: no transaction that would take SQLite's write lock while rendering.
    result = playground.render_preview(session=session, actor=Actor.of(user), body=body,
                                       settings=settings)
    return RenderRead(rendered=result.text, chars=len(result.text),
                      template_id=result.template_id, version=result.version,
                      render_ms=result.render_ms)


@router.post("/test", responses=error_responses(404))
def test(body: TestBody, user: DetachedUser, db: DatabaseDep, settings: SettingsDep) -> TestRead:
    """Render, then (with `execute: true`) run it through the LLM service: rendered text,
    tokens, cost, latency and guardrail results."""
    # No request session: run_test reads and writes in short units of work of its own.
    return playground.run_test(db=db, settings=settings, actor=Actor.of(user), body=body)


@router.get("/{template_id}")
def get(template_id: uuid.UUID, user: CurrentUser, session: SessionDep) -> TemplateRead:
    template = service.get_template(session=session, actor=Actor.of(user),
                                    template_id=template_id)
    return presenters.template(session, template, user.id)


@router.put("/{template_id}", responses=CHANGES_TEMPLATE)
def update(template_id: uuid.UUID, body: TemplateUpdate, user: CurrentUser,
           session: SessionDep, settings: SettingsDep) -> TemplateRead:
    """Edit a template: a changed text, variables or model_config becomes version n+1."""
    template = service.update_template(session=session, actor=Actor.of(user),
                                       template_id=template_id,
                                       changes=presenters.changes(body),
                                       limits=render_limits(settings))
    return presenters.template(session, template, user.id)


@router.delete("/{template_id}", responses=CHANGES_TEMPLATE)
def delete(template_id: uuid.UUID, user: CurrentUser, session: SessionDep) -> TemplateRead:
    """Deactivate a template (its versions and history are kept)."""
    return _set_active(template_id, user, session, active=False)


@router.get("/{template_id}/versions")
def versions(template_id: uuid.UUID, user: CurrentUser, session: SessionDep) -> VersionList:
    """Every version, newest first, with the labels pointing at each."""
    template = service.get_template(session=session, actor=Actor.of(user),
                                    template_id=template_id)
    return VersionList(template_id=template.id, versions=presenters.versions(
        session, template, service.list_versions(session=session, template=template)))


@router.get("/{template_id}/versions/{version}")
def version(template_id: uuid.UUID, version: Version, user: CurrentUser,
            session: SessionDep) -> VersionRead:
    template = service.get_template(session=session, actor=Actor.of(user),
                                    template_id=template_id)
    row = service.get_version(session=session, template=template, version=version)
    return presenters.versions(session, template, [row])[0]


@router.get("/{template_id}/diff")
def diff(template_id: uuid.UUID, user: CurrentUser, session: SessionDep,
         from_: Annotated[Version, Query(alias="from")], to: Version) -> DiffRead:
    """A unified diff between two versions (text, variables and model config)."""
    template = service.get_template(session=session, actor=Actor.of(user),
                                    template_id=template_id)
    text = service.diff_versions(session=session, template=template, from_version=from_,
                                 to_version=to)
    return DiffRead(template_id=template.id, from_version=from_, to_version=to, diff=text)


@router.post("/{template_id}/activate", responses=CHANGES_TEMPLATE)
def activate(template_id: uuid.UUID, user: CurrentUser, session: SessionDep) -> TemplateRead:
    return _set_active(template_id, user, session, active=True)


@router.post("/{template_id}/deactivate", responses=CHANGES_TEMPLATE)
def deactivate(template_id: uuid.UUID, user: CurrentUser, session: SessionDep) -> TemplateRead:
    return _set_active(template_id, user, session, active=False)


def _set_active(template_id: uuid.UUID, user: CurrentUser, session: SessionDep, *,
                active: bool) -> TemplateRead:
    template = service.set_active(session=session, actor=Actor.of(user),
                                  template_id=template_id, active=active)
    return presenters.template(session, template, user.id)


@router.post("/{template_id}/set-default", responses=CHANGES_TEMPLATE)
def set_default(template_id: uuid.UUID, user: CurrentUser, session: SessionDep) -> TemplateRead:
    """Make it the default of its scope (strategy or global), type and timeframe."""
    template = service.set_default(session=session, actor=Actor.of(user),
                                   template_id=template_id)
    return presenters.template(session, template, user.id)


@router.post("/{template_id}/labels", responses=CHANGES_TEMPLATE)
def add_label(template_id: uuid.UUID, body: LabelBody, user: CurrentUser,
              session: SessionDep) -> LabelRead:
    """Point a label at a version (default latest), moving it from wherever it was."""
    row = service.set_label(session=session, actor=Actor.of(user), template_id=template_id,
                            label=body.label, version=body.version)
    return LabelRead.model_validate(row)


@router.delete("/{template_id}/labels/{label}", status_code=status.HTTP_204_NO_CONTENT,
                responses=CHANGES_TEMPLATE)
def remove_label(template_id: uuid.UUID, label: str, user: CurrentUser,
                 session: SessionDep) -> None:
    service.remove_label(session=session, actor=Actor.of(user), template_id=template_id,
                         label=label)


@router.get("/{template_id}/labels/history")
def labels_history(template_id: uuid.UUID, user: CurrentUser,
                   session: SessionDep) -> LabelHistory:
    """Every label move (set, moved, removed) with who and when, oldest first."""
    template = service.get_template(session=session, actor=Actor.of(user),
                                    template_id=template_id)
    events = service.label_history(session=session, template=template)
    return LabelHistory(template_id=template.id,
                        events=[presenters.label_event(event) for event in events])


@router.post("/{template_id}/rollback", responses=CHANGES_TEMPLATE)
def rollback(template_id: uuid.UUID, body: RollbackBody, user: CurrentUser,
             session: SessionDep) -> TemplateRead:
    """Copy version `version`'s content into a new version n+1 (history is never rewritten)."""
    template = service.rollback(session=session, actor=Actor.of(user), template_id=template_id,
                                version=body.version)
    return presenters.template(session, template, user.id)


@router.post("/{template_id}/clone", status_code=status.HTTP_201_CREATED,
             responses=CHANGES_TEMPLATE)
def clone(template_id: uuid.UUID, body: CloneBody, user: CurrentUser,
          session: SessionDep) -> TemplateRead:
    """Copy a template you can read into a new one for one of your strategies."""
    template = service.clone(session=session, actor=Actor.of(user), template_id=template_id,
                             strategy_id=body.strategy_id, name=body.name,
                             version=body.version)
    return presenters.template(session, template, user.id)


@router.get("/{template_id}/stats")
def stats(template_id: uuid.UUID, user: CurrentUser, scope: UserAggregateScope,
          session: SessionDep, version: Version | None = None) -> dict[str, object]:
    """Execution statistics from the execution log (all versions, or one): your executions,
    every user's with `scope=all` (admins)."""
    template = service.get_template(session=session, actor=Actor.of(user),
                                    template_id=template_id)
    return {**playground.stats(session=session, template=template, version=version,
                               owner_id=scope.owner_id), "scope": scope.label}


@router.get("/{template_id}/performance")
def performance(template_id: uuid.UUID, user: CurrentUser, scope: UserAggregateScope,
                session: SessionDep) -> dict[str, object]:
    """Per-version comparison: executions, success rate, latency, tokens and cost of your
    executions (every user's with `scope=all`, admins)."""
    template = service.get_template(session=session, actor=Actor.of(user),
                                    template_id=template_id)
    return {**playground.performance(session=session, template=template,
                                     owner_id=scope.owner_id), "scope": scope.label}
