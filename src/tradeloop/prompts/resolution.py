"""Which template a generation uses, and rendering it (SPEC §7).

Resolution order: the strategy's own active default template → the global active default
template → a clear error. Within a template, the version labelled `production` is served when
that label exists, else the latest version. Results are cached per process and refreshed on
the next resolution after any change anywhere (`prompts.cache`).

Typical use (the signal generation flow)::

    prompt = resolve_prompt(session=session, owner_id=user.id, strategy_id=strategy.id)
    variables = analysis_variables(session, symbol="AAPL", timeframe="1d", strategy=…)
    text = prompt.render(variables)
    # store prompt.template_id, prompt.version, prompt.template_type on the signal
"""

from __future__ import annotations

import uuid
from collections.abc import Mapping
from dataclasses import dataclass, field, replace
from typing import Any

import structlog
from sqlalchemy import select
from sqlalchemy.orm import Session

from tradeloop.errors import AppError, NotFoundError
from tradeloop.prompts.cache import template_cache
from tradeloop.prompts.models import PromptLabel, PromptTemplate, PromptTemplateVersion
from tradeloop.prompts.rendering import (
    DEFAULT_LIMITS,
    CompiledPrompt,
    RenderError,
    RenderLimits,
    compile_template,
    render,
)
from tradeloop.prompts.variables import check_values

log = structlog.get_logger(__name__)

SERVED_LABEL = "production"
STORED_COMPILE_GRACE = 10  # times the render deadline, for compiling validated templates


class PromptNotConfiguredError(AppError):
    """No active default template for a strategy nor a global one."""

    status_code = 404
    code = "prompt_not_configured"


class PromptVariablesError(AppError):
    """Variables missing or of the wrong type for a template."""

    status_code = 422
    code = "invalid_variables"

    def __init__(self, errors: list[dict[str, str]]):
        super().__init__("The variables do not fit the template's declared variables: "
                         + "; ".join(e["message"] for e in errors), details={"errors": errors})


class PromptRenderFailedError(AppError):
    """A template that failed while rendering (limits, unsafe operation, bad value)."""

    status_code = 422
    code = "render_failed"

    def __init__(self, exc: RenderError):
        super().__init__(f"Rendering failed: {exc.message}"
                         + (f" (line {exc.line})" if exc.line else ""), details=exc.as_dict())


@dataclass(frozen=True)
class ResolvedPrompt:
    """One version of one template, compiled and ready to render.

    `template_id`, `version` and `template_type` are what a signal records as its prompt
    metadata; `model_config` says which provider/model/temperature/max_tokens to use
    (provider None = the configured default); `source` says how it was chosen
    (strategy | global | explicit).
    """

    template_id: uuid.UUID
    version: int
    name: str
    template_type: str
    timeframe: str
    language: str
    strategy_id: uuid.UUID | None
    variables: tuple[dict[str, Any], ...]
    model_config: dict[str, Any]
    source: str
    compiled: CompiledPrompt = field(repr=False)
    limits: RenderLimits = field(default=DEFAULT_LIMITS, repr=False)

    @property
    def text(self) -> str:
        return self.compiled.text

    def render(self, variables: Mapping[str, Any], *, limits: RenderLimits | None = None) -> str:
        """The prompt text for `variables`: every declared variable must be present with its
        type (PromptVariablesError otherwise); PromptRenderFailedError when rendering fails
        or passes a limit."""
        problems = check_values(self.variables, variables)
        if problems:
            raise PromptVariablesError(problems)
        try:
            text = render(self.compiled, variables, limits=limits or self.limits)
        except RenderError as exc:
            raise PromptRenderFailedError(exc) from None
        log.info(f"Rendered prompt ({len(text)} chars) from template: {self.name}",
                 template_id=str(self.template_id), version=self.version, chars=len(text))
        return text


def render_limits(settings: Any) -> RenderLimits:
    """The rendering limits configured in Settings (PROMPT_TEMPLATE_MAX_CHARS,
    PROMPT_OUTPUT_MAX_BYTES, PROMPT_RENDER_TIMEOUT_MS, PROMPT_RENDER_MAX_MEMORY_MB)."""
    return RenderLimits(max_template_chars=settings.prompt_template_max_chars,
                        max_output_bytes=settings.prompt_output_max_bytes,
                        timeout_s=settings.prompt_render_timeout_ms / 1000,
                        max_memory_bytes=settings.prompt_render_max_memory_mb * 2**20)


