"""Accounts API: registration, tokens, identity, revocation, isolation, rate limits."""

from __future__ import annotations

import uuid

import pytest
from fastapi.testclient import TestClient

from tests.conftest import TEST_PASSWORD
from tradeloop.accounts import service
from tradeloop.db import Database


def create_user(db: Database, email: str, password: str = TEST_PASSWORD) -> None:
    with db.unit_of_work() as session:
        service.create_user(session=session, email=email, password=password)


def token_for(client: TestClient, email: str, password: str = TEST_PASSWORD, **extra) -> dict:
    response = client.post("/api/v1/auth/token",
                           json={"email": email, "password": password, **extra})
    assert response.status_code == 200, response.text
    return response.json()


def bearer(token: dict) -> dict[str, str]:
    return {"Authorization": f"Bearer {token['access_token']}"}


class TestRegister:
    def test_creates_account_and_mails_confirmation(self, client: TestClient, settings) -> None:
        response = client.post("/api/v1/auth/register",
                               json={"email": "Trader@Example.com", "password": TEST_PASSWORD})
        assert response.status_code == 201
        assert response.json()["email"] == "trader@example.com"
        mails = list(settings.outbox_dir.glob("*.eml"))
        assert len(mails) == 1
        assert "/users/confirm/" in mails[0].read_text()
        assert token_for(client, "TRADER@example.com")["token_type"] == "bearer"

    def test_existing_email_gets_the_same_answer(self, client: TestClient, db: Database) -> None:
        create_user(db, "taken@example.com")
        fresh = client.post("/api/v1/auth/register",
                            json={"email": "new@example.com", "password": TEST_PASSWORD})
        taken = client.post("/api/v1/auth/register",
                            json={"email": "taken@example.com", "password": TEST_PASSWORD})
        assert (taken.status_code, taken.json()["message"]) == (
            fresh.status_code, fresh.json()["message"])

    def test_short_password_is_a_field_error(self, client: TestClient) -> None:
        response = client.post("/api/v1/auth/register",
                               json={"email": "short@example.com", "password": "elevenchars"})
        assert response.status_code == 422
        fields = response.json()["error"]["details"]["fields"]
        assert [f["field"] for f in fields] == ["password"]
        assert "12 characters" in fields[0]["message"]

    def test_every_invalid_field_is_listed(self, client: TestClient) -> None:
        response = client.post("/api/v1/auth/register",
                               json={"email": "not-an-email", "password": "short"})
        assert response.status_code == 422
        body = response.json()["error"]
        assert body["code"] == "validation_error"
        assert {f["field"] for f in body["details"]["fields"]} == {"email", "password"}

    def test_disabled_registration_is_refused(self, db: Database, tmp_path) -> None:
        from tests.conftest import make_settings
        from tradeloop.app import create_app

        app = create_app(make_settings(tmp_path, allow_registration=False), db)
        with TestClient(app) as client:
            response = client.post("/api/v1/auth/register",
                                   json={"email": "a@example.com", "password": TEST_PASSWORD})
        assert response.status_code == 403
        assert response.json()["error"]["code"] == "registration_disabled"


