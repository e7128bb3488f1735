"""Acceptance 3: a server killed (SIGKILL) mid-queue loses and repeats nothing at restart.

The real `tradeloop serve` runs as a subprocess on its own database (a SQLite file, and a
fresh PostgreSQL database when TEST_DATABASE_URL is set). The first server's processing is
slowed by a launcher that wraps `flows.process_signal` with a sleep, so the kill lands while
signals are claimed (`processing`) and others still queued; the restarted server is the
plain `tradeloop serve`.
"""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
import time
import uuid
from collections import Counter
from collections.abc import Callable, Iterator
from pathlib import Path

import httpx
import pytest
from sqlalchemy import func, select

from tests.conftest import fresh_postgres_database
from tradeloop import migrate
from tradeloop.db import Database
from tradeloop.signals.models import ProcessingError, Signal, SignalStatus
from tradeloop.trading.models import Decision, Position
from tradeloop.webhooks.auth import x_signature

from .conftest import iso_now

SECRET = "crash-test-webhook-secret"
# Crypto pairs trade 24/7, so market hours never reject and every signal trades.
SYMBOLS = ("BTCUSD", "ETHUSD", "SOLUSD", "XRPUSD")
PER_SYMBOL = 8
PROCESSING_DELAY_S = 0.25
UNFINISHED = (SignalStatus.QUEUED.value, SignalStatus.PROCESSING.value)
# Runs `tradeloop serve` with every signal's processing slowed after its claim is committed.
SLOW_LAUNCHER = """
import os, time
from tradeloop.cli import app
from tradeloop.signals import flows

real_process_signal = flows.process_signal

def slow_process_signal(*args, **kwargs):
    time.sleep(float(os.environ["CRASH_TEST_PROCESSING_DELAY_S"]))
    return real_process_signal(*args, **kwargs)

flows.process_signal = slow_process_signal
app()
"""


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


