"""Turn the openai / anthropic SDKs' exceptions into classified ProviderErrors.

Both SDKs are generated from the same template and share the exception names used here.
"""

from __future__ import annotations

from types import ModuleType

from tradeloop.llm.providers.base import ProviderError, retry_after_seconds

# Client errors worth another try: 408 request timeout, 409 lock conflict, 429 rate limit.
RETRYABLE_CLIENT_STATUSES = frozenset({408, 409, 429})


def classify_sdk_error(exc: Exception, sdk: ModuleType) -> ProviderError:
    """A ProviderError saying what failed and whether another attempt may succeed."""
    if isinstance(exc, sdk.APITimeoutError):
        return ProviderError("timeout", "the provider did not answer within the timeout",
                             retryable=True)
    if isinstance(exc, sdk.APIConnectionError):
        return ProviderError("connection_error", f"could not reach the provider: {exc}",
                             retryable=True)
    if isinstance(exc, sdk.APIStatusError):
        return _status_error(exc)
    return ProviderError("provider_error", f"{type(exc).__name__}: {exc}")


def _status_error(exc: object) -> ProviderError:
    status = int(getattr(exc, "status_code", 0))
    response = getattr(exc, "response", None)
    headers = getattr(response, "headers", None)
    message = f"HTTP {status}: {_short(str(getattr(exc, 'message', exc)))}"
    if status == 429:
        return ProviderError("rate_limited", message, retryable=True,
                             retry_after_s=retry_after_seconds(headers))
    if status >= 500:
        return ProviderError("server_error", message, retryable=True,
                             retry_after_s=retry_after_seconds(headers))
    if status in (401, 403):
        return ProviderError("auth_error", message)
    if status in RETRYABLE_CLIENT_STATUSES:
        return ProviderError("provider_error", message, retryable=True,
                             retry_after_s=retry_after_seconds(headers))
    return ProviderError("bad_request", message)


def _short(text: str, limit: int = 500) -> str:
    return text if len(text) <= limit else text[:limit] + "…"
