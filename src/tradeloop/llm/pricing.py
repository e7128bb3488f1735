"""What a call cost, in exact Decimal USD: an admin's `model_prices` row wins, else the
`genai-prices` table bundled with the package (no network), else zero with a warning.

The local rules-based analyst costs nothing.
"""

from __future__ import annotations

from dataclasses import dataclass
from decimal import Decimal

import structlog
from sqlalchemy import select
from sqlalchemy.orm import Session

from tradeloop.llm.models import ModelPrice

log = structlog.get_logger(__name__)

MILLION = Decimal(1_000_000)
COST_QUANTUM = Decimal("1e-12")  # the cost_usd column's scale
# Our provider names → genai-prices provider ids (an openai-compatible server may serve any
# vendor's model, so a miss there is retried without the provider).
GENAI_PROVIDER_IDS = {"openai": "openai", "anthropic": "anthropic", "gemini": "google"}


@dataclass(frozen=True)
class Cost:
    usd: Decimal
    source: str  # override | genai-prices | free | unknown


@dataclass(frozen=True)
class PerMillionPrice:
    """An admin's override, detached from the session: USD per million tokens."""

    input: Decimal
    output: Decimal


def find_override(session: Session, provider: str, model: str) -> PerMillionPrice | None:
    """The admin's price for this provider and model, if any."""
    row = session.scalars(select(ModelPrice).where(
        ModelPrice.provider == provider, ModelPrice.model == model)).first()
    return None if row is None else PerMillionPrice(row.input_per_million, row.output_per_million)


def call_cost(provider: str, model: str, input_tokens: int, output_tokens: int,
              override: PerMillionPrice | None) -> Cost:
    """The cost of a call: the override when there is one, else the bundled table."""
    if provider == "local":
        return Cost(Decimal(0), "free")
    if override is not None:
        usd = (input_tokens * override.input + output_tokens * override.output) / MILLION
        return Cost(_quantize(usd), "override")
    bundled = _bundled_cost(provider, model, input_tokens, output_tokens)
    if bundled is not None:
        return Cost(_quantize(bundled), "genai-prices")
    log.warning("llm_price_unknown", provider=provider, model=model,
                hint="add a price under /api/v1/admin/model-prices")
    return Cost(Decimal(0), "unknown")


def _bundled_cost(provider: str, model: str, input_tokens: int,
                  output_tokens: int) -> Decimal | None:
    from genai_prices import Usage, calc_price

    usage = Usage(input_tokens=input_tokens, output_tokens=output_tokens)
    provider_id = GENAI_PROVIDER_IDS.get(provider)
    for attempt in (provider_id, None) if provider_id else (None,):
        try:
            return Decimal(calc_price(usage, model_ref=model, provider_id=attempt).total_price)
        except LookupError:
            continue
    return None


def _quantize(value: Decimal) -> Decimal:
    return value.quantize(COST_QUANTUM)
