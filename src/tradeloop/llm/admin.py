"""Managing the llm tables: guardrails and model price overrides (admins), and reading the
execution log (each user their own rows). No HTTP here; `api.py` is the thin router."""

from __future__ import annotations

import uuid
from typing import Any, TypeVar

from sqlalchemy import func, select
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session

from tradeloop.db import utcnow
from tradeloop.errors import ConflictError, FieldValidationError, NotFoundError
from tradeloop.llm.guardrails import GuardrailConfigError, validate_definition
from tradeloop.llm.models import ModelPrice, PromptExecution, PromptGuardrail
from tradeloop.llm.schemas import (
    AppliesTo,
    GuardrailAction,
    GuardrailIn,
    GuardrailUpdate,
    ModelPriceIn,
    ModelPriceUpdate,
    RuleType,
)
from tradeloop.ownership import OwnedRepository

Row = TypeVar("Row", PromptGuardrail, ModelPrice)


class ExecutionRepository(OwnedRepository[PromptExecution]):
    model = PromptExecution
    label = "Execution"


# ---------------------------------------------------------------- guardrails

def list_guardrails(*, session: Session, rule_type: RuleType | None = None,
                    applies_to: AppliesTo | None = None, active: bool | None = None,
                    template_id: uuid.UUID | None = None, limit: int = 100,
                    offset: int = 0) -> tuple[list[PromptGuardrail], int]:
    """One page of guardrails matching the filters (None: any), oldest first, and the total."""
    criteria = [column == value for column, value in (
        (PromptGuardrail.rule_type, rule_type and rule_type.value),
        (PromptGuardrail.applies_to, applies_to and applies_to.value),
        (PromptGuardrail.is_active, active), (PromptGuardrail.template_id, template_id),
    ) if value is not None]
    return _page(session, PromptGuardrail, criteria,
                 (PromptGuardrail.created_at, PromptGuardrail.id), limit, offset)


def get_guardrail(*, session: Session, guardrail_id: uuid.UUID) -> PromptGuardrail:
    row = session.get(PromptGuardrail, guardrail_id)
    if row is None:
        raise NotFoundError("Guardrail not found", details={"id": str(guardrail_id)})
    return row


def create_guardrail(*, session: Session, body: GuardrailIn,
                     created_by: uuid.UUID) -> PromptGuardrail:
    """A new guardrail, its config checked (patterns compile, schemas are valid) first."""
    config = _checked_config(body.rule_type, body.applies_to, body.action, body.config)
    row = PromptGuardrail(name=body.name, description=body.description,
                          rule_type=body.rule_type.value, applies_to=body.applies_to.value,
                          action=body.action.value, config=config, is_active=body.is_active,
                          template_id=body.template_id, created_by=created_by)
    session.add(row)
    session.flush()
    return row


def update_guardrail(*, session: Session, guardrail_id: uuid.UUID,
                     body: GuardrailUpdate) -> PromptGuardrail:
    """Change the given fields; the resulting definition is checked as a whole."""
    row = get_guardrail(session=session, guardrail_id=guardrail_id)
    changes = body.model_dump(exclude_unset=True)
    merged: dict[str, Any] = {
        "rule_type": RuleType(changes.get("rule_type") or row.rule_type),
        "applies_to": AppliesTo(changes.get("applies_to") or row.applies_to),
        "action": GuardrailAction(changes.get("action") or row.action),
        "config": changes["config"] if changes.get("config") is not None else row.config,
    }
    config = _checked_config(merged["rule_type"], merged["applies_to"], merged["action"],
                             merged["config"])
    for field in ("name", "is_active"):  # null keeps the value, as for the fields above
        if changes.get(field) is not None:
            setattr(row, field, changes[field])
    for field in ("description", "template_id"):  # optional columns: null clears them
        if field in changes:
            setattr(row, field, changes[field])
    row.rule_type, row.applies_to = merged["rule_type"].value, merged["applies_to"].value
    row.action, row.config, row.updated_at = merged["action"].value, config, utcnow()
    session.flush()
    return row


def delete_guardrail(*, session: Session, guardrail_id: uuid.UUID) -> None:
    session.delete(get_guardrail(session=session, guardrail_id=guardrail_id))
    session.flush()


def _checked_config(rule_type: RuleType, applies_to: AppliesTo, action: GuardrailAction,
                    config: dict[str, Any]) -> dict[str, Any]:
    try:
        return validate_definition(rule_type, applies_to, action, config)
    except GuardrailConfigError as exc:
        raise FieldValidationError([{"field": exc.field, "message": exc.message,
                                     "type": "guardrail_config"}],
                                   message=f"Invalid guardrail: {exc.message}") from exc


# ---------------------------------------------------------------- model prices

def list_prices(*, session: Session, provider: str | None = None, limit: int = 100,
                offset: int = 0) -> tuple[list[ModelPrice], int]:
    criteria = [ModelPrice.provider == provider] if provider else []
    return _page(session, ModelPrice, criteria, (ModelPrice.provider, ModelPrice.model),
                 limit, offset)


def get_price(*, session: Session, price_id: uuid.UUID) -> ModelPrice:
    row = session.get(ModelPrice, price_id)
    if row is None:
        raise NotFoundError("Model price not found", details={"id": str(price_id)})
    return row


def create_price(*, session: Session, body: ModelPriceIn) -> ModelPrice:
    """A price override for one provider's model; 409 when that pair already has one."""
    row = ModelPrice(provider=body.provider, model=body.model,
                     input_per_million=body.input_per_million,
                     output_per_million=body.output_per_million)
    try:
        with session.begin_nested():
            session.add(row)
            session.flush()
    except IntegrityError as exc:
        raise ConflictError("A price for this provider and model exists; update it instead",
                            details={"provider": body.provider, "model": body.model}) from exc
    return row


def update_price(*, session: Session, price_id: uuid.UUID, body: ModelPriceUpdate) -> ModelPrice:
    row = get_price(session=session, price_id=price_id)
    if body.input_per_million is not None:
        row.input_per_million = body.input_per_million
    if body.output_per_million is not None:
        row.output_per_million = body.output_per_million
    row.updated_at = utcnow()
    session.flush()
    return row


def delete_price(*, session: Session, price_id: uuid.UUID) -> None:
    session.delete(get_price(session=session, price_id=price_id))
    session.flush()


def _page(session: Session, model: type[Row], criteria: list[Any], order_by: tuple[Any, ...],
          limit: int, offset: int) -> tuple[list[Row], int]:
    """One page of an admin table's rows matching every criterion, and their total."""
    rows = session.scalars(select(model).where(*criteria).order_by(*order_by)
                           .limit(limit).offset(offset))
    total = session.scalar(select(func.count()).select_from(model).where(*criteria))
    return list(rows), int(total or 0)


# ---------------------------------------------------------------- execution log

def list_executions(*, session: Session, owner_id: uuid.UUID,
                    template_id: uuid.UUID | None = None, success: bool | None = None,
                    limit: int = 50, offset: int = 0) -> tuple[list[PromptExecution], int]:
    """The owner's executions, newest first."""
    return ExecutionRepository(session, owner_id).page(
        {PromptExecution.template_id: template_id, PromptExecution.success: success},
        order_by=[PromptExecution.executed_at.desc(), PromptExecution.id],
        limit=limit, offset=offset)


def get_execution(*, session: Session, owner_id: uuid.UUID,
                  execution_id: uuid.UUID) -> PromptExecution:
    """The owner's execution; 404 for a missing or someone else's."""
    return ExecutionRepository(session, owner_id).get(execution_id)
