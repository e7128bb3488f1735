"""LLM providers by name: `local` (rules-based analyst), `openai`, `anthropic`, `gemini`
(alias `vertex_ai`)."""

from __future__ import annotations

from tradeloop.llm.providers.base import (
    DEFAULT_MODELS,
    Provider,
    ProviderError,
    ProviderReply,
    ProviderRequest,
    RetryPolicy,
    canonical_provider,
    complete_with_retries,
)
from tradeloop.settings import Settings

__all__ = ["DEFAULT_MODELS", "Provider", "ProviderError", "ProviderReply", "ProviderRequest",
           "RetryPolicy", "canonical_provider", "complete_with_retries", "get_provider"]


def get_provider(name: str, settings: Settings) -> Provider:
    """The provider called `name` (or an alias of it); ProviderError('configuration_error')
    when it cannot run.

    The SDK modules load only when their provider is used, so the offline default starts fast.
    """
    name = canonical_provider(name)
    if name == "local":
        from tradeloop.llm.providers.local_analyst import LocalAnalystProvider

        return LocalAnalystProvider()
    if name in ("openai", "gemini"):
        from tradeloop.llm.providers.openai_chat import openai_compatible_provider

        return openai_compatible_provider(name, settings)
    if name == "anthropic":
        from tradeloop.llm.providers.anthropic_messages import AnthropicMessagesProvider

        return AnthropicMessagesProvider(settings)
    raise ProviderError("configuration_error", f"unknown LLM provider {name!r}; "
                        "use local, openai, anthropic or gemini (alias vertex_ai)")