class TestToken:
    def test_token_authenticates_me(self, client: TestClient, db: Database) -> None:
        create_user(db, "me@example.com")
        token = token_for(client, "me@example.com", name="notebook")
        response = client.get("/api/v1/auth/me", headers=bearer(token))
        assert response.status_code == 200
        assert response.json()["email"] == "me@example.com"
        assert token["access_token"].startswith("tl_")

    def test_wrong_password_and_unknown_email_answer_alike(self, client: TestClient,
                                                           db: Database) -> None:
        create_user(db, "known@example.com")
        wrong = client.post("/api/v1/auth/token",
                            json={"email": "known@example.com", "password": "wrong password!"})
        unknown = client.post("/api/v1/auth/token",
                              json={"email": "nobody@example.com", "password": TEST_PASSWORD})
        assert wrong.status_code == unknown.status_code == 401
        assert wrong.json()["error"]["message"] == unknown.json()["error"]["message"]
        assert wrong.json()["error"]["code"] == unknown.json()["error"]["code"]

    def test_a_read_records_the_tokens_use_after_answering(self, client: TestClient,
                                                           db: Database) -> None:
        create_user(db, "reader@example.com")
        token = token_for(client, "reader@example.com", name="reader")
        assert client.get("/api/v1/auth/me", headers=bearer(token)).status_code == 200
        listed = client.get("/api/v1/auth/tokens", headers=bearer(token)).json()
        used = [row["last_used_at"] for row in listed["tokens"] if row["name"] == "reader"]
        assert used and used[0] is not None

    def test_me_without_credentials_is_401(self, client: TestClient) -> None:
        assert client.get("/api/v1/auth/me").status_code == 401
        bad = client.get("/api/v1/auth/me", headers={"Authorization": "Bearer tl_nope"})
        assert bad.status_code == 401

    def test_rapid_login_attempts_are_rate_limited(self, client: TestClient, settings) -> None:
        limit = int(settings.auth_rate_limit.split("/")[0])
        attempts = [client.post("/api/v1/auth/token",
                                json={"email": "x@example.com", "password": "whatever pass"})
                    for _ in range(limit + 1)]
        assert [a.status_code for a in attempts[:limit]] == [401] * limit
        assert attempts[limit].status_code == 429
        assert int(attempts[limit].headers["Retry-After"]) >= 1
        assert attempts[limit].json()["error"]["code"] == "rate_limited"

    def test_expired_token_is_rejected(self, client: TestClient, db: Database) -> None:
        create_user(db, "old@example.com")
        token = token_for(client, "old@example.com")
        with db.unit_of_work() as session:
            purged = service.purge_expired_tokens(
                session=session, now=service.utcnow() + service.TokenLifetimes().api)
        assert purged == 1
        assert client.get("/api/v1/auth/me", headers=bearer(token)).status_code == 401


class TestTokens:
    def test_list_and_revoke(self, client: TestClient, db: Database) -> None:
        create_user(db, "owner@example.com")
        first = token_for(client, "owner@example.com", name="first")
        second = token_for(client, "owner@example.com", name="second")
        listing = client.get("/api/v1/auth/tokens", headers=bearer(first)).json()
        assert listing["total"] == 2
        assert {t["name"]: t["current"] for t in listing["tokens"]} == {
            "first": True, "second": False}
        assert "access_token" not in listing["tokens"][0]

        revoked = client.delete(f"/api/v1/auth/tokens/{second['id']}", headers=bearer(first))
        assert revoked.status_code == 204
        assert client.get("/api/v1/auth/me", headers=bearer(second)).status_code == 401
        assert client.get("/api/v1/auth/me", headers=bearer(first)).status_code == 200

    def test_users_see_only_their_own_tokens(self, client: TestClient, db: Database) -> None:
        create_user(db, "alice@example.com")
        create_user(db, "bob@example.com")
        alice = token_for(client, "alice@example.com", name="alice")
        bob = token_for(client, "bob@example.com", name="bob")

        alice_sees = client.get("/api/v1/auth/tokens", headers=bearer(alice)).json()
        assert [t["name"] for t in alice_sees["tokens"]] == ["alice"]

        foreign = client.delete(f"/api/v1/auth/tokens/{bob['id']}", headers=bearer(alice))
        missing = client.delete(f"/api/v1/auth/tokens/{uuid.uuid4()}", headers=bearer(alice))
        assert foreign.status_code == missing.status_code == 404
        assert foreign.json()["error"]["message"] == missing.json()["error"]["message"]
        assert client.get("/api/v1/auth/me", headers=bearer(bob)).status_code == 200


@pytest.mark.parametrize("password", ["", "x" * 11, " " * 12, "y" * 257])
def test_password_rules(password: str) -> None:
    from tradeloop.accounts.schemas import password_problems

    assert password_problems(password)
