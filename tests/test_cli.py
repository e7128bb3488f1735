"""The command line, including the README's run command started for real."""

from __future__ import annotations

import os
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
from typer.testing import CliRunner

from tests.conftest import require_service, reset_postgres_database
from tradeloop import migrate
from tradeloop.cli import app, parse_task_arguments
from tradeloop.settings import get_settings

ROOT = Path(__file__).resolve().parents[1]
runner = CliRunner()


@pytest.fixture
def cli_env(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[Path]:
    monkeypatch.setenv("TRADELOOP_DATA_DIR", str(tmp_path / "data"))
    monkeypatch.delenv("DATABASE_URL", raising=False)
    monkeypatch.delenv("CELERY_BROKER_URL", raising=False)
    get_settings.cache_clear()
    yield tmp_path / "data"
    get_settings.cache_clear()


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def start_readme_server(data_dir: Path, port: int) -> subprocess.Popen[str]:
    env = {**os.environ, "TRADELOOP_DATA_DIR": str(data_dir), "TRADELOOP_VENV": sys.prefix}
    env.pop("DATABASE_URL", None)
    env.pop("CELERY_BROKER_URL", None)
    return subprocess.Popen(["bash", str(ROOT / "scripts" / "serve"), "--port", str(port)],
                            env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)


def wait_until_up(url: str, process: subprocess.Popen[str], timeout_s: float = 90) -> None:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise AssertionError(f"server exited early:\n{process.stdout.read()}")  # type: ignore[union-attr]
        try:
            if httpx.get(url, timeout=1).status_code == 200:
                return
        except httpx.TransportError:
            time.sleep(0.2)
    raise AssertionError(f"{url} did not answer within {timeout_s}s")


def stop(process: subprocess.Popen[str]) -> str:
    process.terminate()
    output, _ = process.communicate(timeout=30)
    return output


def test_readme_run_command_serves_health_docs_and_prints_admin_once(tmp_path: Path) -> None:
    data_dir = tmp_path / "data"
    port = free_port()
    server = start_readme_server(data_dir, port)
    try:
        wait_until_up(f"http://127.0.0.1:{port}/api/health", server)
        assert httpx.get(f"http://127.0.0.1:{port}/api/health").json() == {"status": "healthy"}
        docs = httpx.get(f"http://127.0.0.1:{port}/docs")
        assert docs.status_code == 200 and "swagger" in docs.text.lower()
        assert httpx.get(f"http://127.0.0.1:{port}/health").json()["healthy"] is True
    finally:
        first_output = stop(server)
    assert "Created the first admin account" in first_output
    password = first_output.split("password:")[1].split()[0]
    assert (data_dir / "tradeloop.db").exists()

    server = start_readme_server(data_dir, port)
    try:
        wait_until_up(f"http://127.0.0.1:{port}/api/health", server)
        token = httpx.post(f"http://127.0.0.1:{port}/api/v1/auth/token",
                           json={"email": "admin@tradeloop.example", "password": password})
        assert token.status_code == 200
        me = httpx.get(f"http://127.0.0.1:{port}/api/v1/auth/me",
                       headers={"Authorization": f"Bearer {token.json()['access_token']}"})
        assert me.json()["is_admin"] is True
    finally:
        second_output = stop(server)
    assert "Created the first admin account" not in second_output


def test_serve_refuses_outdated_postgres_schema(tmp_path: Path) -> None:
    base = require_service("TEST_DATABASE_URL", "PostgreSQL")
    from sqlalchemy.engine import make_url

    url = make_url(base).set(database=f"{make_url(base).database}_outdated")
    reset_postgres_database(url.render_as_string(False))
    env = {**os.environ, "TRADELOOP_DATA_DIR": str(tmp_path),
           "DATABASE_URL": url.render_as_string(False)}
    result = subprocess.run([sys.executable, "-m", "tradeloop.cli", "serve"], env=env,
                            capture_output=True, text=True, timeout=60)
    assert result.returncode == 1
    assert "tradeloop db upgrade" in result.stderr


def test_db_commands(cli_env: Path) -> None:
    assert runner.invoke(app, ["db", "upgrade"]).exit_code == 0
    current = runner.invoke(app, ["db", "current"])
    assert migrate.head_revision() in current.output and "up to date" in current.output
    assert "create users and tokens" in runner.invoke(app, ["db", "history"]).output
    assert runner.invoke(app, ["db", "downgrade", "base"]).exit_code == 0
    assert "empty" in runner.invoke(app, ["db", "current"]).output


def test_user_create(cli_env: Path) -> None:
    runner.invoke(app, ["db", "upgrade"])
    created = runner.invoke(app, ["user", "create", "--email", "Boss@Example.com",
                                  "--password", "a very long password", "--admin"])
    assert created.exit_code == 0, created.output
    assert "created admin boss@example.com" in created.output
    again = runner.invoke(app, ["user", "create", "--email", "boss@example.com",
                                "--password", "a very long password"])
    assert again.exit_code == 1
    short = runner.invoke(app, ["user", "create", "--email", "s@example.com",
                                "--password", "short"])
    assert short.exit_code == 1 and "12 characters" in short.output


def test_tasks_list_shows_schedule(cli_env: Path) -> None:
    result = runner.invoke(app, ["tasks", "list"], env={"COLUMNS": "200"})
    assert result.exit_code == 0
    assert "purge_expired_tokens" in result.output
    assert "purge-expired-tokens-daily" in result.output
    assert "30 3 * * *" in result.output


def test_tasks_run(cli_env: Path) -> None:
    runner.invoke(app, ["db", "upgrade"])
    result = runner.invoke(app, ["tasks", "run", "purge_expired_tokens"])
    assert result.exit_code == 0, result.output
    assert result.output.strip().endswith("0")
    unknown = runner.invoke(app, ["tasks", "run", "nope"])
    assert unknown.exit_code == 1 and "unknown task" in unknown.output


def test_task_arguments_parse_json_and_keywords() -> None:
    assert parse_task_arguments(["2026-01-01", "days=3", "[1,2]"]) == (
        ["2026-01-01", [1, 2]], {"days": 3})
