"""Prompt templates: create, read, edit (new immutable version), labels, flags, rollback, clone.

Who may do what: global templates (no owner, no strategy) are read by everyone and written by
admins only; a user's templates are tied to one of their own strategies and are invisible to
everyone else (404, like any foreign row). Every change bumps the cache counter in the same
transaction, so every process reloads on its next resolution (see `prompts.resolution`).
"""

from __future__ import annotations

import difflib
import re
import uuid
from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Any

import structlog
from sqlalchemy import Select, func, or_, select, update
from sqlalchemy.orm import Session

from tradeloop.db import utcnow
from tradeloop.errors import AppError, ForbiddenError, NotFoundError
from tradeloop.prompts import cache
from tradeloop.prompts.models import (
    SYSTEM_AUTHOR,
    PromptLabel,
    PromptLabelEvent,
    PromptTemplate,
    PromptTemplateVersion,
)
from tradeloop.prompts.rendering import DEFAULT_LIMITS, RenderLimits, validate_template
from tradeloop.prompts.variables import VariableSpecError, normalize_variables, variable_names
from tradeloop.strategies import service as strategies

log = structlog.get_logger(__name__)

LABEL_PATTERN = re.compile(r"^[a-z0-9][a-z0-9_.-]{0,63}$")
MODEL_CONFIG_KEYS = ("provider", "model_name", "temperature", "max_tokens")


@dataclass(frozen=True)
class Actor:
    """Who is acting: a user (with admin rights or not) or the system (seeding)."""

    user_id: uuid.UUID | None
    name: str
    is_admin: bool = False

    @classmethod
    def of(cls, user: Any) -> Actor:
        """The actor for an accounts User."""
        return cls(user.id, user.email, bool(user.is_admin))


SYSTEM = Actor(None, SYSTEM_AUTHOR, is_admin=True)


class InvalidTemplateError(AppError):
    """A template text or variable list that cannot be saved; `errors` lists every problem."""

    status_code = 422
    code = "invalid_template"

    def __init__(self, errors: list[dict[str, Any]]):
        super().__init__("The prompt template is invalid", details={"errors": errors})


@dataclass
class TemplateContent:
    """What a version holds: the text, its declared variables and the model config."""

    template_text: str
    variables: list[Any] = field(default_factory=list)
    model_config: dict[str, Any] = field(default_factory=dict)


@dataclass
class TemplateDraft:
    """Everything needed to create a template (version 1)."""

    name: str
    content: TemplateContent
    template_type: str = "analysis"
    timeframe: str = "daily"
    language: str = "en"
    description: str = ""
    strategy_id: uuid.UUID | None = None
    is_active: bool = True
    is_default: bool = False
    change_note: str = ""
    seed_key: str | None = None
    template_id: uuid.UUID | None = None  # a given id (import); new templates get a fresh one


@dataclass
class TemplateChanges:
    """An edit: content fields make version n+1; the rest change the template in place."""

    template_text: str | None = None
    variables: list[Any] | None = None
    model_config: dict[str, Any] | None = None
    name: str | None = None
    description: str | None = None
    template_type: str | None = None
    timeframe: str | None = None
    language: str | None = None
    is_active: bool | None = None
    change_note: str = ""


@dataclass(frozen=True)
class TemplateFilters:
    template_type: str | None = None
    language: str | None = None
    timeframe: str | None = None
    strategy_id: uuid.UUID | None = None
    is_active: bool | None = None
    is_default: bool | None = None
    label: str | None = None
    name: str | None = None


# ---------------------------------------------------------------------------- reading


def visible_templates(actor: Actor) -> Select[tuple[PromptTemplate]]:
    """SELECT of the templates `actor` may read: the global ones and their own."""
    query = select(PromptTemplate)
    if actor is SYSTEM:
        return query
    return query.where(or_(PromptTemplate.user_id.is_(None),
                           PromptTemplate.user_id == actor.user_id))


def list_templates(*, session: Session, actor: Actor, filters: TemplateFilters,
                   limit: int = 50, offset: int = 0) -> tuple[list[PromptTemplate], int]:
    """One page of the templates `actor` can see that match `filters`, and the total."""
    query = visible_templates(actor).where(*_filter_criteria(filters))
    if filters.label is not None:
        query = query.where(PromptTemplate.id.in_(
            select(PromptLabel.template_id).where(PromptLabel.label == filters.label)))
    total = session.scalar(select(func.count()).select_from(query.subquery())) or 0
    rows = session.scalars(query.order_by(PromptTemplate.template_type, PromptTemplate.name,
                                          PromptTemplate.id).limit(limit).offset(offset))
    return list(rows), int(total)


