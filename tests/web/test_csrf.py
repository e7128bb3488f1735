"""CSRF: a cookie-authenticated state-changing request needs a same-site Origin (or Referer)
or the CSRF token; bearer-token calls and the HMAC-signed webhooks are exempt."""

from __future__ import annotations

from collections.abc import Iterator

import pytest
from fastapi.testclient import TestClient

from tests.accounts.test_api import create_user
from tests.conftest import make_settings
from tests.web.test_account_pages import csrf_from, log_in
from tradeloop.accounts.dependencies import SESSION_COOKIE
from tradeloop.app import create_app
from tradeloop.csrf import CSRF_COOKIE, CSRF_FIELD, CSRF_HEADER
from tradeloop.db import Database
from tradeloop.settings import Settings

ENDPOINTS = "/api/v1/webhook-endpoints"
SITE = "http://testserver"
EVIL = "https://evil.example"


@pytest.fixture
def browser_client(client: TestClient, db: Database) -> TestClient:
    """A client logged in through the log-in form: it holds the session and CSRF cookies."""
    create_user(db, "victim@example.com")
    assert log_in(client, "victim@example.com").status_code == 303
    assert client.cookies.get(SESSION_COOKIE) and client.cookies.get(CSRF_COOKIE)
    return client


def new_endpoint(client: TestClient) -> dict:
    response = client.post(ENDPOINTS, json={"name": "tv"}, headers={"origin": SITE})
    assert response.status_code == 201, response.text
    return response.json()


def endpoint_names(client: TestClient) -> list[str]:
    return [e["name"] for e in client.get(ENDPOINTS).json()["endpoints"]]


def assert_refused(response) -> None:
    assert response.status_code == 403, response.text
    assert response.json()["error"]["code"] == "csrf_failed"


def test_cross_origin_form_post_and_delete_are_refused(browser_client: TestClient) -> None:
    """The issue's reproduction: a page elsewhere makes the victim's browser post a form to
    rotate-secret (was 200) and send a DELETE (was 204), the session cookie attached."""
    endpoint = new_endpoint(browser_client)
    url = f"{ENDPOINTS}/{endpoint['id']}"
    rotated = browser_client.post(f"{url}/rotate-secret", data={"x": "1"},
                                  headers={"origin": EVIL})
    deleted = browser_client.delete(url, headers={"origin": EVIL})
    assert_refused(rotated)
    assert_refused(deleted)
    assert "secret" not in rotated.text
    assert endpoint_names(browser_client) == ["tv"]

    # The same requests from the site itself go through.
    same_site = browser_client.post(f"{url}/rotate-secret", headers={"origin": SITE})
    assert same_site.status_code == 200 and same_site.json()["secret"] != endpoint["secret"]
    assert browser_client.delete(url, headers={"origin": SITE}).status_code == 204


@pytest.mark.parametrize("origin", ["null", "http://testserver.evil.example",
                                    "https://testserver", "http://testserver:8080", "garbage"])
def test_any_other_origin_is_refused(browser_client: TestClient, origin: str) -> None:
    assert_refused(browser_client.post(ENDPOINTS, json={"name": "x"},
                                       headers={"origin": origin}))
    assert endpoint_names(browser_client) == []


def test_referer_decides_when_origin_is_absent(browser_client: TestClient) -> None:
    assert_refused(browser_client.post(ENDPOINTS, json={"name": "x"},
                                       headers={"referer": f"{EVIL}/page"}))
    allowed = browser_client.post(ENDPOINTS, json={"name": "y"},
                                  headers={"referer": f"{SITE}/users/settings"})
    assert allowed.status_code == 201
    assert endpoint_names(browser_client) == ["y"]


def test_without_origin_or_referer_the_token_is_needed(browser_client: TestClient) -> None:
    token = browser_client.cookies[CSRF_COOKIE]
    assert_refused(browser_client.post(ENDPOINTS, json={"name": "none"}))
    assert_refused(browser_client.post(ENDPOINTS, json={"name": "bad"},
                                       headers={CSRF_HEADER: token + "x"}))
    header = browser_client.post(ENDPOINTS, json={"name": "header"},
                                 headers={CSRF_HEADER: token})
    assert header.status_code == 201
    endpoint = header.json()
    # A URL-encoded form may carry it as the field every page's forms have.
    rotated = browser_client.post(f"{ENDPOINTS}/{endpoint['id']}/rotate-secret",
                                  data={CSRF_FIELD: token})
    assert rotated.status_code == 200
    assert_refused(browser_client.post(f"{ENDPOINTS}/{endpoint['id']}/rotate-secret",
                                       data={CSRF_FIELD: "forged"}))
    # Non-ASCII tokens are refused like any other wrong token, not an error.
    assert_refused(browser_client.post(f"{ENDPOINTS}/{endpoint['id']}/rotate-secret",
                                       data={CSRF_FIELD: "jeton-é"}))
    assert_refused(browser_client.post(ENDPOINTS, json={"name": "latin"},
                                       headers={CSRF_HEADER: "jeton-\xe9".encode("latin-1")}))


