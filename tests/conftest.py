"""One database fixture for the whole suite: every test that uses it runs on SQLite and on
PostgreSQL, inside an outer transaction that is rolled back afterwards.

PostgreSQL comes from TEST_DATABASE_URL; without it the PostgreSQL cases are skipped, except
under CI=true, where a missing or unreachable PostgreSQL fails the run.
"""

from __future__ import annotations

import os
import threading
import time
from collections.abc import Iterator
from contextlib import AbstractContextManager, contextmanager, nullcontext
from pathlib import Path
from typing import NoReturn

import pytest
from fastapi.testclient import TestClient
from pydantic import SecretStr
from sqlalchemy import Connection, Engine
from sqlalchemy.engine import make_url
from sqlalchemy.orm import Session, sessionmaker

from tradeloop import migrate
from tradeloop.app import create_app
from tradeloop.db import Database, PinnedDriver, create_db_engine
from tradeloop.driver import DriverConnection
from tradeloop.settings import Settings

IN_CI = os.environ.get("CI", "").lower() == "true"
TEST_PASSWORD = "correct horse battery"


class SharedConnectionDatabase(Database):
    """Every unit of work on one connection, each in a savepoint of the outer transaction
    the test rolls back: the ORM's, the driver's (run in an ORM unit of work on that
    connection, so they see each other) and the pinned ones alike."""

    def __init__(self, engine: Engine, connection: Connection):
        factory = sessionmaker(bind=connection, join_transaction_mode="create_savepoint",
                               expire_on_commit=False)
        super().__init__(engine, factory, read_session_factory=factory)
        # A connection runs one thread's statements at a time: the app's threads (requests,
        # their after-answer work, tasks, the webhook writer) take turns on it, as separate
        # connections would each have done their own work. Re-entrant: a unit may open another
        # on its thread. The test's own thread never waits: it may hold a unit of work while
        # it calls the app (and then only waits for the app).
        self._turn = threading.RLock()

    @contextmanager
    def unit_of_work(self) -> Iterator[Session]:
        with self._taking_turns(), super().unit_of_work() as session:
            yield session

    @contextmanager
    def read_session(self) -> Iterator[Session]:
        with self._taking_turns(), super().read_session() as session:
            yield session

    def _taking_turns(self) -> AbstractContextManager[object]:
        if threading.current_thread() is threading.main_thread():
            return nullcontext()
        return self._turn

    @contextmanager
    def pinned(self) -> Iterator[Database]:
        yield self  # sessions share one connection already

    @contextmanager
    def driver_unit_of_work(self) -> Iterator[DriverConnection]:
        with self.unit_of_work() as session:
            yield DriverConnection.of_session(session)

    autocommit_driver = driver_unit_of_work  # a savepoint of its own, committed at the end

    def pinned_driver(self) -> PinnedDriver:
        return _SharedPinnedDriver(self)


class _SharedPinnedDriver(PinnedDriver):
    """The webhook writer's pinned units of work, on the shared connection."""

    def __init__(self, db: SharedConnectionDatabase):
        super().__init__(db.engine)
        self._db = db

    @contextmanager
    def unit_of_work(self) -> Iterator[DriverConnection]:
        with self._db.driver_unit_of_work() as connection:
            yield connection


def require_service(env_var: str, what: str) -> str:
    """The service URL from the environment; skip locally, fail in CI, when it is missing."""
    url = os.environ.get(env_var)
    if url:
        return url
    skip_or_fail_in_ci(f"{env_var} is not set: {what} tests need it")


def skip_or_fail_in_ci(message: str) -> NoReturn:
    """Skip a test whose requirement is missing, except under CI=true, where it fails."""
    if IN_CI:
        pytest.fail(message + " (under CI=true a missing requirement fails: CI runs every test)")
    pytest.skip(message)


def fresh_postgres_database(suffix: str) -> str:
    """The URL of an empty PostgreSQL database of a test's own: TEST_DATABASE_URL's database
    name plus `_suffix`, dropped and created again."""
    base = make_url(require_service("TEST_DATABASE_URL", "PostgreSQL"))
    url = base.set(database=f"{base.database}_{suffix}").render_as_string(False)
    migrate.recreate_postgres_database(url)
    return url


@pytest.fixture(scope="session")
def sqlite_url(tmp_path_factory: pytest.TempPathFactory) -> str:
    url = f"sqlite:///{tmp_path_factory.mktemp('db') / 'test.db'}"
    migrate.upgrade(url)
    return url


@pytest.fixture(scope="session")
def postgresql_url() -> str:
    url = require_service("TEST_DATABASE_URL", "PostgreSQL")
    try:
        migrate.recreate_postgres_database(url)
    except Exception as exc:
        pytest.fail(f"PostgreSQL at TEST_DATABASE_URL is unreachable: {exc}")
    migrate.upgrade(url)
    return url


