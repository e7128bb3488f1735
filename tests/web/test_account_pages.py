"""Account pages: forms with CSRF, session cookie, log-out, password reset through the outbox."""

from __future__ import annotations

import re
from email import message_from_bytes, policy

from fastapi.testclient import TestClient

from tests.accounts.test_api import create_user
from tests.conftest import TEST_PASSWORD
from tradeloop.accounts import service
from tradeloop.accounts.dependencies import SESSION_COOKIE
from tradeloop.csrf import CSRF_FIELD
from tradeloop.db import Database


def csrf_from(page: str) -> str:
    match = re.search(rf'name="{CSRF_FIELD}" value="([^"]+)"', page)
    assert match, "form has no CSRF token"
    return match.group(1)


def submit(client: TestClient, get_path: str, post_path: str, fields: dict[str, str]):
    token = csrf_from(client.get(get_path).text)
    return client.post(post_path, data={CSRF_FIELD: token, **fields}, follow_redirects=False)


def log_in(client: TestClient, email: str, password: str = TEST_PASSWORD):
    return submit(client, "/users/log_in", "/users/log_in",
                  {"user[email]": email, "user[password]": password})


def test_register_then_log_in_with_session_cookie(client: TestClient) -> None:
    registered = submit(client, "/users/register", "/users/register",
                        {"user[email]": "web@example.com", "user[password]": TEST_PASSWORD})
    assert registered.status_code == 200 and "Check your inbox" in registered.text

    response = log_in(client, "web@example.com")
    assert response.status_code == 303
    cookie = response.headers["set-cookie"]
    assert f"{SESSION_COOKIE}=" in cookie
    assert "HttpOnly" in cookie and "samesite=lax" in cookie.lower()
    assert "Secure" not in cookie  # plain http in tests; https adds Secure
    assert "web@example.com" in client.get("/").text
    assert client.get("/api/v1/auth/me").json()["email"] == "web@example.com"


def test_form_without_csrf_token_is_refused(client: TestClient, db: Database) -> None:
    create_user(db, "csrf@example.com")
    client.get("/users/log_in")
    response = client.post("/users/log_in", data={"user[email]": "csrf@example.com",
                                                  "user[password]": TEST_PASSWORD},
                           follow_redirects=False)
    assert response.status_code == 403
    assert response.json()["error"]["code"] == "csrf_failed"
    assert SESSION_COOKIE not in response.headers.get("set-cookie", "")


def test_wrong_password_and_unknown_email_look_the_same(client: TestClient,
                                                        db: Database) -> None:
    create_user(db, "page@example.com")
    wrong = log_in(client, "page@example.com", "not the password")
    unknown = log_in(client, "ghost@example.com", "not the password")
    assert wrong.status_code == unknown.status_code == 401
    assert "Invalid email or password" in wrong.text and "Invalid email or password" in unknown.text


def test_short_password_on_register_form(client: TestClient) -> None:
    response = submit(client, "/users/register", "/users/register",
                      {"user[email]": "s@example.com", "user[password]": "short"})
    assert response.status_code == 422
    assert "at least 12 characters" in response.text


def test_log_out_ends_the_session(client: TestClient, db: Database) -> None:
    create_user(db, "bye@example.com")
    log_in(client, "bye@example.com")
    assert client.get("/api/v1/auth/me").status_code == 200
    response = submit(client, "/users/log_out", "/users/log_out", {})
    assert response.status_code == 303
    client.cookies.delete(SESSION_COOKIE)
    assert client.get("/api/v1/auth/me").status_code == 401


