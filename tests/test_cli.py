"""The command line, including the README's run command started for real."""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
import time
import uuid
from collections.abc import Iterator
from datetime import UTC, datetime
from decimal import Decimal
from pathlib import Path

import httpx
import pytest
from sqlalchemy import select
from typer.testing import CliRunner

from tests.conftest import fresh_postgres_database
from tradeloop import migrate
from tradeloop.accounts.models import User
from tradeloop.backtest.models import BacktestRun
from tradeloop.cli import app, parse_task_arguments
from tradeloop.db import Database
from tradeloop.settings import get_settings
from tradeloop.trading.models import Position

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

    assert "loading the synthetic demo universe" in first_output

    server = start_readme_server(data_dir, port)
    try:
        wait_until_up(f"http://127.0.0.1:{port}/api/health", server)
        token = httpx.post(f"http://127.0.0.1:{port}/api/v1/auth/token",
                           json={"email": "admin@tradeloop.example", "password": password})
        assert token.status_code == 200
        headers = {"Authorization": f"Bearer {token.json()['access_token']}"}
        me = httpx.get(f"http://127.0.0.1:{port}/api/v1/auth/me", headers=headers)
        assert me.json()["is_admin"] is True
        series = httpx.get(f"http://127.0.0.1:{port}/api/v1/bars/series", headers=headers)
        strategies = httpx.get(f"http://127.0.0.1:{port}/api/v1/strategies", headers=headers)
    finally:
        second_output = stop(server)
    assert "Created the first admin account" not in second_output
    assert "demo universe" not in second_output
    demo = series.json()["series"]
    assert len(demo) == 7 and all(s["synthetic"] for s in demo)
    assert {s["name"] for s in strategies.json()["strategies"]} == {"sma_cross", "MarketStructure"}


def test_serve_refuses_outdated_postgres_schema(tmp_path: Path) -> None:
    url = fresh_postgres_database("outdated")
    env = {**os.environ, "TRADELOOP_DATA_DIR": str(tmp_path), "DATABASE_URL": url}
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


YAHOO = "Date,Open,High,Low,Close,Adj Close,Volume\n" \
    "2024-01-02,10,11,9,10.5,10.4,100\n2024-01-03,10.5,12,10,11,10.9,200\n"


def test_data_import_and_list(cli_env: Path, tmp_path: Path) -> None:
    runner.invoke(app, ["db", "upgrade"])
    good = tmp_path / "acme.csv"
    good.write_text(YAHOO)
    first = runner.invoke(app, ["data", "import", str(good), "--symbol", "acme"])
    assert first.exit_code == 0, first.output
    assert "ACME 1d (yahoo layout): 2 bars, 2 new" in first.output
    again = runner.invoke(app, ["data", "import", str(good), "--symbol", "ACME"])
    assert "0 new, 0 changed, 2 unchanged" in again.output

    bad = tmp_path / "bad.csv"
    bad.write_text(YAHOO + "2024-01-04,10,9,11,10,10,5\n")
    refused = runner.invoke(app, ["data", "import", str(bad), "--symbol", "ACME"])
    assert refused.exit_code == 1
    assert "line 4:" in refused.output and "Nothing was imported" in refused.output

    listing = runner.invoke(app, ["data", "list", "--json"])
    [row] = json.loads(listing.output)
    assert (row["symbol"], row["timeframe"], row["rows"], row["synthetic"]) == (
        "ACME", "1d", 2, False)
    assert row["first"].startswith("2024-01-02") and row["last"].startswith("2024-01-03")


def test_cli_reads_rows_and_dates_as_the_api_does(cli_env: Path, tmp_path: Path) -> None:
    runner.invoke(app, ["db", "upgrade"])
    runner.invoke(app, ["user", "create", "--email", "boss@example.com",
                        "--password", "a very long password", "--admin"])
    ragged = tmp_path / "ragged.csv"
    ragged.write_text(YAHOO + "2024-01-04,10,11,9,10,10\n")  # no volume field
    refused = runner.invoke(app, ["data", "import", str(ragged), "--symbol", "ACME"])
    assert refused.exit_code == 1
    assert "line 4: 6 fields where the header has 7" in refused.output
    for start in ("0001-01-01T00:00:00+01:00", "yesterday"):
        bad = runner.invoke(app, ["backtest", "run", "--strategy", "sma_cross",
                                  "--start", start])
        assert bad.exit_code == 1 and f"--start {start!r}" in bad.output, bad.output


def test_seed_demo_is_idempotent_and_marked_synthetic(cli_env: Path) -> None:
    runner.invoke(app, ["db", "upgrade"])
    runner.invoke(app, ["user", "create", "--email", "boss@example.com",
                        "--password", "a very long password", "--admin"])
    first = runner.invoke(app, ["seed", "--demo"])
    assert first.exit_code == 0, first.output
    assert "sma_cross, MarketStructure" in first.output
    second = runner.invoke(app, ["seed", "--demo"])
    assert "(0 new, 0 changed)" in second.output and "already present" in second.output
    rows = json.loads(runner.invoke(app, ["data", "list", "--json"]).output)
    assert len(rows) == 7 and all(row["synthetic"] for row in rows)
    daily = [row for row in rows if row["timeframe"] == "1d"]
    assert len(daily) == 5 and all(row["rows"] >= 2500 for row in daily)
    assert {row["symbol"] for row in rows if row["timeframe"] == "5m"} == {"ACME", "BTCUSD"}
    listing = runner.invoke(app, ["data", "list"], env={"COLUMNS": "200"})
    assert "synthetic" in listing.output


