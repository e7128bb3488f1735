"""Security headers on every response: API, pages, static files, errors, 404s; HSTS on https."""

from __future__ import annotations

import re
from collections.abc import Iterator

import httpx
import pytest
from fastapi import FastAPI
from fastapi.testclient import TestClient
from httpx import Response

from tests.web.conftest import LiveServer
from tradeloop.app import create_app
from tradeloop.db import Database
from tradeloop.settings import Settings
from tradeloop.webhooks.auth import x_signature

EXPECTED = {
    "content-security-policy": (
        "default-src 'self'; script-src 'self'; style-src 'self'; img-src 'self' data:; "
        "frame-ancestors 'none'; base-uri 'none'; form-action 'self'; object-src 'none'"),
    "x-content-type-options": "nosniff",
    "x-frame-options": "DENY",
    "referrer-policy": "same-origin",
}
SAME_ORIGIN = {"origin": "http://testserver"}
OTHER_ORIGIN = {"origin": "https://evil.example"}


def assert_security_headers(response: Response) -> None:
    for name, value in EXPECTED.items():
        assert response.headers.get(name) == value, (name, response.request.url)


def boom() -> None:
    raise RuntimeError("an unexpected failure")


@pytest.fixture
def app(db: Database, settings: Settings) -> FastAPI:
    app = create_app(settings, db)
    app.add_api_route("/test-only/boom", boom)
    return app


@pytest.fixture
def plain_client(app: FastAPI) -> Iterator[TestClient]:
    with TestClient(app, raise_server_exceptions=False) as client:
        yield client


def test_every_kind_of_response_carries_the_headers(plain_client: TestClient,
                                                     admin: dict[str, str]) -> None:
    raw = b'{"symbol": "SPY"}'  # signed with a wrong secret: 401 from the first admin's
    responses = {
        "api": plain_client.get("/api/v1/auth/me", headers=admin),
        "page": plain_client.get("/users/log_in"),
        "redirect": plain_client.get("/", follow_redirects=False),
        "static": plain_client.get("/static/app.css"),
        "openapi": plain_client.get("/openapi.json"),
        "docs": plain_client.get("/docs"),
        "404": plain_client.get("/no/such/page"),
        # The client holds the pages' CSRF cookie by now: it says where it comes from.
        "405": plain_client.delete("/api/health", headers=SAME_ORIGIN),
        "401": plain_client.get("/api/v1/auth/me"),
        "422": plain_client.post("/api/v1/auth/token", json={"email": 1}, headers=SAME_ORIGIN),
        "403": plain_client.post("/api/v1/auth/token", json={}, headers=OTHER_ORIGIN),
        "500": plain_client.get("/test-only/boom"),
        "webhook": plain_client.post("/webhook", content=raw, headers={
            "content-type": "application/json", "x-signature": x_signature("wrong", raw)}),
        "health": plain_client.get("/api/health"),
    }
    statuses = {kind: response.status_code for kind, response in responses.items()}
    assert statuses == {"api": 200, "page": 200, "redirect": 303, "static": 200,
                        "openapi": 200, "docs": 200, "404": 404, "405": 405, "401": 401,
                        "422": 422, "403": 403, "500": 500, "webhook": 401, "health": 200}
    for response in responses.values():
        assert_security_headers(response)
        assert "strict-transport-security" not in response.headers


def test_hsts_only_over_https(app: FastAPI) -> None:
    with TestClient(app, base_url="https://testserver") as client:
        response = client.get("/api/health")
    assert_security_headers(response)
    assert response.headers["strict-transport-security"] == "max-age=31536000"


def test_hsts_follows_the_forwarded_proto_of_a_trusted_proxy(live_server: LiveServer) -> None:
    # uvicorn (proxy_headers, trusting 127.0.0.1 as `tradeloop serve` does by default) turns
    # X-Forwarded-Proto into the request's scheme.
    behind_tls = httpx.get(f"{live_server.url}/api/health",
                           headers={"x-forwarded-proto": "https"})
    plain = httpx.get(f"{live_server.url}/api/health")
    assert behind_tls.headers["strict-transport-security"] == "max-age=31536000"
    assert "strict-transport-security" not in plain.headers
    assert_security_headers(plain)


def test_account_pages_have_no_inline_script_or_style(plain_client: TestClient) -> None:
    for path in ("/users/log_in", "/users/register", "/users/reset_password",
                 "/users/log_out", "/docs", "/redoc"):
        page = plain_client.get(path).text.lower()
        assert "style=" not in page and "<style" not in page, path
        assert not re.search(r"\son[a-z]+=", page), path  # no event handler attributes
        for tag in page.split("<script")[1:]:
            assert tag.lstrip().startswith("src=") and "</script>" in tag, path
            assert tag.split("</script>")[0].split(">", 1)[1].strip() == "", path
