"""The background execution-log writer (PROMPT_LOG_MODE=background) on databases of its own:
a migrated SQLite file and a freshly created PostgreSQL database. Not the rolled-back `db`
fixture: its single connection must never be used from the writer's thread."""

from __future__ import annotations

import os
import subprocess
import sys
import textwrap
import threading
import time
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest
import structlog
from fastapi.testclient import TestClient
from sqlalchemy import func, select, text
from sqlalchemy.orm import Session

from tests.conftest import TEST_PASSWORD, fresh_postgres_database, make_settings
from tradeloop import migrate
from tradeloop.app import create_app
from tradeloop.db import Database
from tradeloop.llm import log_writer
from tradeloop.llm import service as llm
from tradeloop.llm.models import PromptExecution
from tradeloop.settings import Settings

SRC = Path(__file__).resolve().parents[2] / "src"


@pytest.fixture(scope="module")
def sqlite_file_url(tmp_path_factory: pytest.TempPathFactory) -> str:
    url = f"sqlite:///{tmp_path_factory.mktemp('log-writer') / 'log.db'}"
    migrate.upgrade(url)
    return url


@pytest.fixture(scope="module")
def postgresql_own_url() -> str:
    url = fresh_postgres_database("log_writer")
    migrate.upgrade(url)
    return url


@pytest.fixture(params=["sqlite", "postgresql"])
def own_db(request: pytest.FixtureRequest) -> Iterator[Database]:
    """A Database with its own engine and pool, as the app has."""
    url = request.getfixturevalue(
        "sqlite_file_url" if request.param == "sqlite" else "postgresql_own_url")
    database = Database.from_url(url)
    yield database
    log_writer.shutdown(database, 5.0)
    database.dispose()


@pytest.fixture
def own_user(own_db: Database) -> uuid.UUID:
    from tradeloop.accounts import service as accounts

    with own_db.unit_of_work() as session:
        return accounts.create_user(session=session, email=f"lw-{uuid.uuid4().hex[:8]}@ex.com",
                                    password=TEST_PASSWORD).id


@pytest.fixture
def background(tmp_path: Path) -> Settings:
    return make_settings(tmp_path / "data", prompt_log_mode="background")


@pytest.fixture
def held_writer(monkeypatch: pytest.MonkeyPatch) -> Iterator[threading.Event]:
    """The writer waits for this event before each batch (set it to let rows through), so a
    test can hold rows in the queue without holding any database lock."""
    release = threading.Event()
    real_write_batch = log_writer.write_batch

    def write_when_released(db: Database, batch: list[llm.LoggedExecution]) -> None:
        release.wait(10)
        real_write_batch(db, batch)

    monkeypatch.setattr(log_writer, "write_batch", write_when_released)
    yield release
    release.set()


def call(user_id: uuid.UUID) -> llm.PromptCall:
    return llm.PromptCall(user_id=user_id, user_text="Analyse AAPL on the daily.",
                          context={"symbol": "AAPL", "latest_close": 187.5,
                                   "indicators": {"sma_50": 178.0, "rsi_14": 61.0}},
                          template_id=uuid.uuid4(), template_version=1)


def stored_ids(db: Database, user_id: uuid.UUID) -> set[uuid.UUID]:
    with db.unit_of_work() as session:
        return set(session.scalars(select(PromptExecution.id)
                                   .where(PromptExecution.user_id == user_id)))


def test_background_is_the_default_and_inline_can_be_chosen(
        monkeypatch: pytest.MonkeyPatch) -> None:
    assert Settings(_env_file=None).prompt_log_mode == "background"  # type: ignore[call-arg]
    monkeypatch.setenv("PROMPT_LOG_MODE", "inline")
    assert Settings(_env_file=None).prompt_log_mode == "inline"  # type: ignore[call-arg]
    monkeypatch.setenv("PROMPT_LOG_MODE", "sometimes")
    with pytest.raises(ValueError, match="prompt_log_mode"):
        Settings(_env_file=None)  # type: ignore[call-arg]


def test_rows_arrive_after_flush_and_listeners_run(own_db: Database, own_user: uuid.UUID,
                                                   background: Settings,
                                                   held_writer: threading.Event) -> None:
    seen: list[tuple[uuid.UUID, bool, str]] = []

    def listener(session: Session, logged: llm.LoggedExecution) -> None:
        row_written = session.get(PromptExecution, logged.id) is not None
        seen.append((logged.id, row_written, threading.current_thread().name))

    llm.add_execution_listener(listener)
    try:
        results = [llm.execute(own_db, background, call(own_user)) for _ in range(3)]
        ids = {result.execution_id for result in results}
        assert None not in ids and len(ids) == 3
        # The caller returned while the writer is still held: nothing is written yet.
        assert stored_ids(own_db, own_user) == set()
        held_writer.set()
        assert llm.flush_execution_log(own_db, 10.0)
    finally:
        llm.remove_execution_listener(listener)
    assert stored_ids(own_db, own_user) == ids
    assert {entry[0] for entry in seen} == ids
    assert all(row_written and thread == "prompt-execution-log"
               for _, row_written, thread in seen)
    stats = log_writer.writer_for(own_db).stats()  # type: ignore[union-attr]
    assert (stats.written, stats.failed, stats.dropped, stats.pending) == (3, 0, 0, 0)


