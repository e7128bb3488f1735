"""The composition root: which domains exist, their routers, task modules and models."""

from __future__ import annotations

import importlib

from fastapi import APIRouter

# Routes are matched in this order, one by one: the webhooks router (the hot path under alert
# bursts) comes first so a webhook skips the other ~200.
ROUTER_MODULES = (
    "tradeloop.webhooks.api",
    "tradeloop.signals.api",
    "tradeloop.trading.api",
    "tradeloop.health_api",
    "tradeloop.accounts.api",
    "tradeloop.market_data.api",
    "tradeloop.strategies.api",
    "tradeloop.backtest.api",
    "tradeloop.market_context.api",
    "tradeloop.monitoring.api",
    "tradeloop.prompts.api",
    "tradeloop.prompts.admin_api",
    "tradeloop.llm.api",
    "tradeloop.web.api",
    "tradeloop.web.signals", "tradeloop.web.webhook_endpoints",
    "tradeloop.web.docs",
)
TASK_MODULES = ("tradeloop.accounts.tasks", "tradeloop.market_data.tasks",
                "tradeloop.backtest.tasks", "tradeloop.signals.tasks", "tradeloop.trading.tasks",
                "tradeloop.prompts.tasks")
MODEL_MODULES = (
    "tradeloop.accounts.models",
    "tradeloop.market_data.models",
    "tradeloop.strategies.models",
    "tradeloop.backtest.models",
    "tradeloop.signals.models",
    "tradeloop.webhooks.models",
    "tradeloop.trading.models",
    "tradeloop.market_context.models",
    "tradeloop.llm.models",
    "tradeloop.prompts.models",
)


def routers() -> list[APIRouter]:
    return [importlib.import_module(name).router for name in ROUTER_MODULES]


def load_models() -> None:
    """Import every model module so `Base.metadata` knows all tables (for Alembic)."""
    for name in MODEL_MODULES:
        importlib.import_module(name)
