"""The provider failure matrix: the real openai and anthropic SDKs against the fake server."""

from __future__ import annotations

import time
from pathlib import Path

import pytest

from tests.llm.conftest import GEMINI_PATH_PREFIX, analysis_json, provider_settings
from tests.llm.fake_llm_server import ANTHROPIC_PATH, OPENAI_PATH, FakeLLMServer, Scripted
from tradeloop.llm.parsing import OutputError, parse_analysis
from tradeloop.llm.providers import (
    ProviderError,
    ProviderReply,
    ProviderRequest,
    RetryPolicy,
    complete_with_retries,
    get_provider,
)
from tradeloop.llm.providers.base import retry_after_seconds
from tradeloop.settings import Settings

PATHS = {"openai": OPENAI_PATH, "anthropic": ANTHROPIC_PATH}
PROVIDERS = ["openai", "anthropic"]


def request(json_mode: bool = True) -> ProviderRequest:
    return ProviderRequest(user_text="Analyse AAPL", system_text="You are an analyst.",
                           model="fake-model", temperature=0.2, max_tokens=300,
                           json_mode=json_mode)


def policy(settings: Settings) -> RetryPolicy:
    return RetryPolicy(settings.llm_timeout_s, settings.llm_max_retries, settings.llm_deadline_s,
                       settings.llm_backoff_base_s)


def call(settings: Settings, provider: str) -> ProviderReply:
    return complete_with_retries(get_provider(provider, settings), request(), policy(settings))


@pytest.mark.parametrize("provider", PROVIDERS)
class TestFailureMatrix:
    def test_answer_with_usage(self, provider: str, llm_server: FakeLLMServer,
                               tmp_path: Path) -> None:
        llm_server.queue(Scripted(text=analysis_json(), usage=(321, 54)))
        reply = call(provider_settings(tmp_path, llm_server, provider), provider)
        assert (reply.input_tokens, reply.output_tokens, reply.attempts) == (321, 54, 1)
        assert parse_analysis(reply.text).direction.value == "LONG"
        sent = llm_server.requests[0]
        assert sent["path"] == PATHS[provider] and sent["body"]["model"] == "fake-model"

    def test_429_waits_for_retry_after_then_succeeds(self, provider: str,
                                                     llm_server: FakeLLMServer,
                                                     tmp_path: Path) -> None:
        llm_server.queue(Scripted(status=429, headers={"retry-after": "1"}),
                         Scripted(text=analysis_json()))
        started = time.monotonic()
        reply = call(provider_settings(tmp_path, llm_server, provider), provider)
        assert reply.attempts == 2 and llm_server.count() == 2
        assert time.monotonic() - started >= 1.0  # the server's retry-after was honoured

    def test_500s_are_retried_with_backoff(self, provider: str, llm_server: FakeLLMServer,
                                           tmp_path: Path) -> None:
        llm_server.queue(Scripted(status=500), Scripted(status=503),
                         Scripted(text=analysis_json()))
        reply = call(provider_settings(tmp_path, llm_server, provider), provider)
        assert reply.attempts == 3 and llm_server.count() == 3

    def test_retries_run_out(self, provider: str, llm_server: FakeLLMServer,
                             tmp_path: Path) -> None:
        llm_server.queue(*[Scripted(status=500)] * 5)
        with pytest.raises(ProviderError) as failure:
            call(provider_settings(tmp_path, llm_server, provider, llm_max_retries=2), provider)
        assert failure.value.error_type == "server_error" and failure.value.attempts == 3
        assert llm_server.count() == 3  # the SDK's own retries are off: ours are the only ones

    def test_slow_answer_times_out_then_retry_succeeds(self, provider: str,
                                                       llm_server: FakeLLMServer,
                                                       tmp_path: Path) -> None:
        llm_server.queue(Scripted(text=analysis_json(), delay_s=1.5),
                         Scripted(text=analysis_json()))
        settings = provider_settings(tmp_path, llm_server, provider, llm_timeout_s=0.5)
        started = time.monotonic()
        reply = call(settings, provider)
        assert reply.attempts == 2
        assert time.monotonic() - started < 1.5  # the first attempt was cut at the timeout

    def test_deadline_ends_the_retries(self, provider: str, llm_server: FakeLLMServer,
                                       tmp_path: Path) -> None:
        llm_server.queue(*[Scripted(text="{}", delay_s=1.0)] * 6)
        settings = provider_settings(tmp_path, llm_server, provider, llm_timeout_s=0.4,
                                     llm_max_retries=10, llm_deadline_s=1.0)
        started = time.monotonic()
        with pytest.raises(ProviderError) as failure:
            call(settings, provider)
        assert failure.value.error_type == "timeout"
        assert time.monotonic() - started < 2.0
        assert 2 <= llm_server.count() <= 4

    def test_auth_error_is_not_retried(self, provider: str, llm_server: FakeLLMServer,
                                       tmp_path: Path) -> None:
        llm_server.queue(Scripted(status=401), Scripted(text=analysis_json()))
        with pytest.raises(ProviderError) as failure:
            call(provider_settings(tmp_path, llm_server, provider), provider)
        assert failure.value.error_type == "auth_error" and llm_server.count() == 1

    def test_junk_json_is_malformed_output(self, provider: str, llm_server: FakeLLMServer,
                                           tmp_path: Path) -> None:
        llm_server.queue(Scripted(text='{"direction": "LONG", "entry_price_low": 9'))
        reply = call(provider_settings(tmp_path, llm_server, provider), provider)
        with pytest.raises(OutputError) as failure:
            parse_analysis(reply.text)
        assert failure.value.error_type == "malformed_output"

    def test_json_in_code_fence_is_extracted(self, provider: str, llm_server: FakeLLMServer,
                                             tmp_path: Path) -> None:
        fenced = f"Here is my analysis:\n```json\n{analysis_json()}\n```\nGood luck."
        llm_server.queue(Scripted(text=fenced))
        reply = call(provider_settings(tmp_path, llm_server, provider), provider)
        assert parse_analysis(reply.text).stop_loss == 97


