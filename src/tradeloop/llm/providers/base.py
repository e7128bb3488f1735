"""What every provider takes and returns, its failures, and the one retry loop.

The SDKs' own retries are switched off (`max_retries=0`) so that this loop is the only one:
it knows the overall deadline, which the SDKs do not.
"""

from __future__ import annotations

import random
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from email.utils import parsedate_to_datetime
from typing import Any, Protocol

import structlog

log = structlog.get_logger(__name__)

# The model used when neither the call's model config nor LLM_MODEL names one.
DEFAULT_MODELS = {"local": "rules-analyst-v1", "openai": "gpt-4o-mini",
                  "anthropic": "claude-3-5-haiku-latest", "gemini": "gemini-2.5-flash"}
# Other names of a provider: seed 001 calls Gemini `vertex_ai`. Calls go to the Gemini API
# with a Gemini API key (not Vertex AI's own endpoint and Google Cloud credentials).
PROVIDER_ALIASES = {"vertex_ai": "gemini"}
# The cap on one backoff sleep; a server's retry-after longer than the deadline ends the call.
MAX_BACKOFF_S = 30.0


def canonical_provider(name: str) -> str:
    """The provider an alias stands for (`vertex_ai` → `gemini`); other names unchanged."""
    return PROVIDER_ALIASES.get(name, name)


@dataclass(frozen=True)
class ProviderRequest:
    """One chat turn: an optional system message and the user's prompt."""

    user_text: str
    system_text: str | None
    model: str
    temperature: float | None
    max_tokens: int | None
    json_mode: bool  # ask for a JSON object where the provider supports it
    context: Mapping[str, Any] = field(default_factory=dict)


@dataclass(frozen=True)
class ProviderReply:
    """The answer text and the token counts the provider reported (None when it did not)."""

    text: str
    model: str
    input_tokens: int | None = None
    output_tokens: int | None = None
    attempts: int = 1


class ProviderError(Exception):
    """A failed provider call, classified so the execution row can say what went wrong."""

    def __init__(self, error_type: str, message: str, *, retryable: bool = False,
                 retry_after_s: float | None = None, attempts: int = 1):
        super().__init__(message)
        self.error_type = error_type
        self.message = message
        self.retryable = retryable
        self.retry_after_s = retry_after_s
        self.attempts = attempts


class Provider(Protocol):
    name: str

    def complete(self, request: ProviderRequest, *, timeout_s: float) -> ProviderReply:
        """One attempt, bounded by `timeout_s`; raises ProviderError."""
        ...


@dataclass(frozen=True)
class RetryPolicy:
    timeout_s: float  # one attempt
    max_retries: int  # attempts after the first
    deadline_s: float  # all attempts and sleeps together
    backoff_base_s: float


def complete_with_retries(provider: Provider, request: ProviderRequest, policy: RetryPolicy, *,
                          sleep: Callable[[float], None] = time.sleep,
                          clock: Callable[[], float] = time.monotonic) -> ProviderReply:
    """Call the provider until it answers, a non-retryable error occurs, the retries run out
    or the deadline would pass; backoff is exponential with full jitter, at least the
    server's retry-after."""
    deadline = clock() + policy.deadline_s
    attempt = 0
    while True:
        attempt += 1
        remaining = deadline - clock()
        if remaining <= 0:  # a backoff sleep overran the deadline (a busy machine)
            raise ProviderError("timeout", f"deadline of {policy.deadline_s:g} s reached "
                                f"after {attempt - 1} attempts", attempts=attempt - 1)
        try:
            reply = provider.complete(request, timeout_s=min(policy.timeout_s, remaining))
        except ProviderError as exc:
            exc.attempts = attempt
            pause = _backoff(exc, attempt, policy)
            if not exc.retryable or attempt > policy.max_retries:
                raise
            if clock() + pause >= deadline:
                raise ProviderError(exc.error_type, f"{exc.message} (deadline of "
                                    f"{policy.deadline_s:g} s reached after {attempt} attempts)",
                                    attempts=attempt) from exc
            log.info("llm_retry", provider=provider.name, attempt=attempt,
                     error_type=exc.error_type, sleep_s=round(pause, 3))
            sleep(pause)
            continue
        return ProviderReply(reply.text, reply.model, reply.input_tokens, reply.output_tokens,
                             attempts=attempt)


def _backoff(error: ProviderError, attempt: int, policy: RetryPolicy) -> float:
    # Full jitter (AWS architecture blog): spreads clients that failed together apart.
    ceiling = min(MAX_BACKOFF_S, policy.backoff_base_s * 2 ** (attempt - 1))
    pause = random.uniform(0, ceiling)  # noqa: S311 - jitter, not cryptography
    return max(pause, error.retry_after_s or 0.0)


def retry_after_seconds(headers: Mapping[str, str] | None) -> float | None:
    """The server's requested wait: `retry-after-ms`, else `retry-after` (seconds or date)."""
    if not headers:
        return None
    millis = headers.get("retry-after-ms")
    if millis:
        try:
            return max(0.0, float(millis) / 1000)
        except ValueError:
            pass
    value = headers.get("retry-after")
    if not value:
        return None
    try:
        return max(0.0, float(value))
    except ValueError:
        pass
    try:
        return max(0.0, parsedate_to_datetime(value).timestamp() - time.time())
    except (TypeError, ValueError):
        return None
