"""Trying templates out: render previews, test executions through the LLM service, and the
statistics read back from the execution log."""

from __future__ import annotations

import threading
import time
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from decimal import Decimal
from typing import Any

from sqlalchemy.orm import Session

from tradeloop.db import Database
from tradeloop.errors import AppError
from tradeloop.llm import service as llm
from tradeloop.llm.schemas import ModelConfig
from tradeloop.prompts import service
from tradeloop.prompts.models import PromptTemplate
from tradeloop.prompts.rendering import CompiledPrompt, RenderError, render
from tradeloop.prompts.resolution import (
    PromptRenderFailedError,
    PromptVariablesError,
    compile_stored,
    render_limits,
)
from tradeloop.prompts.schemas import RenderBody, TestBody, TestRead
from tradeloop.prompts.service import Actor
from tradeloop.prompts.variables import check_values
from tradeloop.schema_types import plain_decimal
from tradeloop.settings import Settings


@dataclass(frozen=True)
class RenderResult:
    text: str
    template_id: uuid.UUID | None
    version: int | None
    render_ms: float
    model_config: dict[str, Any]


class RenderBusyError(AppError):
    """Every slot for rendering text sent with a request stayed taken for a whole render
    time limit."""

    status_code = 429
    code = "render_busy"


_SLOTS: dict[int, threading.BoundedSemaphore] = {}  # by configured count (one per app)
_SLOTS_LOCK = threading.Lock()


@contextmanager
def adhoc_render_slot(settings: Settings) -> Iterator[None]:
    """Hold one of the PROMPT_ADHOC_RENDER_CONCURRENCY slots of this process while compiling
    or rendering text sent with a request (`/render`, `/test`, `/validate`, admin test).

    Each render is bounded in time and memory; bounding how many run at once bounds what
    such requests can take from the process together (stored templates are not counted:
    they were validated, and signal generation must not queue behind playground requests).
    """
    with _SLOTS_LOCK:
        count = settings.prompt_adhoc_render_concurrency
        slots = _SLOTS.setdefault(count, threading.BoundedSemaphore(count))
    if not slots.acquire(timeout=settings.prompt_render_timeout_ms / 1000):
        raise RenderBusyError("Too many templates sent with requests are rendering right now; "
                              "retry in a moment", headers={"Retry-After": "1"})
    try:
        yield
    finally:
        slots.release()


def render_preview(*, session: Session, actor: Actor, body: RenderBody,
                   settings: Settings) -> RenderResult:
    """Render a stored template's version (default latest) or raw text with the variables;
    stored templates check the variables against their declared ones first."""
    if body.template_id is None:
        with adhoc_render_slot(settings):
            return _rendered(body.template_text or "", body.variables, settings)
    template = service.get_template(session=session, actor=actor, template_id=body.template_id)
    version = service.get_version(session=session, template=template, version=body.version)
    problems = check_values(version.variables, body.variables)
    if problems:
        raise PromptVariablesError(problems)
    compiled = compile_stored(version.template_text, render_limits(settings))
    return _rendered(compiled, body.variables, settings, template.id, version.version,
                     version.model_config_)


def _rendered(template: CompiledPrompt | str, variables: dict[str, Any], settings: Settings,
              template_id: uuid.UUID | None = None, version: int | None = None,
              model_config: dict[str, Any] | None = None) -> RenderResult:
    """Render text sent with the request (compiling counts against the deadline) or a stored
    version compiled beforehand (as signal generation renders it)."""
    started = time.perf_counter()
    try:
        rendered = render(template, variables, limits=render_limits(settings))
    except RenderError as exc:
        raise PromptRenderFailedError(exc) from None
    return RenderResult(rendered, template_id, version,
                        round((time.perf_counter() - started) * 1000, 3),
                        dict(model_config or {}))