def test_failing_write_never_raises_and_is_logged(own_db: Database, own_user: uuid.UUID,
                                                  background: Settings) -> None:
    with own_db.unit_of_work() as session:
        session.execute(text("ALTER TABLE prompt_executions RENAME TO prompt_executions_off"))
    try:
        with structlog.testing.capture_logs() as logs:
            results = [llm.execute(own_db, background, call(own_user)) for _ in range(2)]
            assert llm.flush_execution_log(own_db, 10.0)
    finally:
        with own_db.unit_of_work() as session:
            session.execute(text("ALTER TABLE prompt_executions_off RENAME TO prompt_executions"))
    assert all(result.success for result in results)
    failed = {entry["execution_id"] for entry in logs
              if entry["event"] == "prompt_execution_log_failed"}
    assert failed == {str(result.execution_id) for result in results}
    writer = log_writer.writer_for(own_db)
    assert writer is not None and writer.stats().failed == 2
    # The thread survived the failures: the next row is written.
    later = llm.execute(own_db, background, call(own_user))
    assert llm.flush_execution_log(own_db, 10.0)
    assert stored_ids(own_db, own_user) == {later.execution_id}


def test_full_queue_drops_without_blocking(own_db: Database, own_user: uuid.UUID,
                                           tmp_path: Path, held_writer: threading.Event) -> None:
    settings = make_settings(tmp_path / "data", prompt_log_mode="background",
                             prompt_log_queue_size=2)
    first = llm.execute(own_db, settings, call(own_user))
    writer = log_writer.writer_for(own_db)
    assert writer is not None
    deadline = time.monotonic() + 5
    while writer.stats().queued and time.monotonic() < deadline:
        time.sleep(0.01)  # until the held writer has taken the first row off the queue
    queued = [llm.execute(own_db, settings, call(own_user)) for _ in range(2)]
    with structlog.testing.capture_logs() as logs:
        started = time.perf_counter()
        dropped = llm.execute(own_db, settings, call(own_user))
        elapsed = time.perf_counter() - started
    assert dropped.success and dropped.execution_id is None
    assert elapsed < 1.0  # noisy machine: generous, yet the held writer would take 10 s
    assert [entry["event"] for entry in logs
            if entry["event"].startswith("prompt_execution_log")] == [
        "prompt_execution_log_dropped"]
    held_writer.set()
    assert llm.flush_execution_log(own_db, 10.0)
    expected = {first.execution_id} | {result.execution_id for result in queued}
    assert stored_ids(own_db, own_user) == expected
    assert writer.stats().dropped == 1


def test_shutdown_writes_pending_rows(own_db: Database, own_user: uuid.UUID,
                                      background: Settings,
                                      held_writer: threading.Event) -> None:
    results = [llm.execute(own_db, background, call(own_user)) for _ in range(5)]
    threading.Timer(0.2, held_writer.set).start()
    assert log_writer.shutdown(own_db, 10.0)
    assert log_writer.writer_for(own_db) is None
    assert stored_ids(own_db, own_user) == {result.execution_id for result in results}


def test_shutdown_wait_is_bounded(own_db: Database, own_user: uuid.UUID,
                                  background: Settings, held_writer: threading.Event) -> None:
    llm.execute(own_db, background, call(own_user))
    with structlog.testing.capture_logs() as logs:
        started = time.perf_counter()
        assert not log_writer.shutdown(own_db, 0.2)
        elapsed = time.perf_counter() - started
    assert elapsed < 2.0
    assert any(entry["event"] == "prompt_execution_log_flush_timeout" and entry["pending"] == 1
               for entry in logs)


def test_app_shutdown_flushes(own_db: Database, own_user: uuid.UUID, background: Settings,
                              held_writer: threading.Event) -> None:
    with TestClient(create_app(background, own_db)):
        result = llm.execute(own_db, background, call(own_user))
        threading.Timer(0.2, held_writer.set).start()
    assert stored_ids(own_db, own_user) == {result.execution_id}


def test_process_exit_flushes(sqlite_file_url: str, tmp_path: Path) -> None:
    """A process that exits right after `execute` (a CLI command) still writes its row: the
    atexit hook waits for the writer, here slowed down so that the row is surely pending."""
    script = textwrap.dedent(f"""
        import time, uuid
        from tradeloop.accounts import service as accounts
        from tradeloop.db import Database
        from tradeloop.domains import load_models
        from tradeloop.llm import log_writer, service as llm
        from tradeloop.settings import Settings

        load_models()
        db = Database.from_url({sqlite_file_url!r})
        with db.unit_of_work() as session:
            user_id = accounts.create_user(session=session, email="exit@ex.com",
                                           password={TEST_PASSWORD!r}).id
        real_write_batch = log_writer.write_batch
        def slow_write_batch(db, batch):
            time.sleep(0.5)
            real_write_batch(db, batch)
        log_writer.write_batch = slow_write_batch
        settings = Settings(_env_file=None, tradeloop_data_dir={str(tmp_path)!r},
                            prompt_log_mode="background")
        result = llm.execute(db, settings, llm.PromptCall(user_id=user_id,
                             user_text="Analyse AAPL.", context={{"symbol": "AAPL"}}))
        assert log_writer.writer_for(db).stats().pending == 1
        print("EXECUTION", result.execution_id)
    """)
    env = os.environ | {"PYTHONPATH": str(SRC)}
    finished = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True,
                              env=env, timeout=60, check=False)
    assert finished.returncode == 0, finished.stderr[-2000:]
    printed = [line for line in finished.stdout.splitlines() if line.startswith("EXECUTION ")]
    execution_id = uuid.UUID(printed[-1].split()[1])
    database = Database.from_url(sqlite_file_url)
    try:
        with database.unit_of_work() as session:
            assert session.scalar(select(func.count()).select_from(PromptExecution)
                                  .where(PromptExecution.id == execution_id)) == 1
    finally:
        database.dispose()
