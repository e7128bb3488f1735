"""The `openai` and `gemini` providers: the official SDK against an OpenAI-compatible
chat-completions server. `openai`: OPENAI_API_BASE (OpenAI, vLLM, Ollama, llama.cpp, …);
`gemini`: Gemini's own OpenAI-compatible endpoint (GEMINI_API_BASE) with GEMINI_API_KEY."""

from __future__ import annotations

from functools import lru_cache
from typing import Any

import openai

from tradeloop.llm.providers.base import ProviderError, ProviderReply, ProviderRequest
from tradeloop.llm.providers.sdk_errors import classify_sdk_error
from tradeloop.settings import Settings

# Local OpenAI-compatible servers ignore the key, but the SDK refuses to start without one.
KEYLESS_PLACEHOLDER = "unused"


def openai_compatible_provider(name: str, settings: Settings) -> OpenAIChatProvider:
    """`openai` or `gemini` as configured; ProviderError('configuration_error') without the
    key it needs."""
    if name == "gemini":
        if settings.gemini_api_key is None:
            raise ProviderError("configuration_error", "the gemini provider needs "
                                "GEMINI_API_KEY (a Gemini API key)")
        return OpenAIChatProvider(name, settings.gemini_api_base,
                                  settings.gemini_api_key.get_secret_value())
    key = settings.openai_api_key.get_secret_value() if settings.openai_api_key else None
    if not key and not settings.openai_api_base:
        raise ProviderError("configuration_error", "the openai provider needs "
                            "OPENAI_API_KEY, or OPENAI_API_BASE for a keyless local server")
    return OpenAIChatProvider(name, settings.openai_api_base, key or KEYLESS_PLACEHOLDER)


class OpenAIChatProvider:
    """Chat completions at `base_url` (None: OpenAI's own) with `api_key`."""

    def __init__(self, name: str, base_url: str | None, api_key: str):
        self.name = name
        self._client = _client(base_url, api_key)

    def complete(self, request: ProviderRequest, *, timeout_s: float) -> ProviderReply:
        try:
            response = self._create(request, timeout_s, json_mode=request.json_mode)
        except ProviderError as exc:
            # Some compatible servers (older llama.cpp, some vLLM builds) reject response_format;
            # the tolerant JSON extraction downstream copes without it.
            if not (request.json_mode and exc.error_type == "bad_request"):
                raise
            response = self._create(request, timeout_s, json_mode=False)
        return _reply(response, request.model)

    def _create(self, request: ProviderRequest, timeout_s: float, *, json_mode: bool) -> Any:
        arguments: dict[str, Any] = {"model": request.model, "messages": _messages(request),
                                     "timeout": timeout_s}
        if request.temperature is not None:
            arguments["temperature"] = request.temperature
        if request.max_tokens is not None:
            arguments["max_tokens"] = request.max_tokens
        if json_mode:
            arguments["response_format"] = {"type": "json_object"}
        try:
            return self._client.chat.completions.create(**arguments)
        except openai.OpenAIError as exc:
            raise classify_sdk_error(exc, openai) from exc


def _messages(request: ProviderRequest) -> list[dict[str, str]]:
    messages = [{"role": "system", "content": request.system_text}] if request.system_text else []
    return [*messages, {"role": "user", "content": request.user_text}]


def _reply(response: Any, requested_model: str) -> ProviderReply:
    choices = getattr(response, "choices", None) or []
    if not choices or choices[0].message is None:
        raise ProviderError("malformed_output", "the provider answered without a choice")
    text = choices[0].message.content or ""
    usage = getattr(response, "usage", None)
    return ProviderReply(text=text, model=getattr(response, "model", None) or requested_model,
                         input_tokens=getattr(usage, "prompt_tokens", None),
                         output_tokens=getattr(usage, "completion_tokens", None))


@lru_cache(maxsize=8)
def _client(base_url: str | None, api_key: str) -> openai.OpenAI:
    # One client (and connection pool) per base URL and key; retries are ours, not the SDK's.
    return openai.OpenAI(api_key=api_key, base_url=base_url, max_retries=0)