def run_test(*, db: Database, settings: Settings, actor: Actor, body: TestBody) -> TestRead:
    """Render, then execute through the LLM service when `body.execute` (the execution is
    logged like any other), else estimate the input tokens and their cost.

    The template is read in a short read session, and the LLM call and its log write use
    units of work of their own: no transaction is open while the model answers (on SQLite
    one would hold the write lock they need for that long).
    """
    if actor.user_id is None:
        raise AppError("A test execution needs a user to log it for")
    with db.read_session() as session:
        result = render_preview(session=session, actor=actor, body=body, settings=settings)
    config = body.model_config_.model_dump() if body.model_config_ else result.model_config
    call = llm.PromptCall(
        user_id=actor.user_id, user_text=result.text, system_text=body.system_text,
        model_config=ModelConfig(**config), context=body.variables,
        template_id=result.template_id, template_version=result.version,
        expect_analysis=body.expect_analysis)
    if not body.execute:
        tokens, cost = llm.estimate(db, settings, call)
        return _test_read(result, executed=False, input_tokens=tokens, cost=cost)
    executed = llm.execute(db, settings, call)
    return _test_read(
        result, executed=True, success=executed.success, provider=executed.provider,
        model=executed.model, input_tokens=executed.input_tokens,
        output_tokens=executed.output_tokens, cost=executed.cost_usd,
        latency_ms=executed.latency_ms, response_text=executed.text,
        analysis=executed.analysis.model_dump(mode="json") if executed.analysis else None,
        error_type=executed.error_type, error_message=executed.error_message,
        guardrails=[g.model_dump(mode="json") for g in executed.guardrails],
        execution_id=executed.execution_id)


def _test_read(result: RenderResult, *, executed: bool, cost: Decimal,
               **fields: Any) -> TestRead:
    values: dict[str, Any] = {
        "success": None, "provider": None, "model": None, "input_tokens": 0,
        "output_tokens": 0, "latency_ms": 0.0, "response_text": None, "analysis": None,
        "error_type": None, "error_message": None, "guardrails": [], "execution_id": None}
    values.update(fields)
    return TestRead(rendered=result.text, chars=len(result.text),
                    template_id=result.template_id, version=result.version, executed=executed,
                    cost_usd=plain_decimal(cost), render_ms=result.render_ms, **values)


def stats(*, session: Session, template: PromptTemplate, version: int | None = None,
          owner_id: uuid.UUID | None) -> dict[str, Any]:
    """The execution log's statistics of a template (or one version of it), over one owner's
    executions (every user's when `owner_id` is None)."""
    if version is not None:
        service.get_version(session=session, template=template, version=version)
    figures = llm.template_stats(session, template.id, version, owner_id=owner_id)
    return {"template_id": str(template.id), "version": version, **_jsonable(figures)}


def performance(*, session: Session, template: PromptTemplate,
                owner_id: uuid.UUID | None) -> dict[str, Any]:
    """Each version side by side (executions, success rate, latency, tokens, cost), newest
    first, so an edit's effect shows at a glance; one owner's executions, or every user's."""
    rows = [{"version": v.version, "created_at": v.created_at.isoformat(),
             "change_note": v.change_note,
             **_jsonable(llm.template_stats(session, template.id, v.version,
                                            owner_id=owner_id))}
            for v in service.list_versions(session=session, template=template)]
    return {"template_id": str(template.id), "name": template.name,
            "latest_version": template.latest_version, "versions": rows,
            "overall": _jsonable(llm.template_stats(session, template.id, None,
                                                    owner_id=owner_id))}


def _jsonable(figures: dict[str, Any]) -> dict[str, Any]:
    return {key: plain_decimal(value) if isinstance(value, Decimal) else
            value.isoformat() if hasattr(value, "isoformat") else value
            for key, value in figures.items()}


def record_execution(session: Session, logged: Any) -> None:
    """Execution listener: count the execution on its template's usage statistics."""
    if logged.template_id is None:
        return
    template = session.get(PromptTemplate, logged.template_id, with_for_update=True)
    if template is None:
        return
    template.executions_count += 1
    template.success_count += int(bool(logged.success))
    template.total_latency_ms += float(logged.response_time_ms or 0.0)
    template.last_executed_at = logged.executed_at
    session.flush()
