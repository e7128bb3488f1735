"""Browser fixtures for the web tests: a live server of the app and Debian's Chromium.

`live_server` runs the real app under uvicorn (in a thread, on a free port, against a SQLite
file in a temporary data dir); `start_live_server(settings)` starts one with settings of a
test's own, `start_server_process` one in a process of its own. `browser` is Chromium
driven by Playwright (the `chromium` on PATH, never a browser of Playwright's own);
`watched_page` opens a page that records what the page's visitor cannot see: console errors,
uncaught exceptions, CSP violations and requests to other hosts. Missing Chromium skips the
browser tests locally and fails them under CI=true.
"""

from __future__ import annotations

import json
import os
import shutil
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

import httpx
import pytest
import uvicorn

from tests.conftest import make_settings, skip_or_fail_in_ci
from tradeloop import migrate
from tradeloop.app import create_app
from tradeloop.db import Database
from tradeloop.settings import Settings

if TYPE_CHECKING:
    from playwright.sync_api import Browser, Page

CHROMIUM_ARGS = ["--no-sandbox", "--disable-gpu", "--disable-background-networking",
                 "--disable-component-update", "--disable-sync", "--no-first-run"]
# Runs in every page before its own scripts (outside the page's CSP): collect the violations.
RECORD_CSP_VIOLATIONS = """
window.__cspViolations = [];
document.addEventListener("securitypolicyviolation", (event) => {
  window.__cspViolations.push(`${event.effectiveDirective} ${event.blockedURI}`);
});
"""
SERVER_START_TIMEOUT_S = 20


@dataclass
class LiveServer:
    url: str
    settings: Settings
    db: Database


@contextmanager
def start_live_server(settings: Settings) -> Iterator[LiveServer]:
    """The app as `tradeloop serve` runs it (uvicorn, proxy headers from 127.0.0.1), on a
    migrated SQLite database in `settings`' data dir, until the block ends."""
    database_url = settings.effective_database_url
    migrate.upgrade(database_url)
    db = Database.from_url(database_url)
    app = create_app(settings, db)
    sock = socket.socket()
    sock.bind(("127.0.0.1", 0))
    config = uvicorn.Config(app, log_config=None, access_log=False, proxy_headers=True,
                            forwarded_allow_ips="127.0.0.1", lifespan="on")
    server = uvicorn.Server(config)
    thread = threading.Thread(target=server.run, kwargs={"sockets": [sock]}, daemon=True)
    thread.start()
    deadline = time.monotonic() + SERVER_START_TIMEOUT_S
    while not server.started:
        if not thread.is_alive() or time.monotonic() > deadline:
            raise AssertionError("the live server did not start")
        time.sleep(0.02)
    try:
        yield LiveServer(f"http://127.0.0.1:{sock.getsockname()[1]}", settings, db)
    finally:
        server.should_exit = True
        thread.join(timeout=SERVER_START_TIMEOUT_S)
        sock.close()
        db.engine.dispose()


@contextmanager
def start_server_process(data_dir: Path, **overrides: Any) -> Iterator[LiveServer]:
    """The same in a process of its own (`make_settings(data_dir, **overrides)`, JSON values
    only): what it measures is the server alone, without the test's threads sharing its
    interpreter. Its output goes to `server.log` in the data dir."""
    settings = make_settings(data_dir, **overrides)
    migrate.upgrade(settings.effective_database_url)
    sock = socket.socket()
    sock.bind(("127.0.0.1", 0))
    sock.listen(128)  # connections wait in the backlog until the server accepts them
    root = Path(__file__).resolve().parents[2]
    env = {**os.environ,
           "PYTHONPATH": os.pathsep.join(filter(None, [str(root), os.environ.get("PYTHONPATH")]))}
    data_dir.mkdir(parents=True, exist_ok=True)
    with open(data_dir / "server.log", "wb") as log:
        process = subprocess.Popen(
            [sys.executable, "-m", "tests.web.server_process", str(data_dir),
             json.dumps(overrides), str(sock.fileno())],
            pass_fds=[sock.fileno()], env=env, cwd=root, stdout=log, stderr=subprocess.STDOUT)
    url = f"http://127.0.0.1:{sock.getsockname()[1]}"
    sock.close()
    db = Database.from_url(settings.effective_database_url)
    try:
        _wait_until_answering(url, process)
        yield LiveServer(url, settings, db)
    finally:
        process.terminate()
        try:
            process.wait(timeout=SERVER_START_TIMEOUT_S)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()
        db.engine.dispose()


def _wait_until_answering(url: str, process: subprocess.Popen[bytes]) -> None:
    deadline = time.monotonic() + SERVER_START_TIMEOUT_S
    while True:
        if process.poll() is not None or time.monotonic() > deadline:
            raise AssertionError("the server process did not start (see its server.log)")
        try:
            if httpx.get(url + "/api/health", timeout=1).status_code == 200:
                return
        except httpx.HTTPError:
            pass
        time.sleep(0.05)


@pytest.fixture(scope="module")
def live_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[LiveServer]:
    settings = make_settings(tmp_path_factory.mktemp("live") / "data")
    with start_live_server(settings) as server:
        yield server


def require_chromium() -> str:
    """The path of Debian's chromium; skip locally, fail under CI=true, when it is missing."""
    path = shutil.which("chromium")
    if path is None:
        skip_or_fail_in_ci("chromium is not on PATH: the browser tests need it "
                           "(./scripts/test installs it with apt-get)")
    return path


@pytest.fixture(scope="session")
def browser() -> Iterator[Browser]:
    executable = require_chromium()
    from playwright.sync_api import sync_playwright

    with sync_playwright() as playwright:
        chromium = playwright.chromium.launch(executable_path=executable, args=CHROMIUM_ARGS)
        yield chromium
        chromium.close()


@dataclass
class WatchedPage:
    """A page and what it reported: console errors, uncaught errors, foreign requests."""

    page: Page
    origin: str
    console_errors: list[str] = field(default_factory=list)
    page_errors: list[str] = field(default_factory=list)
    foreign_requests: list[str] = field(default_factory=list)

    def csp_violations(self) -> list[str]:
        violations: list[str] = self.page.evaluate("window.__cspViolations")
        return violations

    def _on_request(self, request: Any) -> None:
        if not request.url.startswith((self.origin + "/", "data:", "blob:" + self.origin)):
            self.foreign_requests.append(request.url)


@pytest.fixture
def watched_page(browser: Browser, live_server: LiveServer) -> Iterator[WatchedPage]:
    context = browser.new_context()
    page = context.new_page()
    page.add_init_script(RECORD_CSP_VIOLATIONS)
    watched = WatchedPage(page, live_server.url)
    page.on("console", lambda message: message.type == "error"
            and watched.console_errors.append(message.text))
    page.on("pageerror", lambda error: watched.page_errors.append(str(error)))
    page.on("request", watched._on_request)
    yield watched
    context.close()