@pytest.fixture(params=["sqlite", "postgresql"])
def server_database(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[str | None]:
    """None (the embedded SQLite file in the data dir) or a fresh, migrated PostgreSQL URL."""
    if request.param == "sqlite":
        yield None
        return
    url = fresh_postgres_database("crash")
    migrate.upgrade(url)
    yield url
    migrate.recreate_postgres_database(url, drop_only=True)


class Server:
    """One `tradeloop serve` subprocess on a fixed port and data dir."""

    def __init__(self, data_dir: Path, database_url: str | None, port: int):
        self.data_dir, self.port = data_dir, port
        self.env = {**os.environ, "TRADELOOP_DATA_DIR": str(data_dir),
                    "WEBHOOK_SECRET": SECRET, "LOAD_DEMO_ON_FIRST_START": "false",
                    "LOG_LEVEL": "WARNING", "CRASH_TEST_PROCESSING_DELAY_S":
                    str(PROCESSING_DELAY_S)}
        self.env.pop("CELERY_BROKER_URL", None)
        self.env.pop("DATABASE_URL", None)
        if database_url:
            self.env["DATABASE_URL"] = database_url
        self.process: subprocess.Popen[bytes] | None = None
        self.log = data_dir.parent / "server.log"

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def start(self, *, slow: bool) -> None:
        self.data_dir.mkdir(parents=True, exist_ok=True)
        launcher = self.data_dir.parent / "slow_serve.py"
        launcher.write_text(SLOW_LAUNCHER)
        program = [str(launcher)] if slow else ["-m", "tradeloop.cli"]
        with self.log.open("ab") as log:
            self.process = subprocess.Popen(
                [sys.executable, *program, "serve", "--port", str(self.port)],
                env=self.env, stdout=log, stderr=subprocess.STDOUT)
        self.wait_until_up()

    def wait_until_up(self, timeout_s: float = 60) -> None:
        assert self.process is not None
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                raise AssertionError(f"server exited early:\n{self.log.read_text()}")
            try:
                if httpx.get(f"{self.url}/api/health", timeout=1).status_code == 200:
                    return
            except httpx.TransportError:
                time.sleep(0.1)
        raise AssertionError(f"server did not answer within {timeout_s}s:\n"
                             f"{self.log.read_text()}")

    def kill(self) -> None:
        """A real crash: SIGKILL, no shutdown hooks, no rollback but the database's own."""
        assert self.process is not None
        self.process.send_signal(signal.SIGKILL)
        self.process.wait(timeout=10)

    def stop(self) -> None:
        if self.process is not None and self.process.poll() is None:
            self.process.terminate()
            try:
                self.process.wait(timeout=15)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait(timeout=5)


@pytest.fixture
def server(tmp_path: Path, server_database: str | None) -> Iterator[Server]:
    running = Server(tmp_path / "data", server_database, free_port())
    yield running
    running.stop()


def signal_batch() -> list[dict[str, object]]:
    """Alternating LONG/SHORT per symbol, interleaved across symbols, each with its own id."""
    batch = []
    for index in range(PER_SYMBOL):
        for symbol in SYMBOLS:
            batch.append({"id": f"crash-{uuid.uuid4().hex}", "source": "crash-test",
                          "symbol": symbol, "direction": "LONG" if index % 2 == 0 else "SHORT",
                          "timeframe": "5m", "timestamp": iso_now(), "price": 100 + index,
                          "metadata": {"score": 80, "confidence": 0.8}})
    return batch


def post_all(server: Server, batch: list[dict[str, object]]) -> None:
    """Post one at a time, so arrival order is the batch's order; each must be ACCEPTED."""
    with httpx.Client(base_url=server.url, timeout=10) as client:
        for body in batch:
            raw = json.dumps(body).encode()
            answer = client.post("/webhook", content=raw, headers={
                "content-type": "application/json", "x-signature": x_signature(SECRET, raw)})
            assert answer.status_code == 200, answer.text
            assert answer.json()["status"] == "ACCEPTED", answer.text


def status_counts(db: Database) -> Counter[str]:
    with db.unit_of_work() as session:
        rows = session.execute(select(Signal.status, func.count()).group_by(Signal.status))
        return Counter({status: int(count) for status, count in rows})


def wait_for(condition: Callable[[], bool], timeout_s: float, what: str) -> None:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if condition():
            return
        time.sleep(0.05)
    raise AssertionError(f"timed out after {timeout_s}s waiting for {what}")


def server_db(server: Server, database_url: str | None) -> Database:
    return Database.from_url(database_url or f"sqlite:///{server.data_dir / 'tradeloop.db'}")


def test_signals_accepted_before_a_kill_are_processed_exactly_once_after_restart(
        server: Server, server_database: str | None) -> None:
    batch = signal_batch()
    server.start(slow=True)
    db = server_db(server, server_database)
    try:
        post_all(server, batch)
        # Kill while processing is under way: some signals done, the rest claimed or queued.
        wait_for(lambda: status_counts(db)[SignalStatus.PROCESSED.value] >= 2, 20,
                 "the first processed signals")
        server.kill()
        at_kill = status_counts(db)
        assert sum(at_kill[s] for s in UNFINISHED) > 0, f"nothing left mid-queue: {at_kill}"
        assert sum(at_kill.values()) == len(batch)

        server.start(slow=False)
        wait_for(lambda: sum(status_counts(db)[s] for s in UNFINISHED) == 0, 30,
                 f"the queue to drain after restart (at kill: {dict(at_kill)})")
        assert_processed_exactly_once(db, batch)
    finally:
        db.dispose()


def assert_processed_exactly_once(db: Database, batch: list[dict[str, object]]) -> None:
    """One signal row and one decision per accepted id; per symbol, position i was opened by
    signal i and closed by signal i+1 (arrival order), and only the last one is open."""
    with db.unit_of_work() as session:
        signals = {s.idempotency_key: s for s in session.scalars(select(Signal))}
        decisions = Counter(session.scalars(select(Decision.signal_id)))
        positions = list(session.scalars(select(Position)))
        errors = session.scalar(select(func.count()).select_from(ProcessingError))
    assert set(signals) == {f"id:{body['id']}" for body in batch}
    assert {s.status for s in signals.values()} == {SignalStatus.PROCESSED.value}
    assert decisions == Counter({s.id: 1 for s in signals.values()})
    assert errors == 0
    for symbol in SYMBOLS:
        ids = [signals[f"id:{b['id']}"].id for b in batch if b["symbol"] == symbol]
        held = sorted((p for p in positions if p.symbol == symbol), key=lambda p: p.opened_at)
        assert [p.signal_id for p in held] == ids
        assert [p.closing_signal_id for p in held] == [*ids[1:], None]
        assert [p.status for p in held] == ["closed"] * (len(ids) - 1) + ["open"]