@pytest.fixture(scope="session")
def engines() -> Iterator[dict[str, Engine]]:
    cache: dict[str, Engine] = {}
    yield cache
    for engine in cache.values():
        engine.dispose()


@pytest.fixture(params=["sqlite", "postgresql"])
def database_url(request: pytest.FixtureRequest) -> str:
    return request.getfixturevalue(f"{request.param}_url")


@pytest.fixture
def db(database_url: str, engines: dict[str, Engine]) -> Iterator[Database]:
    """A migrated database whose changes vanish after the test (outer transaction rollback)."""
    engine = engines.get(database_url) or engines.setdefault(
        database_url, create_db_engine(database_url))
    connection = engine.connect()
    outer = connection.begin()
    yield SharedConnectionDatabase(engine, connection)
    outer.rollback()
    connection.close()


def make_settings(data_dir: Path, **overrides: object) -> Settings:
    values: dict[str, object] = {
        "tradeloop_data_dir": data_dir, "secret_key": SecretStr("test-secret-key" * 4),
        "webhook_secret": SecretStr("test-webhook-secret"), "log_format": "json",
        "celery_broker_url": None, "database_url": None,
        # One task thread: the rolled-back test connection must never be used concurrently.
        "task_pool_size": 1,
        # Signals stay queued unless a test processes them: a background drain would share
        # the test connection and race the test's own assertions.
        "signal_process_on_ingest": False,
        # Likewise for the tasks that react to imported bars (marks, live strategies).
        "events_enabled": False,
        # Execution rows written in the caller's thread: the background writer would use the
        # rolled-back test connection from a second thread (tests/llm/test_log_writer.py
        # covers the background mode on databases of its own).
        "prompt_log_mode": "inline",
    }
    values.update(overrides)
    return Settings(_env_file=None, **values)  # type: ignore[call-arg]


@pytest.fixture
def settings(tmp_path: Path) -> Settings:
    return make_settings(tmp_path / "data")


@pytest.fixture
def client(db: Database, settings: Settings) -> Iterator[TestClient]:
    with TestClient(create_app(settings, db)) as test_client:
        yield test_client


@pytest.fixture
def session(db: Database) -> Iterator:
    """A unit of work on the test database, for arranging data directly through services."""
    with db.unit_of_work() as unit:
        yield unit


def api_headers(db: Database, email: str, *, admin: bool = False) -> dict[str, str]:
    """Create a user (admin if asked) and return headers carrying a fresh API token."""
    from tradeloop.accounts import service as accounts
    from tradeloop.accounts.models import TokenContext

    with db.unit_of_work() as unit:
        user = accounts.create_user(session=unit, email=email, password=TEST_PASSWORD,
                                    is_admin=admin)
        raw = accounts.issue_token(session=unit, user=user, context=TokenContext.API)
    return {"Authorization": f"Bearer {raw}"}


@pytest.fixture
def alice(db: Database) -> dict[str, str]:
    return api_headers(db, "alice@example.com")


@pytest.fixture
def bob(db: Database) -> dict[str, str]:
    return api_headers(db, "bob@example.com")


@pytest.fixture
def admin(db: Database) -> dict[str, str]:
    return api_headers(db, "root@example.com", admin=True)


def wait_for_tasks(timeout_s: float = 60) -> None:
    """Block until every job of the in-process task runner has finished (re-raising errors)."""
    import concurrent.futures

    from tradeloop.tasks import get_task_runner

    runner = get_task_runner()
    deadline = time.monotonic() + timeout_s
    while getattr(runner, "futures", None) and time.monotonic() < deadline:
        for future in concurrent.futures.as_completed(list(runner.futures.values()),
                                                      timeout=deadline - time.monotonic()):
            future.result()


def store_bars(db: Database, symbol: str, count: int = 300, *, seed: int = 7,
               drift: float = 0.0, end: str | None = None) -> None:
    """Import `count` daily random-walk bars for `symbol` through the market data service
    (from 2020-01-01, or ending on the date `end`)."""
    import numpy as np
    import pandas as pd

    from tradeloop.market_data import service as market_data
    from tradeloop.market_data.bar_files import ParsedBars

    rng = np.random.default_rng(seed)
    close = 100 * np.exp(np.cumsum(rng.normal(drift, 0.02, count)))
    opening = close * np.exp(rng.normal(0, 0.005, count))
    frame = pd.DataFrame({
        "ts": pd.date_range(None if end else "2020-01-01", end, periods=count, freq="D",
                            tz="UTC"),
        "open": opening, "high": np.maximum(opening, close) * 1.01,
        "low": np.minimum(opening, close) * 0.99, "close": close,
        "volume": np.full(count, 1000.0)})
    with db.unit_of_work() as session:
        market_data.import_bars(session=session, symbol=symbol, timeframe="1d",
                                parsed=ParsedBars("plain", frame, 0), source="test")