def _filter_criteria(filters: TemplateFilters) -> list[Any]:
    columns = {PromptTemplate.template_type: filters.template_type,
               PromptTemplate.language: filters.language,
               PromptTemplate.timeframe: filters.timeframe,
               PromptTemplate.strategy_id: filters.strategy_id,
               PromptTemplate.is_active: filters.is_active,
               PromptTemplate.is_default: filters.is_default,
               PromptTemplate.name: filters.name}
    return [column == value for column, value in columns.items() if value is not None]


def get_template(*, session: Session, actor: Actor, template_id: uuid.UUID) -> PromptTemplate:
    """A template `actor` may read; NotFoundError for missing and foreign ones alike."""
    template = session.scalars(visible_templates(actor).where(
        PromptTemplate.id == template_id)).first()
    if template is None:
        raise NotFoundError("Prompt template not found", details={"id": str(template_id)})
    return template


def get_version(*, session: Session, template: PromptTemplate,
                version: int | None = None) -> PromptTemplateVersion:
    """Version `version` of a template (its latest when None)."""
    number = template.latest_version if version is None else version
    row = session.scalars(select(PromptTemplateVersion).where(
        PromptTemplateVersion.template_id == template.id,
        PromptTemplateVersion.version == number)).first()
    if row is None:
        raise NotFoundError(f"Version {number} of this template does not exist; it has "
                            f"versions 1..{template.latest_version}",
                            details={"id": str(template.id), "version": number})
    return row


def list_versions(*, session: Session, template: PromptTemplate) -> list[PromptTemplateVersion]:
    """Every version of a template, newest first."""
    return list(session.scalars(select(PromptTemplateVersion).where(
        PromptTemplateVersion.template_id == template.id).order_by(
        PromptTemplateVersion.version.desc())))


def labels_of(*, session: Session, template_ids: Iterable[uuid.UUID]) -> dict[uuid.UUID,
                                                                            dict[str, int]]:
    """Each template's labels as {label: version}."""
    ids = list(template_ids)
    result: dict[uuid.UUID, dict[str, int]] = {template_id: {} for template_id in ids}
    if ids:
        for row in session.scalars(select(PromptLabel).where(PromptLabel.template_id.in_(ids))):
            result[row.template_id][row.label] = row.version
    return result


def diff_versions(*, session: Session, template: PromptTemplate, from_version: int,
                  to_version: int) -> str:
    """A unified diff of two versions' text (with their variables and model config)."""
    old = get_version(session=session, template=template, version=from_version)
    new = get_version(session=session, template=template, version=to_version)
    return "".join(difflib.unified_diff(
        _diffable(old).splitlines(keepends=True), _diffable(new).splitlines(keepends=True),
        fromfile=f"{template.name} v{from_version}", tofile=f"{template.name} v{to_version}"))


def _diffable(version: PromptTemplateVersion) -> str:
    variables = "".join(f"# variable {v['name']}: {v['type']}\n" for v in version.variables)
    config = "".join(f"# model {key}: {version.model_config_.get(key)}\n"
                     for key in MODEL_CONFIG_KEYS if key in version.model_config_)
    text = version.template_text
    return variables + config + text + ("" if text.endswith("\n") else "\n")


# ---------------------------------------------------------------------------- writing


def create_template(*, session: Session, actor: Actor, draft: TemplateDraft,
                    limits: RenderLimits = DEFAULT_LIMITS) -> PromptTemplate:
    """Store a new template with version 1; 422 with every problem if its text is invalid."""
    owner_id = _owner_for_scope(session, actor, draft.strategy_id)
    variables = _checked_content(draft.content, limits)
    template = PromptTemplate(
        id=draft.template_id or uuid.uuid4(), name=draft.name,
        description=draft.description, template_type=draft.template_type,
        timeframe=draft.timeframe, language=draft.language, user_id=owner_id,
        strategy_id=draft.strategy_id, is_active=draft.is_active, is_default=False,
        latest_version=1, created_by=actor.name, seed_key=draft.seed_key)
    session.add(template)
    session.flush()
    session.add(PromptTemplateVersion(
        template_id=template.id, version=1, template_text=draft.content.template_text,
        variables=variables, model_config_=_model_config(draft.content.model_config),
        change_note=draft.change_note or "created", created_by=actor.name))
    if draft.is_default:
        _make_default(session, template)
    _changed(session, template)
    log.info("prompt_template_created", template_id=str(template.id), name=template.name)
    return template