def test_openai_asks_for_json_mode(llm_server: FakeLLMServer, tmp_path: Path) -> None:
    llm_server.queue(Scripted(text=analysis_json()))
    call(provider_settings(tmp_path, llm_server, "openai"), "openai")
    body = llm_server.requests[0]["body"]
    assert body["response_format"] == {"type": "json_object"}
    assert body["messages"][0] == {"role": "system", "content": "You are an analyst."}


def test_openai_retries_without_json_mode_when_the_server_rejects_it(
        llm_server: FakeLLMServer, tmp_path: Path) -> None:
    llm_server.queue(Scripted(status=400), Scripted(text=analysis_json()))
    call(provider_settings(tmp_path, llm_server, "openai"), "openai")
    assert "response_format" not in llm_server.requests[1]["body"]


def test_anthropic_sends_system_and_key_header(llm_server: FakeLLMServer, tmp_path: Path) -> None:
    llm_server.queue(Scripted(text=analysis_json()))
    call(provider_settings(tmp_path, llm_server, "anthropic"), "anthropic")
    sent = llm_server.requests[0]
    assert sent["body"]["system"] == "You are an analyst."
    assert sent["body"]["max_tokens"] == 300
    assert "test-anthropic-key" in str(sent["headers"])  # the key reached the server
    assert sent["body"]["temperature"] == 0.2


@pytest.mark.parametrize("provider", ["anthropic", "gemini", "vertex_ai"])
def test_missing_key_is_a_configuration_error(tmp_path: Path, provider: str) -> None:
    from tests.conftest import make_settings

    with pytest.raises(ProviderError) as failure:
        get_provider(provider, make_settings(tmp_path))
    assert failure.value.error_type == "configuration_error"


@pytest.mark.parametrize("provider", ["gemini", "vertex_ai"])
def test_gemini_calls_the_configured_base_url_with_its_key(
        llm_server: FakeLLMServer, tmp_path: Path, provider: str) -> None:
    """Seed 001's `vertex_ai` and `gemini`: Gemini's OpenAI-compatible endpoint, GEMINI_API_KEY."""
    llm_server.queue(Scripted(text=analysis_json(), usage=(11, 7)))
    settings = provider_settings(tmp_path, llm_server, "openai")
    reply = call(settings, provider)
    assert (reply.input_tokens, reply.output_tokens) == (11, 7)
    [sent] = llm_server.requests
    assert sent["path"] == GEMINI_PATH_PREFIX + "chat/completions"
    assert sent["headers"]["authorization"] == "Bearer test-gemini-key"
    assert get_provider(provider, settings).name == "gemini"


def test_gemini_defaults_to_googles_openai_endpoint(tmp_path: Path) -> None:
    from tests.conftest import make_settings

    settings = make_settings(tmp_path)
    assert settings.gemini_api_base == \
        "https://generativelanguage.googleapis.com/v1beta/openai/"


def test_retry_after_headers() -> None:
    assert retry_after_seconds({"retry-after-ms": "250"}) == 0.25
    assert retry_after_seconds({"retry-after": "2"}) == 2.0
    assert retry_after_seconds({"retry-after": "Wed, 21 Oct 2015 07:28:00 GMT"}) == 0.0
    assert retry_after_seconds({}) is None


class ScriptedProvider:
    """A provider that fails with the given errors, then answers; for the retry arithmetic."""

    name = "scripted"

    def __init__(self, *errors: ProviderError):
        self.errors = list(errors)
        self.calls = 0

    def complete(self, request: ProviderRequest, *, timeout_s: float) -> ProviderReply:
        self.calls += 1
        if self.errors:
            raise self.errors.pop(0)
        return ProviderReply(text="{}", model=request.model)


class TestBackoff:
    def test_sleeps_grow_with_jitter_and_respect_retry_after(self) -> None:
        sleeps: list[float] = []
        provider = ScriptedProvider(
            ProviderError("rate_limited", "429", retryable=True, retry_after_s=3.0),
            ProviderError("server_error", "500", retryable=True),
            ProviderError("server_error", "500", retryable=True))
        reply = complete_with_retries(provider, request(), RetryPolicy(1, 5, 100, 1.0),
                                      sleep=sleeps.append, clock=lambda: 0.0)
        assert reply.attempts == 4
        assert sleeps[0] == 3.0  # the server's retry-after beats the 1 s jitter ceiling
        assert 0 <= sleeps[1] <= 2.0 and 0 <= sleeps[2] <= 4.0  # full jitter under 2^n

    def test_a_sleep_past_the_deadline_is_not_taken(self) -> None:
        sleeps: list[float] = []
        provider = ScriptedProvider(
            ProviderError("rate_limited", "429", retryable=True, retry_after_s=60.0))
        with pytest.raises(ProviderError) as failure:
            complete_with_retries(provider, request(), RetryPolicy(1, 5, 10, 0.1),
                                  sleep=sleeps.append, clock=lambda: 0.0)
        assert sleeps == [] and "deadline" in failure.value.message
        assert failure.value.error_type == "rate_limited"