def test_backtest_run_and_sweep(cli_env: Path) -> None:
    runner.invoke(app, ["db", "upgrade"])
    runner.invoke(app, ["user", "create", "--email", "boss@example.com",
                        "--password", "a very long password", "--admin"])
    assert runner.invoke(app, ["seed", "--demo"]).exit_code == 0

    first = runner.invoke(app, ["backtest", "run", "--strategy", "sma_cross",
                                "--symbols", "ACME,GLOBX", "--json"])
    assert first.exit_code == 0, first.output
    result = json.loads(first.stdout)
    assert result["status"] == "done" and result["cached"] is False
    assert result["symbols"] == ["ACME", "GLOBX"]
    assert result["metrics"]["trades"]["num_trades"] > 0
    again = json.loads(runner.invoke(app, ["backtest", "run", "--strategy", "sma_cross",
                                           "--symbols", "GLOBX,ACME", "--json"]).stdout)
    assert again["cached"] is True and again["id"] == result["id"]

    table = runner.invoke(app, ["backtest", "run", "--strategy", "MarketStructure",
                                "--symbols", "BTCUSD", "--param", "lookback=10"],
                          env={"COLUMNS": "200"})
    assert table.exit_code == 0, table.output
    assert "sharpe_ratio" in table.output and "'lookback': 10" in table.output

    sweep = runner.invoke(app, ["backtest", "sweep", "--strategy", "sma_cross",
                                "--symbols", "ACME", "--param", "fast=5:15:5",
                                "--param", "slow=30,50", "--metric", "return_pct", "--json"])
    assert sweep.exit_code == 0, sweep.output
    report = json.loads(sweep.stdout)
    assert report["total"] == 6 and report["finished"] and len(report["ranking"]) == 6
    values = [entry["value"] for entry in report["ranking"]]
    assert values == sorted(values, reverse=True)

    # --end-fill close: a trade still open at the end is marked to the last close; another
    # request than the default (end_fill "open"), so not the cached run.
    marked = runner.invoke(app, ["backtest", "run", "--strategy", "sma_cross", "--symbols",
                                 "ACME,GLOBX", "--end-fill", "close", "--json"])
    assert marked.exit_code == 0, marked.output
    marked_result = json.loads(marked.stdout)
    assert marked_result["options"]["end_fill"] == "close" and not marked_result["cached"]
    assert result["options"]["end_fill"] == "open" and marked_result["id"] != result["id"]
    swept = json.loads(runner.invoke(app, [
        "backtest", "sweep", "--strategy", "sma_cross", "--symbols", "ACME", "--param",
        "fast=5,10", "--metric", "return_pct", "--end-fill", "close", "--json"]).stdout)
    db = Database.from_url(get_settings().effective_database_url)
    with db.unit_of_work() as session:
        fills = set(session.scalars(select(BacktestRun.end_fill).where(BacktestRun.id.in_(
            [uuid.UUID(entry["run_id"]) for entry in swept["ranking"]]))))
    assert swept["finished"] and fills == {"close"}
    bad = runner.invoke(app, ["backtest", "run", "--strategy", "sma_cross", "--end-fill", "noon"])
    assert bad.exit_code == 1 and "end_fill" in bad.output

    unknown = runner.invoke(app, ["backtest", "run", "--strategy", "nope"])
    assert unknown.exit_code == 1 and "not found" in unknown.output.lower()


def test_data_import_marks_positions_and_mark_positions_is_a_task(cli_env: Path,
                                                                  tmp_path: Path) -> None:
    runner.invoke(app, ["db", "upgrade"])
    runner.invoke(app, ["user", "create", "--email", "t@example.com",
                        "--password", "a very long password"])
    db = Database.from_url(get_settings().effective_database_url)
    opened = datetime(2024, 1, 1, tzinfo=UTC)
    with db.unit_of_work() as session:
        owner = session.scalar(select(User.id))
        session.add(Position(user_id=owner, symbol="ACME", side="LONG", quantity=Decimal(10),
                             entry_price=Decimal(10), opened_at=opened, status="open",
                             mark_price=Decimal(10), marked_at=opened,
                             unrealized_pnl=Decimal(0)))
    listed = runner.invoke(app, ["tasks", "list"], env={"COLUMNS": "200"})
    assert "mark-positions" in listed.output and "mark_positions" in listed.output
    good = tmp_path / "acme.csv"
    good.write_text(YAHOO)
    assert runner.invoke(app, ["data", "import", str(good), "--symbol", "ACME"]).exit_code == 0
    with db.unit_of_work() as session:
        position = session.scalars(select(Position)).one()
    # Marked by the import's reaction, before the command returned: the 2024-01-03 close.
    assert (position.mark_price, position.unrealized_pnl) == (Decimal(11), Decimal(10))
    assert position.marked_at == datetime(2024, 1, 4, tzinfo=UTC)
    rerun = runner.invoke(app, ["tasks", "run", "mark_positions", "symbol=ACME"])
    assert rerun.exit_code == 0 and rerun.output.strip().endswith("1"), rerun.output
    db.dispose()
