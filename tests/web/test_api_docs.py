"""The API docs offline: /docs and /redoc from the npm assets, rendered by Chromium under the
CSP with nothing loaded from another host."""

from __future__ import annotations

import re
from pathlib import Path

import httpx
import pytest
from fastapi.testclient import TestClient

from tests.conftest import make_settings
from tests.web.conftest import LiveServer, WatchedPage
from tradeloop.app import create_app
from tradeloop.db import Database

DOCS_PAGES = ("/docs", "/redoc")
ASSET_REFERENCE = re.compile(r'(?:src|href)="([^"]*)"')
# ReDoc's sidebar shows Redocly's logo from its CDN; the policy blocks it (web/docs.py).
REDOC_LOGO_BLOCKED = "img-src https://cdn.redoc.ly/redoc/logo-mini.svg"


def operation_ids(server: LiveServer) -> set[str]:
    openapi = httpx.get(f"{server.url}/openapi.json").json()
    return {operation["operationId"] for item in openapi["paths"].values()
            for operation in item.values()}


@pytest.mark.parametrize("path", DOCS_PAGES)
def test_docs_reference_no_external_host(live_server: LiveServer, path: str) -> None:
    page = httpx.get(live_server.url + path)
    assert page.status_code == 200
    assert "//" not in page.text.replace("<!doctype html>", "")  # no scheme, no host
    references = ASSET_REFERENCE.findall(page.text)
    assert any("/static/vendor/" in ref for ref in references)
    for reference in references:
        if reference.startswith("data:"):
            continue
        assert reference.startswith("/"), reference
        asset = httpx.get(live_server.url + reference)
        assert asset.status_code == 200 and len(asset.content) > 100, reference


def test_docs_say_how_to_install_missing_assets(db: Database, tmp_path: Path) -> None:
    settings = make_settings(tmp_path / "data", node_modules_dir=tmp_path / "nowhere")
    with TestClient(create_app(settings, db)) as client:
        for path in DOCS_PAGES:
            response = client.get(path)
            assert response.status_code == 503
            assert "npm ci" in response.text and "/openapi.json" in response.text
        assert client.get("/static/vendor/swagger-ui/swagger-ui-bundle.js").status_code == 404


def test_swagger_ui_renders_every_operation(watched_page: WatchedPage,
                                            live_server: LiveServer) -> None:
    operations = operation_ids(live_server)
    page = watched_page.page
    page.goto(f"{live_server.url}/docs")
    page.locator(".opblock").first.wait_for()
    # One block per operation and tag, with the id "operations-<tag>-<operationId>".
    blocks = page.locator(".opblock").evaluate_all("blocks => blocks.map(block => block.id)")
    rendered = {op for op in operations if any(block.endswith(f"-{op}") for block in blocks)}
    assert rendered == operations and len(operations) > 50
    assert page.locator(".opblock-summary-path", has_text="/api/v1/strategies").count() > 0
    assert watched_page.csp_violations() == []
    assert watched_page.console_errors == [] and watched_page.page_errors == []
    assert watched_page.foreign_requests == []


def test_redoc_renders_every_operation(watched_page: WatchedPage,
                                       live_server: LiveServer) -> None:
    operations = operation_ids(live_server)
    page = watched_page.page
    page.goto(f"{live_server.url}/redoc")
    sections = page.locator("[data-section-id^='operation/']")
    sections.first.wait_for()
    rendered = sections.evaluate_all("sections => sections.map(s => s.dataset.sectionId)")
    assert {section.removeprefix("operation/") for section in rendered} == operations
    assert watched_page.csp_violations() == [REDOC_LOGO_BLOCKED]
    assert watched_page.page_errors == []
    # The blocked logo is the only thing that tried to leave the site (and did not).
    assert [url for url in watched_page.foreign_requests if "cdn.redoc.ly" not in url] == []


def test_log_in_page_works_under_the_csp(watched_page: WatchedPage,
                                         live_server: LiveServer) -> None:
    page = watched_page.page
    page.goto(f"{live_server.url}/users/register")
    page.get_by_label("Email").fill("browser@example.com")
    page.get_by_label("Password").fill("correct horse battery")
    page.get_by_role("button", name="Create account").click()
    page.get_by_text("Check your inbox").wait_for()
    page.goto(f"{live_server.url}/users/log_in")
    # The stylesheet applies: the page is styled from /static/app.css, not inline.
    assert page.locator("header.topbar").evaluate(
        "el => getComputedStyle(el).display") == "flex"
    page.get_by_label("Email").fill("browser@example.com")
    page.get_by_label("Password").fill("correct horse battery")
    page.get_by_role("button", name="Log in").click()
    page.get_by_text("Welcome, browser@example.com").wait_for()
    assert watched_page.csp_violations() == []
    assert watched_page.console_errors == [] and watched_page.page_errors == []


def test_the_watch_sees_an_inline_style_or_script(watched_page: WatchedPage,
                                                  live_server: LiveServer) -> None:
    """The checks above can fail: an inline style or script on our pages is reported."""
    page = watched_page.page
    page.goto(f"{live_server.url}/users/log_in")
    page.evaluate("""() => {
      const style = document.createElement("style");
      style.textContent = "body { color: red }";
      document.head.appendChild(style);
      const script = document.createElement("script");
      script.textContent = "window.inlineRan = true";
      document.head.appendChild(script);
    }""")
    page.wait_for_function("window.__cspViolations.length >= 2")
    assert sorted(watched_page.csp_violations()) == ["script-src-elem inline",
                                                     "style-src-elem inline"]
    assert page.evaluate("window.inlineRan") is None
