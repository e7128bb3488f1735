"""Admin prompts API (seed 001) under /api/v1/admin/prompts: the global templates.

Shapes follow seed 001: the list answers {"templates": [...], "total": n}; create takes
{name, version, template_text, variables, is_active, model_config}; test takes
{template_text, variables, model_config}. Non-admins get 404, like for any admin page.
"""

from __future__ import annotations

import uuid
from typing import Annotated

from fastapi import APIRouter, Query, status

from tradeloop.accounts.dependencies import AdminUser, DetachedAdmin
from tradeloop.deps import DatabaseDep, SessionDep, SettingsDep
from tradeloop.errors import NotFoundError
from tradeloop.prompts import playground, presenters, service
from tradeloop.prompts.models import PromptTemplate
from tradeloop.prompts.resolution import render_limits
from tradeloop.prompts.schemas import (
    AdminTemplateList,
    TemplateCreate,
    TemplateRead,
    TemplateUpdate,
    TestBody,
    TestRead,
)
from tradeloop.prompts.service import Actor, TemplateFilters
from tradeloop.schema_types import Limit, Offset

router = APIRouter(prefix="/api/v1/admin/prompts", tags=["admin"])


@router.get("")
def list_templates(admin: AdminUser, session: SessionDep,
                   type_: Annotated[str | None, Query(alias="type")] = None,
                   active: bool | None = None,
                   limit: Limit = 100,
                   offset: Offset = 0) -> AdminTemplateList:
    """The global templates."""
    rows, total = service.list_templates(
        session=session, actor=_global_only(admin),
        filters=TemplateFilters(template_type=type_, is_active=active), limit=limit,
        offset=offset)
    return AdminTemplateList(templates=presenters.templates(session, rows, None), total=total)


@router.post("", status_code=status.HTTP_201_CREATED)
def create(body: TemplateCreate, admin: AdminUser, session: SessionDep,
           settings: SettingsDep) -> TemplateRead:
    """Create a global template (a strategy_id makes it the admin's own, as in the user API)."""
    template = service.create_template(session=session, actor=Actor.of(admin),
                                       draft=presenters.draft(body),
                                       limits=render_limits(settings))
    return presenters.template(session, template, None)


@router.post("/test")
def test(body: TestBody, admin: DetachedAdmin, db: DatabaseDep, settings: SettingsDep) -> TestRead:
    """Render a template (id or raw text) with variables and optionally execute it."""
    # No request session: run_test reads and writes in short units of work of its own.
    return playground.run_test(db=db, settings=settings, actor=Actor.of(admin), body=body)


@router.get("/{template_id}")
def get(template_id: uuid.UUID, admin: AdminUser, session: SessionDep) -> TemplateRead:
    return presenters.template(session, _global_template(session, admin, template_id), None)


@router.put("/{template_id}")
def update(template_id: uuid.UUID, body: TemplateUpdate, admin: AdminUser,
           session: SessionDep, settings: SettingsDep) -> TemplateRead:
    """Edit a global template (changed content becomes a new version)."""
    _global_template(session, admin, template_id)
    template = service.update_template(session=session, actor=Actor.of(admin),
                                       template_id=template_id,
                                       changes=presenters.changes(body),
                                       limits=render_limits(settings))
    return presenters.template(session, template, None)


def _global_only(admin: AdminUser) -> Actor:
    # An actor without a user id sees global templates only.
    return Actor(None, admin.email, is_admin=True)


def _global_template(session: SessionDep, admin: AdminUser,
                     template_id: uuid.UUID) -> PromptTemplate:
    template = service.get_template(session=session, actor=_global_only(admin),
                                    template_id=template_id)
    if template.user_id is not None:
        raise NotFoundError("Prompt template not found", details={"id": str(template_id)})
    return template
