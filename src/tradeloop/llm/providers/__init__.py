"""LLM providers by name: `local` (rules-based analyst), `openai`, `anthropic`."""

from __future__ import annotations

from tradeloop.llm.providers.base import (
    DEFAULT_MODELS,
    Provider,
    ProviderError,
    ProviderReply,
    ProviderRequest,
    RetryPolicy,
    complete_with_retries,
)
from tradeloop.settings import Settings

__all__ = ["DEFAULT_MODELS", "Provider", "ProviderError", "ProviderReply", "ProviderRequest",
           "RetryPolicy", "complete_with_retries", "get_provider"]


def get_provider(name: str, settings: Settings) -> Provider:
    """The provider called `name`; ProviderError('configuration_error') when it cannot run.

    The SDK modules load only when their provider is used, so the offline default starts fast.
    """
    if name == "local":
        from tradeloop.llm.providers.local_analyst import LocalAnalystProvider

        return LocalAnalystProvider()
    if name == "openai":
        from tradeloop.llm.providers.openai_chat import OpenAIChatProvider

        return OpenAIChatProvider(settings)
    if name == "anthropic":
        from tradeloop.llm.providers.anthropic_messages import AnthropicMessagesProvider

        return AnthropicMessagesProvider(settings)
    raise ProviderError("configuration_error", f"unknown LLM provider {name!r}; "
                        "use local, openai or anthropic")
