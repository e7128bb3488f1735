"""One settings object for the whole system, read from the environment and `.env`."""

from __future__ import annotations

import os
import secrets
from functools import lru_cache
from pathlib import Path
from typing import Literal

from pydantic import Field, SecretStr, computed_field, model_validator
from pydantic_settings import BaseSettings, SettingsConfigDict

GENERATED_SECRET_NAMES = ("SECRET_KEY", "WEBHOOK_SECRET")
# `vertex_ai` is seed 001's name for Gemini, served by the `gemini` provider (docs/llm.md).
LLMProvider = Literal["local", "openai", "anthropic", "gemini", "vertex_ai"]
GEMINI_OPENAI_BASE = "https://generativelanguage.googleapis.com/v1beta/openai/"
# package.json sits at the checkout's root, beside src/: `npm ci` installs the browser assets
# (docs/architecture.md, "Browser assets") into its node_modules.
CHECKOUT_NODE_MODULES = Path(__file__).resolve().parents[2] / "node_modules"


class Settings(BaseSettings):
    """Every variable of SPEC §1, plus the few operational knobs the foundation needs."""

    model_config = SettingsConfigDict(env_file=".env", env_file_encoding="utf-8", extra="ignore")

    tradeloop_data_dir: Path = Path(".tradeloop")
    database_url: str | None = None
    secret_key: SecretStr | None = None
    webhook_secret: SecretStr | None = None
    celery_broker_url: str | None = None
    celery_result_backend: str | None = None
    llm_provider: LLMProvider = "local"
    openai_api_key: SecretStr | None = None
    openai_api_base: str | None = None
    anthropic_api_key: SecretStr | None = None
    # Gemini through its OpenAI-compatible endpoint; the base is overridable (a proxy, tests).
    gemini_api_key: SecretStr | None = None
    gemini_api_base: str = GEMINI_OPENAI_BASE
    disable_prompt_logging: bool = False
    # LLM calls (docs/llm.md): the default model of LLM_PROVIDER (unset: the provider's own
    # default), a proxy for Anthropic, and the retry budget: each attempt is bounded by
    # LLM_TIMEOUT_S, at most LLM_MAX_RETRIES more attempts follow 429/5xx/timeouts with
    # exponential backoff and jitter (base LLM_BACKOFF_BASE_S), all within LLM_DEADLINE_S.
    llm_model: str | None = None
    anthropic_api_base: str | None = None
    llm_timeout_s: float = Field(default=30.0, gt=0)
    llm_max_retries: int = Field(default=3, ge=0, le=10)
    llm_deadline_s: float = Field(default=90.0, gt=0)
    llm_backoff_base_s: float = Field(default=0.5, ge=0)
    max_concurrent_backtests: int = Field(default=5, ge=1)
    # A running backtest whose claim is older than this is taken as abandoned (its worker
    # died): requeued, or failed once it has been claimed backtest_max_attempts times.
    backtest_lease_seconds: int = Field(default=900, ge=10)
    backtest_max_attempts: int = Field(default=3, ge=1)
    smtp_host: str | None = None
    smtp_port: int = 587
    smtp_username: str | None = None
    smtp_password: SecretStr | None = None
    mailer_from_email: str = "noreply@tradeloop.local"
    mailer_from_name: str = "tradeloop"
    allow_registration: bool = True
    market_hours_enforced: bool = True
    # Webhook signals whose timestamp is older than this are refused as replays (SPEC §6).
    signal_replay_window_s: int = Field(default=86_400, ge=60)
    # Process an accepted webhook signal right after its commit; the every-minute
    # process-signal-queue schedule stays as the safety net after a crash (SPEC §6).
    signal_process_on_ingest: bool = True
    # Run the tasks that react to data events (new bars: mark-to-market, live strategies)
    # right after the change commits; the every-minute schedules stay as the safety net.
    events_enabled: bool = True
    # Symbol → exchange calendar (ISO 10383 MIC, or "24/7"); unmapped crypto pairs are 24/7.
    symbol_exchanges: dict[str, str] = Field(default_factory=dict)
    default_exchange: str = "XNYS"

    # Operational knobs beyond SPEC §1.
    load_demo_on_first_start: bool = True
    # The demo market feed (market_data/demo_feed.py): loaded demo series grow every five
    # minutes as bars complete; never touches series holding real bars.
    demo_feed: bool = True
    public_url: str = "http://127.0.0.1:8000"
    log_level: str = "INFO"
    log_format: Literal["json", "console"] = "json"
    auth_rate_limit: str = "10/minute"
    rate_limit_storage_url: str = "memory://"
    celery_queue: str = "tradeloop"
    task_pool_size: int = Field(default=4, ge=1, le=64)
    db_connect_timeout_s: float = Field(default=2.0, gt=0)
    # Request bodies (docs/configuration.md): the size limit of every JSON/form body (routes
    # with their own, the webhooks and bar uploads, keep theirs) and the time a whole body may
    # take to arrive.
    request_body_max_bytes: int = Field(default=1_048_576, ge=1024)
    request_body_timeout_s: float = Field(default=30.0, gt=0)
    # Where `npm ci` put the browser assets (Swagger UI, Redoc) served under /static/vendor.
    node_modules_dir: Path = CHECKOUT_NODE_MODULES
    health_check_timeout_s: float = Field(default=1.5, gt=0)
    # Live-signal context, GEX and metrics (docs/signals.md).
    context_cache_ttl_s: float = Field(default=60.0, ge=0)
    context_stale_after_bars: float = Field(default=5.0, gt=0)
    gex_max_age_s: int = Field(default=86_400, ge=60)
    context_health_window_s: int = Field(default=900, ge=60)
    metrics_token: SecretStr | None = None
    metrics_latency_window: int = Field(default=1000, ge=10, le=100_000)
    # Prompt rendering limits (SPEC §7): template size, output size, time and memory per
    # render, and renders of text sent with a request (/render, /test, /validate) at once.
    prompt_template_max_chars: int = Field(default=50_000, ge=100)
    prompt_output_max_bytes: int = Field(default=256_000, ge=1_000)
    prompt_render_timeout_ms: int = Field(default=500, ge=10)
    prompt_render_max_memory_mb: int = Field(default=32, ge=1, le=1024)
    prompt_adhoc_render_concurrency: int = Field(default=2, ge=1, le=64)
    # Execution log (docs/llm.md): `background` hands each row to a per-database writer thread
    # (bounded queue of PROMPT_LOG_QUEUE_SIZE rows, dropped with a warning when full);
    # `inline` writes it in the caller's thread before `execute` returns.
    prompt_log_mode: Literal["background", "inline"] = "background"
    prompt_log_queue_size: int = Field(default=10_000, ge=1)

    @model_validator(mode="after")
    def _resolve_data_dir(self) -> Settings:
        self.tradeloop_data_dir = self.tradeloop_data_dir.expanduser().resolve()
        return self

    @computed_field  # type: ignore[prop-decorator]
    @property
    def effective_database_url(self) -> str:
        """The configured URL, else SQLite inside the data directory."""
        if self.database_url:
            return self.database_url
        return f"sqlite:///{self.tradeloop_data_dir / 'tradeloop.db'}"

    @property
    def is_embedded_database(self) -> bool:
        """True when running on the default SQLite file (no explicit DATABASE_URL)."""
        return self.database_url is None

    @property
    def uses_celery(self) -> bool:
        return bool(self.celery_broker_url)

    @property
    def outbox_dir(self) -> Path:
        return self.tradeloop_data_dir / "outbox"

    def secret(self, name: str) -> str:
        """The value of a generated secret (`SECRET_KEY`, `WEBHOOK_SECRET`)."""
        value: SecretStr | None = getattr(self, name.lower())
        if value is None:
            raise RuntimeError(f"{name} is not loaded; call ensure_generated_secrets() first")
        return value.get_secret_value()


def ensure_generated_secrets(settings: Settings) -> list[str]:
    """Fill unset secrets from the data dir, generating and storing them (0600) on first start.

    Returns the names of the secrets generated now, so callers can announce them once.
    """
    generated: list[str] = []
    secrets_dir = settings.tradeloop_data_dir / "secrets"
    for name in GENERATED_SECRET_NAMES:
        if getattr(settings, name.lower()) is not None:
            continue
        path = secrets_dir / name.lower()
        if not path.exists():
            secrets_dir.mkdir(parents=True, exist_ok=True, mode=0o700)
            _write_private_file(path, secrets.token_urlsafe(48))
            generated.append(name)
        setattr(settings, name.lower(), SecretStr(path.read_text().strip()))
    return generated


def _write_private_file(path: Path, content: str) -> None:
    # O_EXCL: two processes starting at once must not overwrite each other's secret.
    try:
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    except FileExistsError:
        return
    with os.fdopen(fd, "w") as handle:
        handle.write(content)


@lru_cache
def get_settings() -> Settings:
    """The process-wide settings, with generated secrets loaded."""
    settings = Settings()
    settings.tradeloop_data_dir.mkdir(parents=True, exist_ok=True, mode=0o700)
    ensure_generated_secrets(settings)
    return settings
