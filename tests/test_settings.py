"""Generated secrets: created once with 0600 permissions, then reused."""

from __future__ import annotations

import stat
from pathlib import Path

from tradeloop.settings import Settings, ensure_generated_secrets


def test_secrets_are_generated_once_and_private(tmp_path: Path) -> None:
    first = Settings(_env_file=None, tradeloop_data_dir=tmp_path)  # type: ignore[call-arg]
    assert sorted(ensure_generated_secrets(first)) == ["SECRET_KEY", "WEBHOOK_SECRET"]
    for name in ("secret_key", "webhook_secret"):
        mode = stat.S_IMODE((tmp_path / "secrets" / name).stat().st_mode)
        assert mode == 0o600

    second = Settings(_env_file=None, tradeloop_data_dir=tmp_path)  # type: ignore[call-arg]
    assert ensure_generated_secrets(second) == []
    assert second.secret("SECRET_KEY") == first.secret("SECRET_KEY")
    assert second.secret("WEBHOOK_SECRET") == first.secret("WEBHOOK_SECRET")
    assert len(first.secret("SECRET_KEY")) >= 48


def test_explicit_secret_wins(tmp_path: Path, monkeypatch) -> None:
    monkeypatch.setenv("WEBHOOK_SECRET", "from-env")
    settings = Settings(_env_file=None, tradeloop_data_dir=tmp_path)  # type: ignore[call-arg]
    assert ensure_generated_secrets(settings) == ["SECRET_KEY"]
    assert settings.secret("WEBHOOK_SECRET") == "from-env"


def test_default_database_is_sqlite_in_data_dir(tmp_path: Path) -> None:
    settings = Settings(_env_file=None, tradeloop_data_dir=tmp_path)  # type: ignore[call-arg]
    assert settings.effective_database_url == f"sqlite:///{tmp_path / 'tradeloop.db'}"
    assert settings.is_embedded_database