def _owner_for_scope(session: Session, actor: Actor, strategy_id: uuid.UUID | None) -> Any:
    """The owner a new template gets: none for global ones (admins only), else the caller,
    who must own the strategy."""
    if strategy_id is None:
        if not actor.is_admin:
            raise ForbiddenError("Only admins create global templates; give the strategy_id "
                                 "of one of your strategies to create a template for it",
                                 code="admin_only")
        return None
    if actor.user_id is None:
        raise AppError("A strategy-specific template needs a user who owns the strategy")
    strategies.get_strategy(session=session, owner_id=actor.user_id, strategy_id=strategy_id)
    return actor.user_id


def _checked_content(content: TemplateContent,
                     limits: RenderLimits) -> list[dict[str, Any]]:
    """The normalized declared variables, once text and variables pass validation."""
    variables = _normalized(content.variables)
    issues = validate_template(content.template_text, variable_names(variables), limits=limits)
    if issues:
        raise InvalidTemplateError([issue.as_dict() for issue in issues])
    return variables


def _normalized(variables: list[Any]) -> list[dict[str, Any]]:
    try:
        return normalize_variables(variables)
    except VariableSpecError as exc:
        raise InvalidTemplateError([{"kind": "invalid_variables", "message": str(exc),
                                     "line": None, "variable": None}]) from None


def _model_config(raw: dict[str, Any]) -> dict[str, Any]:
    unknown = set(raw) - set(MODEL_CONFIG_KEYS)
    if unknown:
        raise InvalidTemplateError([{
            "kind": "invalid_model_config", "variable": None, "line": None,
            "message": f"unknown model_config keys: {', '.join(sorted(unknown))}; allowed: "
                       f"{', '.join(MODEL_CONFIG_KEYS)}"}])
    return {key: raw.get(key) for key in MODEL_CONFIG_KEYS}


def writable_template(*, session: Session, actor: Actor,
                      template_id: uuid.UUID) -> PromptTemplate:
    """A template `actor` may change: 404 when they cannot see it, 403 for a global one
    when they are not an admin. Locks the row (FOR UPDATE) so concurrent edits queue."""
    template = session.scalars(visible_templates(actor).where(
        PromptTemplate.id == template_id).with_for_update()).first()
    if template is None:
        raise NotFoundError("Prompt template not found", details={"id": str(template_id)})
    if template.user_id is None and not actor.is_admin:
        raise ForbiddenError("Global templates are changed by admins only; clone it "
                             "(POST /api/v1/prompts/{id}/clone) for one of your strategies",
                             code="admin_only")
    return template


def update_template(*, session: Session, actor: Actor, template_id: uuid.UUID,
                    changes: TemplateChanges,
                    limits: RenderLimits = DEFAULT_LIMITS) -> PromptTemplate:
    """Apply an edit: changed content becomes version n+1 (linked to version n); name,
    description, type, timeframe, language and active flag change in place."""
    template = writable_template(session=session, actor=actor, template_id=template_id)
    current = get_version(session=session, template=template)
    content = TemplateContent(
        template_text=_pick(changes.template_text, current.template_text),
        variables=_pick(changes.variables, current.variables),
        model_config=_pick(changes.model_config, current.model_config_))
    if _content_differs(content, current):
        _add_version(session, actor, template, current, content, limits,
                     changes.change_note or "edited")
    for name in ("name", "description", "template_type", "timeframe", "language", "is_active"):
        value = getattr(changes, name)
        if value is not None:
            setattr(template, name, value)
    _changed(session, template)
    return template


def _pick(value: Any, default: Any) -> Any:
    return default if value is None else value


def _content_differs(content: TemplateContent, version: PromptTemplateVersion) -> bool:
    return (content.template_text != version.template_text
            or _normalized(content.variables) != version.variables
            or _model_config(content.model_config) != version.model_config_)


def _add_version(session: Session, actor: Actor, template: PromptTemplate,
                 previous: PromptTemplateVersion, content: TemplateContent,
                 limits: RenderLimits, note: str) -> PromptTemplateVersion:
    variables = _checked_content(content, limits)
    template.latest_version += 1
    version = PromptTemplateVersion(
        template_id=template.id, version=template.latest_version,
        previous_version_id=previous.id, template_text=content.template_text,
        variables=variables, model_config_=_model_config(content.model_config),
        change_note=note, created_by=actor.name)
    session.add(version)
    return version


def rollback(*, session: Session, actor: Actor, template_id: uuid.UUID,
             version: int) -> PromptTemplate:
    """Make version `version`'s content current again as a new version n+1 (history is never
    rewritten); labels stay where they are."""
    template = writable_template(session=session, actor=actor, template_id=template_id)
    target = get_version(session=session, template=template, version=version)
    current = get_version(session=session, template=template)
    content = TemplateContent(target.template_text, target.variables, target.model_config_)
    _add_version(session, actor, template, current, content, DEFAULT_LIMITS,
                 f"rollback to version {version}")
    _changed(session, template)
    return template