def resolve_prompt(*, session: Session, owner_id: uuid.UUID | None,
                   strategy_id: uuid.UUID | None = None, template_type: str = "analysis",
                   timeframe: str = "daily", template_id: uuid.UUID | None = None,
                   limits: RenderLimits = DEFAULT_LIMITS) -> ResolvedPrompt:
    """The template a generation for `owner_id`'s strategy uses.

    With `template_id`: that template (it must be active and global or the owner's; 404
    otherwise). Without: the strategy's active default of `template_type`/`timeframe`, else
    the global active default, else PromptNotConfiguredError.
    """
    if template_id is not None:
        key: tuple[Any, ...] = ("explicit", owner_id, template_id, limits)
        return template_cache.get_or_load(session, key, lambda: _load_explicit(
            session, owner_id, template_id, limits))
    key = ("default", owner_id, strategy_id, template_type, timeframe, limits)
    return template_cache.get_or_load(session, key, lambda: _load_default(
        session, owner_id, strategy_id, template_type, timeframe, limits))


def _load_explicit(session: Session, owner_id: uuid.UUID | None, template_id: uuid.UUID,
                   limits: RenderLimits) -> ResolvedPrompt:
    template = session.get(PromptTemplate, template_id)
    if template is None or template.user_id not in (None, owner_id):
        raise NotFoundError("Prompt template not found", details={"id": str(template_id)})
    if not template.is_active:
        raise AppError(f"Prompt template '{template.name}' is inactive; activate it or choose "
                       "another", code="prompt_inactive", details={"id": str(template_id)})
    resolved = _resolved(session, template, "explicit", limits)
    log.info(f"Loaded prompt: {template.name} (ID: {template.id})", template_id=str(template.id),
             version=resolved.version, source="explicit")
    return resolved


def _load_default(session: Session, owner_id: uuid.UUID | None, strategy_id: uuid.UUID | None,
                  template_type: str, timeframe: str, limits: RenderLimits) -> ResolvedPrompt:
    scopes: list[tuple[str, Any, Any]] = []
    if strategy_id is not None and owner_id is not None:
        scopes.append(("strategy", owner_id, strategy_id))
    scopes.append(("global", None, None))
    for source, user_id, scope_strategy in scopes:
        template = _active_default(session, user_id, scope_strategy, template_type, timeframe)
        if template is not None:
            resolved = _resolved(session, template, source, limits)
            wording = "strategy-specific" if source == "strategy" else "global default"
            log.info(f"Loaded {wording} prompt: {template.name} (ID: {template.id})",
                     template_id=str(template.id), version=resolved.version, source=source,
                     strategy_id=str(strategy_id) if strategy_id else None)
            return resolved
    raise PromptNotConfiguredError(
        f"No active default '{template_type}' prompt template for timeframe '{timeframe}'"
        + (" for this strategy nor" if strategy_id else "") + " globally. Seed the defaults "
        "(`tradeloop seed`), or activate a template and set it as default "
        "(POST /api/v1/prompts/{id}/set-default)",
        details={"template_type": template_type, "timeframe": timeframe,
                 "strategy_id": str(strategy_id) if strategy_id else None})


def _active_default(session: Session, user_id: Any, strategy_id: Any, template_type: str,
                    timeframe: str) -> PromptTemplate | None:
    query = select(PromptTemplate).where(
        PromptTemplate.is_active.is_(True), PromptTemplate.is_default.is_(True),
        PromptTemplate.template_type == template_type, PromptTemplate.timeframe == timeframe,
        PromptTemplate.user_id.is_(None) if user_id is None else PromptTemplate.user_id == user_id,
        PromptTemplate.strategy_id.is_(None) if strategy_id is None
        else PromptTemplate.strategy_id == strategy_id)
    return session.scalars(query.order_by(PromptTemplate.updated_at.desc()).limit(1)).first()


def served_version(session: Session, template: PromptTemplate) -> int:
    """The version resolution serves: the `production` label's, else the latest."""
    labelled = session.get(PromptLabel, (template.id, SERVED_LABEL))
    return labelled.version if labelled is not None else template.latest_version


def _resolved(session: Session, template: PromptTemplate, source: str,
              limits: RenderLimits) -> ResolvedPrompt:
    number = served_version(session, template)
    version = session.scalars(select(PromptTemplateVersion).where(
        PromptTemplateVersion.template_id == template.id,
        PromptTemplateVersion.version == number)).one()
    return ResolvedPrompt(
        template_id=template.id, version=version.version, name=template.name,
        template_type=template.template_type, timeframe=template.timeframe,
        language=template.language, strategy_id=template.strategy_id,
        variables=tuple(version.variables), model_config=dict(version.model_config_),
        source=source, compiled=compile_stored(version.template_text, limits), limits=limits)


def compile_stored(text: str, limits: RenderLimits) -> CompiledPrompt:
    """Compile a stored version's text; PromptRenderFailedError (422, with the line) when it
    no longer compiles (saved under other limits)."""
    # It compiled within the render deadline when it was validated, and its size and shape
    # bound the time compiling takes: a loaded machine must not fail a signal over it.
    try:
        return compile_template(text, limits=replace(
            limits, timeout_s=limits.timeout_s * STORED_COMPILE_GRACE))
    except RenderError as exc:
        raise PromptRenderFailedError(exc) from None