def test_reset_password_via_outbox(client: TestClient, db: Database, settings) -> None:
    create_user(db, "forgot@example.com")
    unknown = submit(client, "/users/reset_password", "/users/reset_password",
                     {"user[email]": "nobody@example.com"})
    known = submit(client, "/users/reset_password", "/users/reset_password",
                   {"user[email]": "forgot@example.com"})
    assert unknown.text.count("reset link is on its way") == known.text.count(
        "reset link is on its way") == 1
    mails = list(settings.outbox_dir.glob("*.eml"))
    assert len(mails) == 1
    body = message_from_bytes(mails[0].read_bytes(), policy=policy.default).get_content()
    link = re.search(r"/users/reset_password/(\S+)", body)
    assert link
    path = f"/users/reset_password/{link.group(1)}"
    changed = submit(client, path, path, {"user[password]": "a brand new password"})
    assert changed.status_code == 200 and "Password changed" in changed.text
    assert log_in(client, "forgot@example.com").status_code == 401
    assert log_in(client, "forgot@example.com", "a brand new password").status_code == 303
    reused = submit(client, path, path, {"user[password]": "another new password"})
    assert reused.status_code == 401


def test_settings_page_creates_and_revokes_tokens(client: TestClient, db: Database) -> None:
    create_user(db, "settings@example.com")
    log_in(client, "settings@example.com")
    created = submit(client, "/users/settings", "/users/settings/tokens", {"name": "bot"})
    token = re.search(r'<code id="new-token">([^<]+)</code>', created.text)
    assert token
    headers = {"Authorization": f"Bearer {token.group(1)}"}
    assert client.get("/api/v1/auth/me", headers=headers).status_code == 200
    listing = client.get("/api/v1/auth/tokens", headers=headers).json()["tokens"]
    bot = next(t for t in listing if t["name"] == "bot")
    revoked = submit(client, "/users/settings", f"/users/settings/tokens/{bot['id']}/revoke", {})
    assert revoked.status_code == 303
    assert client.get("/api/v1/auth/me", headers=headers).status_code == 401


def test_pages_need_log_in(client: TestClient) -> None:
    for path, log_in_url in (("/", "/users/log_in"),
                             ("/users/settings", "/users/log_in?next=/users/settings")):
        response = client.get(path, follow_redirects=False)
        assert response.status_code == 303 and response.headers["location"] == log_in_url


def test_log_in_returns_to_the_page_asked_for(client: TestClient, db: Database) -> None:
    create_user(db, "back@example.com")
    asked = client.get("/users/settings?tab=tokens", follow_redirects=False)
    assert asked.headers["location"] == "/users/log_in?next=/users/settings%3Ftab%3Dtokens"
    response = submit(client, asked.headers["location"], "/users/log_in",
                      {"user[email]": "back@example.com", "user[password]": TEST_PASSWORD,
                       "next": "/users/settings?tab=tokens"})
    assert response.status_code == 303
    assert response.headers["location"] == "/users/settings?tab=tokens"


def test_log_in_never_returns_to_another_site(client: TestClient, db: Database) -> None:
    create_user(db, "stay@example.com")
    for target in ("//evil.example/", "https://evil.example/", "/\\evil.example"):
        response = submit(client, "/users/log_in", "/users/log_in",
                          {"user[email]": "stay@example.com", "user[password]": TEST_PASSWORD,
                           "next": target})
        assert response.headers["location"] == "/", target


def test_an_expired_htmx_request_is_sent_to_log_in(client: TestClient) -> None:
    response = client.get("/users/settings", headers={"HX-Request": "true"},
                          follow_redirects=False)
    assert response.status_code == 401
    assert response.headers["hx-redirect"] == "/users/log_in?next=/users/settings"


def test_confirmation_link_confirms_once(client: TestClient, settings, db: Database) -> None:
    # A GET that writes: it must get a unit of work, not the read session of safe requests.
    submit(client, "/users/register", "/users/register",
           {"user[email]": "confirm@example.com", "user[password]": TEST_PASSWORD})
    mails = list(settings.outbox_dir.glob("*.eml"))
    body = message_from_bytes(mails[0].read_bytes(), policy=policy.default).get_content()
    link = re.search(r"(/users/confirm/\S+)", body)
    assert link
    confirmed = client.get(link.group(1))
    assert confirmed.status_code == 200 and "is confirmed" in confirmed.text
    with db.unit_of_work() as session:
        user = service.get_user_by_email(session=session, email="confirm@example.com")
        assert user is not None and user.confirmed_at is not None
    assert client.get(link.group(1)).status_code == 404