def test_a_form_with_too_many_fields_is_refused_not_an_error(
        browser_client: TestClient) -> None:
    token = browser_client.cookies[CSRF_COOKIE]
    fields = "&".join(f"f{i}=1" for i in range(2000))
    response = browser_client.post(ENDPOINTS, content=f"{fields}&{CSRF_FIELD}={token}",
                                   headers={"content-type": "application/x-www-form-urlencoded"})
    assert_refused(response)


def test_a_token_of_another_key_is_refused(browser_client: TestClient, db: Database,
                                           tmp_path) -> None:
    other = create_app(make_settings(tmp_path / "other", secret_key="another-secret-key" * 4),
                       db)
    with TestClient(other) as client:
        forged = csrf_from(client.get("/users/log_in").text)
    browser_client.cookies.set(CSRF_COOKIE, forged)
    assert_refused(browser_client.post(ENDPOINTS, json={"name": "x"},
                                       headers={CSRF_HEADER: forged}))


def test_bearer_token_calls_are_exempt(client: TestClient, alice: dict[str, str]) -> None:
    client.get("/users/log_in")  # a cookie jar with our CSRF cookie does not change that
    created = client.post(ENDPOINTS, json={"name": "script"},
                          headers={**alice, "origin": EVIL})
    assert created.status_code == 201
    deleted = client.delete(f"{ENDPOINTS}/{created.json()['id']}", headers=alice)
    assert deleted.status_code == 204


def test_an_empty_bearer_header_does_not_exempt_the_cookie(browser_client: TestClient) -> None:
    assert_refused(browser_client.post(ENDPOINTS, json={"name": "x"},
                                       headers={"authorization": "Bearer ", "origin": EVIL}))


def test_webhooks_are_exempt(client: TestClient, admin: dict[str, str]) -> None:
    # HMAC-authenticated, no cookie: a foreign Origin changes nothing (wrong signature → 401).
    response = client.post("/webhook", content=b"{}", headers={
        "content-type": "application/json", "x-signature": "sha256=00", "origin": EVIL})
    assert response.status_code == 401
    assert response.json()["status"] == "REJECTED"


def test_login_forms_from_another_site_are_refused(client: TestClient, db: Database) -> None:
    """Log-in CSRF: a foreign page posting its owner's credentials into the victim's browser
    (no cookie of ours is sent cross-site; the Origin header still is)."""
    create_user(db, "attacker@example.com")
    response = client.post("/users/log_in", data={"user[email]": "attacker@example.com",
                                                  "user[password]": "correct horse battery"},
                           headers={"origin": EVIL}, follow_redirects=False)
    assert_refused(response)
    assert SESSION_COOKIE not in response.headers.get("set-cookie", "")


def test_forms_of_the_site_work_with_origin_and_no_token(client: TestClient,
                                                         db: Database) -> None:
    create_user(db, "origin@example.com")
    client.get("/users/log_in")
    response = client.post("/users/log_in", data={"user[email]": "origin@example.com",
                                                  "user[password]": "correct horse battery"},
                           headers={"origin": SITE}, follow_redirects=False)
    assert response.status_code == 303


def test_safe_methods_are_not_checked(browser_client: TestClient) -> None:
    assert browser_client.get(ENDPOINTS, headers={"origin": EVIL}).status_code == 200


@pytest.fixture
def proxied_client(db: Database, tmp_path) -> Iterator[TestClient]:
    settings: Settings = make_settings(tmp_path / "data",
                                       public_url="https://trade.example.com")
    with TestClient(create_app(settings, db), base_url="http://127.0.0.1:8000") as client:
        yield client


def test_public_url_is_this_site_behind_a_proxy_that_rewrites_host(
        proxied_client: TestClient, db: Database) -> None:
    create_user(db, "proxied@example.com")
    assert log_in(proxied_client, "proxied@example.com").status_code == 303
    public = proxied_client.post(ENDPOINTS, json={"name": "p"},
                                 headers={"origin": "https://trade.example.com"})
    assert public.status_code == 201
    assert_refused(proxied_client.post(ENDPOINTS, json={"name": "q"},
                                       headers={"origin": "https://other.example.com"}))
