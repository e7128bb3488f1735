"""The API fuzz run's fixtures and reporting.

One app and one database for the module, with the rows of tests/fuzz/world.py, inside an outer
transaction; each operation x role runs in a savepoint rolled back afterwards, so every
operation starts from the same rows (a DELETE cannot starve the next operation) and nothing
stays behind. The database is SQLite, or PostgreSQL with FUZZ_DATABASE=postgresql (from
TEST_DATABASE_URL, as the rest of the suite).
"""

from __future__ import annotations

import logging
import os
import time
import traceback
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
import requests
from argon2 import PasswordHasher
from schemathesis.python.asgi import ASGIClient
from sqlalchemy import Connection, Engine

from tests.conftest import SharedConnectionDatabase, make_settings, wait_for_tasks
from tests.fuzz.report import REPORT_PATH, SESSION, OperationRun
from tests.fuzz.world import Actor, build_world
from tradeloop.accounts import security
from tradeloop.app import create_app
from tradeloop.db import create_db_engine
from tradeloop.prompts.cache import template_cache
from tradeloop.webhooks.auth import x_signature

FUZZ_DATABASE = os.environ.get("FUZZ_DATABASE", "sqlite")
# A request header the fuzz run adds to webhook cases it wants signed: the client replaces it
# with the `x-signature` of the exact body bytes sent (known only once the request is built).
SIGN_WITH = "x-fuzz-sign-with"
# Operations for admins only (non-admins get 404 whatever the id).
ADMIN_PATHS = "/api/v1/admin/"


class SigningClient(ASGIClient):
    """The in-process client of schemathesis, signing the webhook cases marked SIGN_WITH."""

    def send(self, request: requests.PreparedRequest, **kwargs: Any) -> requests.Response:
        secret = request.headers.pop(SIGN_WITH, None)
        if secret:
            body = request.body or b""
            raw = body.encode() if isinstance(body, str) else bytes(body)
            request.headers["x-signature"] = x_signature(secret, raw)
        return super().send(request, **kwargs)


class UnhandledErrors(logging.Handler):
    """The exceptions the app logged as unhandled (its 500s), for the findings."""

    def __init__(self) -> None:
        super().__init__()
        self.errors: list[str] = []

    def emit(self, record: logging.LogRecord) -> None:
        if record.exc_info and record.exc_info[1] is not None:
            self.errors.append(describe_exception(record.exc_info[1]))

    def take(self) -> str | None:
        """The latest unhandled exception since the last call, if any."""
        latest = self.errors[-1] if self.errors else None
        self.errors.clear()
        return latest


def describe_exception(exc: BaseException) -> str:
    """`Type: message` and the innermost frame in tradeloop's own code."""
    frames = [frame for frame in traceback.extract_tb(exc.__traceback__)
              if "/tradeloop/" in frame.filename]
    where = f" at {frames[-1].filename.rsplit('/src/', 1)[-1]}:{frames[-1].lineno}" \
        if frames else ""
    return f"{type(exc).__name__}: {str(exc).splitlines()[0][:300] if str(exc) else ''}{where}"


@dataclass(frozen=True)
class FuzzWorld:
    client: ASGIClient
    connection: Connection
    actors: dict[str, Actor]
    errors: UnhandledErrors
    webhook_secret: str


@pytest.fixture(scope="module")
def fuzz_world(request: pytest.FixtureRequest, engines: dict[str, Engine],
               tmp_path_factory: pytest.TempPathFactory) -> Iterator[FuzzWorld]:
    url = request.getfixturevalue(f"{FUZZ_DATABASE}_url")
    engine = engines.get(url) or engines.setdefault(url, create_db_engine(url))
    connection = engine.connect()
    outer = connection.begin()
    db = SharedConnectionDatabase(engine, connection)
    # A generous auth rate limit: the token and register operations are fuzzed, not throttled.
    settings = make_settings(tmp_path_factory.mktemp("fuzz"), auth_rate_limit="100000/minute")
    app = create_app(settings, db)
    errors = UnhandledErrors()
    logging.getLogger("tradeloop.errors").addHandler(errors)
    try:
        with cheap_password_hashing(), SigningClient(app) as client:
            template_cache.clear()
            yield FuzzWorld(client, connection, build_world(client, db), errors,
                            settings.secret("WEBHOOK_SECRET"))
    finally:
        logging.getLogger("tradeloop.errors").removeHandler(errors)
        template_cache.clear()
        outer.rollback()
        connection.close()


@contextmanager
def cheap_password_hashing() -> Iterator[None]:
    """argon2 at its lowest cost: each token or register case verifies or hashes a password,
    and at the production cost these two operations took a third of the run."""
    hasher = PasswordHasher(time_cost=1, memory_cost=8, parallelism=1)
    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(security, "_hasher", hasher)
        patch.setattr(security, "_DUMMY_HASH", hasher.hash("tradeloop-timing-equaliser"))
        yield


@pytest.fixture
def fuzz_operation(request: pytest.FixtureRequest, fuzz_world: FuzzWorld,
                   role: str) -> Iterator[OperationRun]:
    """The record of one operation fuzzed as `role`, its writes undone afterwards."""
    label = _operation_label(request.node.name)
    admin_only = label.split(" ", 1)[-1].startswith(ADMIN_PATHS)
    run = OperationRun(role=role, operation=label,
                       expects_real_rows="{" in label and not (admin_only and role != "admin"))
    savepoint = fuzz_world.connection.begin_nested()
    started = time.perf_counter()
    try:
        yield run
    finally:
        run.seconds = time.perf_counter() - started
        wait_for_tasks()
        savepoint.rollback()
        # Cached templates may name rows the rollback just removed.
        template_cache.clear()
        SESSION.runs.append(run)


def _operation_label(node_name: str) -> str:
    """`GET /api/v1/x/{id}` out of a test name like `test_api[GET /api/v1/x/{id}][user]`."""
    return node_name.split("[", 1)[1].split("]", 1)[0] if "[" in node_name else node_name


@pytest.hookimpl(wrapper=True)
def pytest_runtest_call(item: pytest.Item) -> Iterator[None]:
    """Fail an operation's test after all its cases ran (cases never raise, so Hypothesis
    neither stops at the first failure nor shrinks), with every distinct failure."""
    result = yield
    run = getattr(item, "funcargs", {}).get("fuzz_operation")
    if isinstance(run, OperationRun) and run.failed:
        raise AssertionError(run.describe_failures())
    return result


def pytest_terminal_summary(terminalreporter: pytest.TerminalReporter) -> None:
    if not SESSION.runs:
        return
    terminalreporter.section("API fuzz summary (schemathesis)")
    for line in SESSION.summary_lines():
        terminalreporter.write_line(line)
    if REPORT_PATH:
        SESSION.write_json(Path(REPORT_PATH))
        terminalreporter.write_line(f"report: {REPORT_PATH}")
