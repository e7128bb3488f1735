"""The `anthropic` provider: the official SDK's Messages API (ANTHROPIC_API_BASE for a proxy
or gateway)."""

from __future__ import annotations

from functools import lru_cache
from typing import Any

import anthropic

from tradeloop.llm.providers.base import ProviderError, ProviderReply, ProviderRequest
from tradeloop.llm.providers.sdk_errors import classify_sdk_error
from tradeloop.settings import Settings

# The Messages API requires max_tokens; an analysis answer fits comfortably in this.
DEFAULT_MAX_TOKENS = 1024


class AnthropicMessagesProvider:
    name = "anthropic"

    def __init__(self, settings: Settings):
        if settings.anthropic_api_key is None:
            raise ProviderError("configuration_error",
                                "the anthropic provider needs ANTHROPIC_API_KEY")
        self._client = _cached_client(settings.anthropic_api_base,
                                      settings.anthropic_api_key.get_secret_value())

    def complete(self, request: ProviderRequest, *, timeout_s: float) -> ProviderReply:
        arguments: dict[str, Any] = {
            "model": request.model, "max_tokens": request.max_tokens or DEFAULT_MAX_TOKENS,
            "messages": [{"role": "user", "content": request.user_text}], "timeout": timeout_s}
        if request.system_text:
            arguments["system"] = request.system_text
        if request.temperature is not None:
            # Sent as a raw field: recent SDKs no longer name it, older ones and the API accept
            # it. Anthropic's range is 0..1; OpenAI-style configs may say up to 2.
            arguments["extra_body"] = {"temperature": min(request.temperature, 1.0)}
        try:
            message = self._client.messages.create(**arguments)
        except anthropic.AnthropicError as exc:
            raise classify_sdk_error(exc, anthropic) from exc
        return _reply(message, request.model)


def _reply(message: Any, requested_model: str) -> ProviderReply:
    blocks = getattr(message, "content", None) or []
    text = "".join(block.text for block in blocks if getattr(block, "type", None) == "text")
    usage = getattr(message, "usage", None)
    return ProviderReply(text=text, model=getattr(message, "model", None) or requested_model,
                         input_tokens=getattr(usage, "input_tokens", None),
                         output_tokens=getattr(usage, "output_tokens", None))


@lru_cache(maxsize=8)
def _cached_client(base_url: str | None, api_key: str) -> anthropic.Anthropic:
    return anthropic.Anthropic(api_key=api_key, base_url=base_url, max_retries=0)