def set_active(*, session: Session, actor: Actor, template_id: uuid.UUID,
               active: bool) -> PromptTemplate:
    """Activate or deactivate a template (DELETE deactivates; versions are kept)."""
    template = writable_template(session=session, actor=actor, template_id=template_id)
    template.is_active = active
    _changed(session, template)
    return template


def set_default(*, session: Session, actor: Actor, template_id: uuid.UUID) -> PromptTemplate:
    """Make this template the default of its scope, type and timeframe (others lose it)."""
    template = writable_template(session=session, actor=actor, template_id=template_id)
    _make_default(session, template)
    _changed(session, template)
    return template


def _make_default(session: Session, template: PromptTemplate) -> None:
    session.execute(update(PromptTemplate).where(
        _same_column(PromptTemplate.user_id, template.user_id),
        _same_column(PromptTemplate.strategy_id, template.strategy_id),
        PromptTemplate.template_type == template.template_type,
        PromptTemplate.timeframe == template.timeframe,
        PromptTemplate.id != template.id).values(is_default=False).execution_options(
        synchronize_session="fetch"))
    template.is_default = True


def _same_column(column: Any, value: Any) -> Any:
    return column.is_(None) if value is None else column == value


def clone(*, session: Session, actor: Actor, template_id: uuid.UUID,
          strategy_id: uuid.UUID | None, name: str | None = None,
          version: int | None = None) -> PromptTemplate:
    """A new template (version 1) with the content of `version` (default latest) of a
    template the actor can read, for one of their strategies (or global, for admins)."""
    source = get_template(session=session, actor=actor, template_id=template_id)
    content = get_version(session=session, template=source, version=version)
    draft = TemplateDraft(
        name=name or f"{source.name} (copy)", description=source.description,
        template_type=source.template_type, timeframe=source.timeframe,
        language=source.language, strategy_id=strategy_id,
        content=TemplateContent(content.template_text, content.variables,
                                content.model_config_),
        change_note=f"cloned from {source.id} v{content.version}")
    return create_template(session=session, actor=actor, draft=draft)


# ---------------------------------------------------------------------------- labels


def set_label(*, session: Session, actor: Actor, template_id: uuid.UUID, label: str,
              version: int | None = None) -> PromptLabel:
    """Point `label` at `version` (default latest), moving it if it was elsewhere."""
    _check_label(label)
    template = writable_template(session=session, actor=actor, template_id=template_id)
    target = get_version(session=session, template=template, version=version).version
    row = session.get(PromptLabel, (template.id, label))
    previous = row.version if row is not None else None
    if row is None:
        row = PromptLabel(template_id=template.id, label=label, version=target,
                          updated_by=actor.name, updated_at=utcnow())
        session.add(row)
    else:
        row.version, row.updated_by, row.updated_at = target, actor.name, utcnow()
    _record_label_event(session, actor, template, label, previous, target)
    _changed(session, template)
    return row


def remove_label(*, session: Session, actor: Actor, template_id: uuid.UUID,
                 label: str) -> None:
    """Take `label` off the template (the removal is recorded in the history)."""
    template = writable_template(session=session, actor=actor, template_id=template_id)
    row = session.get(PromptLabel, (template.id, label))
    if row is None:
        raise NotFoundError(f"This template has no label '{label}'",
                            details={"label": label})
    _record_label_event(session, actor, template, label, row.version, None)
    session.delete(row)
    _changed(session, template)


def label_history(*, session: Session, template: PromptTemplate) -> list[PromptLabelEvent]:
    """Every label move of a template, oldest first."""
    return list(session.scalars(select(PromptLabelEvent).where(
        PromptLabelEvent.template_id == template.id).order_by(PromptLabelEvent.at,
                                                              PromptLabelEvent.id)))


def _check_label(label: str) -> None:
    if not LABEL_PATTERN.match(label):
        raise AppError("A label is 1-64 lower-case letters, digits, '.', '_' or '-', "
                       "starting with a letter or digit", code="invalid_label",
                       details={"label": label})


def _record_label_event(session: Session, actor: Actor, template: PromptTemplate, label: str,
                        from_version: int | None, to_version: int | None) -> None:
    session.add(PromptLabelEvent(template_id=template.id, label=label,
                                 from_version=from_version, to_version=to_version,
                                 actor=actor.name, at=utcnow()))


def _changed(session: Session, template: PromptTemplate) -> None:
    template.updated_at = utcnow()
    session.flush()
    cache.bump(session)
