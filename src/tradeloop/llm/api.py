"""LLM API: guardrails and model price overrides (admins), and each user's execution log."""

from __future__ import annotations

import uuid

from fastapi import APIRouter, status

from tradeloop.accounts.dependencies import AdminUser, CurrentUser
from tradeloop.deps import SessionDep, SettingsDep
from tradeloop.errors import error_responses
from tradeloop.llm import admin, pricing
from tradeloop.llm.schemas import (
    AppliesTo,
    EffectivePrice,
    ExecutionList,
    ExecutionRead,
    GuardrailIn,
    GuardrailList,
    GuardrailRead,
    GuardrailUpdate,
    ModelConfig,
    ModelPriceIn,
    ModelPriceList,
    ModelPriceRead,
    ModelPriceUpdate,
    RuleType,
)
from tradeloop.llm.service import resolve_model
from tradeloop.schema_types import Count, Limit, Offset

router = APIRouter(tags=["llm"])
GUARDRAILS = "/api/v1/admin/guardrails"
PRICES = "/api/v1/admin/model-prices"
EXECUTIONS = "/api/v1/llm/executions"


@router.get(GUARDRAILS)
def list_guardrails(_admin: AdminUser, session: SessionDep, rule_type: RuleType | None = None,
                    applies_to: AppliesTo | None = None, active: bool | None = None,
                    template_id: uuid.UUID | None = None, limit: Limit = 100,
                    offset: Offset = 0) -> GuardrailList:
    """Every guardrail matching the filters, as `{"guardrails": [...], "total": n}`."""
    rows, total = admin.list_guardrails(session=session, rule_type=rule_type,
                                        applies_to=applies_to, active=active,
                                        template_id=template_id, limit=limit, offset=offset)
    return GuardrailList(guardrails=[GuardrailRead.model_validate(r) for r in rows], total=total)


@router.post(GUARDRAILS, status_code=status.HTTP_201_CREATED)
def create_guardrail(body: GuardrailIn, user: AdminUser, session: SessionDep) -> GuardrailRead:
    """Add a guardrail; its pattern, keywords or schema are checked before it is stored."""
    row = admin.create_guardrail(session=session, body=body, created_by=user.id)
    return GuardrailRead.model_validate(row)


@router.get(GUARDRAILS + "/{guardrail_id}")
def get_guardrail(guardrail_id: uuid.UUID, _admin: AdminUser,
                  session: SessionDep) -> GuardrailRead:
    return GuardrailRead.model_validate(
        admin.get_guardrail(session=session, guardrail_id=guardrail_id))


@router.put(GUARDRAILS + "/{guardrail_id}")
def update_guardrail(guardrail_id: uuid.UUID, body: GuardrailUpdate, _admin: AdminUser,
                     session: SessionDep) -> GuardrailRead:
    """Change the given fields of a guardrail."""
    return GuardrailRead.model_validate(
        admin.update_guardrail(session=session, guardrail_id=guardrail_id, body=body))


@router.delete(GUARDRAILS + "/{guardrail_id}", status_code=status.HTTP_204_NO_CONTENT)
def delete_guardrail(guardrail_id: uuid.UUID, _admin: AdminUser, session: SessionDep) -> None:
    admin.delete_guardrail(session=session, guardrail_id=guardrail_id)


@router.get(PRICES)
def list_prices(_admin: AdminUser, session: SessionDep, provider: str | None = None,
                limit: Limit = 100, offset: Offset = 0) -> ModelPriceList:
    """The price overrides (USD per million tokens), as `{"prices": [...], "total": n}`."""
    rows, total = admin.list_prices(session=session, provider=provider, limit=limit,
                                    offset=offset)
    return ModelPriceList(prices=[ModelPriceRead.model_validate(r) for r in rows], total=total)


@router.get(PRICES + "/effective")
def effective_price(_admin: AdminUser, session: SessionDep, settings: SettingsDep,
                    provider: str | None = None, model: str | None = None,
                    input_tokens: Count = 1_000_000,
                    output_tokens: Count = 1_000_000) -> EffectivePrice:
    """What a call of that size costs and which table the price comes from."""
    provider, model = resolve_model(settings, ModelConfig(provider=provider, model_name=model))
    cost = pricing.call_cost(provider, model, input_tokens, output_tokens,
                             pricing.find_override(session, provider, model))
    return EffectivePrice(provider=provider, model=model, input_tokens=input_tokens,
                          output_tokens=output_tokens, cost_usd=cost.usd, source=cost.source)


@router.post(PRICES, status_code=status.HTTP_201_CREATED, responses=error_responses(409))
def create_price(body: ModelPriceIn, _admin: AdminUser, session: SessionDep) -> ModelPriceRead:
    """Price a provider's model; it wins over the bundled price table."""
    return ModelPriceRead.model_validate(admin.create_price(session=session, body=body))


@router.get(PRICES + "/{price_id}")
def get_price(price_id: uuid.UUID, _admin: AdminUser, session: SessionDep) -> ModelPriceRead:
    return ModelPriceRead.model_validate(admin.get_price(session=session, price_id=price_id))


@router.put(PRICES + "/{price_id}")
def update_price(price_id: uuid.UUID, body: ModelPriceUpdate, _admin: AdminUser,
                 session: SessionDep) -> ModelPriceRead:
    return ModelPriceRead.model_validate(
        admin.update_price(session=session, price_id=price_id, body=body))


@router.delete(PRICES + "/{price_id}", status_code=status.HTTP_204_NO_CONTENT)
def delete_price(price_id: uuid.UUID, _admin: AdminUser, session: SessionDep) -> None:
    admin.delete_price(session=session, price_id=price_id)


@router.get(EXECUTIONS)
def list_executions(user: CurrentUser, session: SessionDep,
                    template_id: uuid.UUID | None = None, success: bool | None = None,
                    limit: Limit = 50, offset: Offset = 0) -> ExecutionList:
    """The caller's logged prompt executions, newest first."""
    rows, total = admin.list_executions(session=session, owner_id=user.id,
                                        template_id=template_id, success=success,
                                        limit=limit, offset=offset)
    return ExecutionList(executions=[ExecutionRead.model_validate(r) for r in rows], total=total)


@router.get(EXECUTIONS + "/{execution_id}")
def get_execution(execution_id: uuid.UUID, user: CurrentUser,
                  session: SessionDep) -> ExecutionRead:
    """One of the caller's executions (404 for anyone else's)."""
    return ExecutionRead.model_validate(
        admin.get_execution(session=session, owner_id=user.id, execution_id=execution_id))
