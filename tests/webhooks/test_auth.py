"""Webhook authentication: every mode, flipped bytes, missing credentials, IP allowlist."""

from __future__ import annotations

import base64
import json
import time
from datetime import UTC, datetime

import pytest
from fastapi import FastAPI
from fastapi.testclient import TestClient
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from tests.signals.conftest import (
    WEBHOOK_SECRET,
    create_endpoint,
    encode,
    post_signed,
    row_counts,
    signal_body,
    standard_headers,
)
from tradeloop.db import Database
from tradeloop.errors import ForbiddenError, UnauthorizedError
from tradeloop.webhooks.auth import (
    EndpointAuth,
    check_ip,
    standard_webhooks_signature,
    verify_request,
    x_signature,
)

ALL_MODES = frozenset({"x_signature", "standard_webhooks", "body_secret"})
WHSEC = "whsec_" + base64.b64encode(b"k" * 32).decode()
TRADINGVIEW_IPS = ["52.89.214.238", "34.212.75.30", "54.218.53.128", "52.32.178.7"]
FLIP = settings(max_examples=100, deadline=None,
                suppress_health_check=[HealthCheck.function_scoped_fixture])


def verify(auth: EndpointAuth, raw: bytes, headers: dict[str, str], **kw: object) -> str:
    payload = json.loads(raw) if raw.startswith(b"{") else None
    return verify_request(auth=auth, raw_body=raw, headers=headers, payload=payload, **kw)


class TestVerifyRequest:
    raw = b'{"symbol": "SPY"}'

    def test_x_signature_with_and_without_prefix(self) -> None:
        auth = EndpointAuth("s3cret-s3cret-s3cret", ALL_MODES)
        signature = x_signature(auth.secret, self.raw)
        assert verify(auth, self.raw, {"X-Signature": signature}) == "x_signature"
        assert verify(auth, self.raw, {"x-signature": signature.removeprefix("sha256=")})
        with pytest.raises(UnauthorizedError):
            verify(auth, self.raw, {"x-signature": signature.upper()})

    @pytest.mark.parametrize("secret", [WHSEC, "plain-secret-used-as-utf8-bytes"])
    def test_standard_webhooks(self, secret: str) -> None:
        auth = EndpointAuth(secret, ALL_MODES)
        headers = standard_headers(secret, self.raw)
        assert verify(auth, self.raw, headers) == "standard_webhooks"

    def test_standard_webhooks_whsec_key_is_the_decoded_base64(self) -> None:
        import hashlib
        import hmac

        signed = b"msg_1.1700000000." + self.raw
        expected = base64.b64encode(hmac.new(b"k" * 32, signed, hashlib.sha256).digest())
        assert standard_webhooks_signature(WHSEC, "msg_1", 1700000000, self.raw) == (
            "v1," + expected.decode())

    def test_standard_webhooks_accepts_one_valid_among_several_signatures(self) -> None:
        auth = EndpointAuth(WHSEC, ALL_MODES)
        headers = standard_headers(WHSEC, self.raw)
        headers["webhook-signature"] = ("v1,Zm9v v1a,bar " + headers["webhook-signature"])
        assert verify(auth, self.raw, headers) == "standard_webhooks"

    @pytest.mark.parametrize("skew_s", [-301, 301])
    def test_standard_webhooks_outside_tolerance(self, skew_s: int) -> None:
        auth = EndpointAuth(WHSEC, ALL_MODES)
        headers = standard_headers(WHSEC, self.raw, timestamp=int(time.time()) + skew_s)
        with pytest.raises(UnauthorizedError, match="5 minutes"):
            verify(auth, self.raw, headers)

    def test_standard_webhooks_needs_all_three_headers(self) -> None:
        auth = EndpointAuth(WHSEC, ALL_MODES)
        headers = standard_headers(WHSEC, self.raw)
        del headers["webhook-id"]
        with pytest.raises(UnauthorizedError):
            verify(auth, self.raw, headers)

    def test_body_secret(self) -> None:
        auth = EndpointAuth("body-secret-value", ALL_MODES)
        raw = json.dumps({"secret": "body-secret-value"}).encode()
        assert verify(auth, raw, {}) == "body_secret"
        with pytest.raises(UnauthorizedError):
            verify(auth, json.dumps({"secret": "body-secret-valuE"}).encode(), {})
        with pytest.raises(UnauthorizedError):
            verify(auth, json.dumps({"secret": 12345}).encode(), {})

    def test_missing_credentials_name_the_accepted_modes(self) -> None:
        auth = EndpointAuth("s3cret", frozenset({"x_signature", "body_secret"}))
        with pytest.raises(UnauthorizedError) as caught:
            verify(auth, self.raw, {})
        assert caught.value.code == "missing_signature"
        assert "x-signature" in caught.value.message and "secret" in caught.value.message

    def test_a_wrong_credential_fails_even_next_to_a_right_one(self) -> None:
        auth = EndpointAuth("right-secret", ALL_MODES)
        raw = json.dumps({"secret": "right-secret"}).encode()
        with pytest.raises(UnauthorizedError, match="x-signature"):
            verify(auth, raw, {"x-signature": x_signature("wrong-secret", raw)})

    def test_credentials_of_disabled_modes_are_ignored(self) -> None:
        auth = EndpointAuth("right-secret", frozenset({"body_secret"}))
        raw = json.dumps({"secret": "right-secret"}).encode()
        assert verify(auth, raw, {"x-signature": "sha256=00"}) == "body_secret"
        with pytest.raises(UnauthorizedError, match="Missing"):
            verify(auth, self.raw, {"x-signature": x_signature("right-secret", self.raw)})

    def test_ip_allowlist(self) -> None:
        check_ip("203.0.113.9", [])
        check_ip("52.89.214.238", TRADINGVIEW_IPS)
        check_ip("10.1.2.3", ["10.0.0.0/8"])
        check_ip("::ffff:52.32.178.7", ["52.32.178.7/32"])
        check_ip("2001:db8::1", ["2001:db8::/32"])
        for client in ("203.0.113.9", "testclient", None, "2001:db9::1"):
            with pytest.raises(ForbiddenError):
                check_ip(client, [*TRADINGVIEW_IPS, "2001:db8::/32"])

    def test_allowlist_is_checked_before_credentials(self) -> None:
        auth = EndpointAuth("s3cret", ALL_MODES, ("10.0.0.0/8",))
        with pytest.raises(ForbiddenError):
            verify(auth, self.raw, {"x-signature": x_signature("s3cret", self.raw)},
                   client_ip="192.0.2.1")


class TestEachModeOverHttp:
    def test_default_endpoint_with_x_signature(self, signals_client: TestClient, admin: dict,
                                               db: Database) -> None:
        response = post_signed(signals_client, signal_body())
        assert response.status_code == 200, response.text
        answer = response.json()
        assert answer["status"] == "ACCEPTED"
        assert answer["message"] == "Signal received and queued for processing"
        assert answer["correlation_id"] == response.headers["x-request-id"]
        assert answer["processing_time_ms"] >= 0
        assert row_counts(db) == (1, 0)

    def test_default_endpoint_with_body_secret(self, signals_client: TestClient, admin: dict,
                                               db: Database) -> None:
        response = signals_client.post("/webhook", json=signal_body(secret=WEBHOOK_SECRET))
        assert response.status_code == 200, response.text
        assert row_counts(db) == (1, 0)

    def test_default_endpoint_refuses_standard_webhooks(self, signals_client: TestClient,
                                                        admin: dict, db: Database) -> None:
        raw = encode(signal_body())
        response = signals_client.post("/webhook", content=raw,
                                       headers=standard_headers(WEBHOOK_SECRET, raw))
        assert response.status_code == 401
        assert row_counts(db) == (0, 0)

    def test_user_endpoint_with_each_mode(self, signals_client: TestClient, alice: dict,
                                          db: Database) -> None:
        endpoint = create_endpoint(signals_client, alice)
        path, secret = endpoint["path"], endpoint["secret"]
        assert post_signed(signals_client, signal_body(symbol="A"), path=path,
                           secret=secret).status_code == 200
        raw = encode(signal_body(symbol="B"))
        assert signals_client.post(path, content=raw, headers=standard_headers(
            secret, raw)).status_code == 200
        assert signals_client.post(path, json=signal_body(symbol="C", secret=secret)
                                   ).status_code == 200
        assert row_counts(db) == (3, 0)

    def test_missing_and_wrong_credentials_are_401_and_store_nothing(
            self, signals_client: TestClient, admin: dict, db: Database) -> None:
        missing = signals_client.post("/webhook", json=signal_body())
        assert missing.status_code == 401
        body = missing.json()
        assert body["status"] == "REJECTED" and body["error"]["code"] == "missing_signature"
        assert "www-authenticate" in missing.headers
        wrong = signals_client.post("/webhook", json=signal_body(secret="nope"))
        assert wrong.status_code == 401
        assert wrong.json()["error"]["code"] == "invalid_signature"
        not_json = signals_client.post("/webhook", content=b"secret=" + WEBHOOK_SECRET.encode())
        assert not_json.status_code == 401
        assert row_counts(db) == (0, 0)

    def test_standard_webhooks_stale_timestamp_is_401(self, signals_client: TestClient,
                                                      alice: dict, db: Database) -> None:
        endpoint = create_endpoint(signals_client, alice, auth_modes=["standard_webhooks"])
        raw = encode(signal_body())
        headers = standard_headers(endpoint["secret"], raw, timestamp=int(time.time()) - 600)
        response = signals_client.post(endpoint["path"], content=raw, headers=headers)
        assert response.status_code == 401
        assert "5 minutes" in response.json()["message"]
        assert row_counts(db) == (0, 0)


class TestFlippedBytes:
    """Any change to the signed bytes or to the signature is 401 and stores nothing."""

    @FLIP
    @given(data=st.data())
    def test_x_signature(self, signals_client: TestClient, admin: dict, db: Database,
                         data: st.DataObject) -> None:
        raw = encode(signal_body(timestamp="2024-01-29T12:00:00Z"))
        signature = x_signature(WEBHOOK_SECRET, raw)
        raw, signature = _flip_one(data, raw, signature)
        response = signals_client.post("/webhook", content=raw,
                                       headers={"x-signature": signature})
        assert response.status_code == 401, response.text
        assert row_counts(db) == (0, 0)

    @FLIP
    @given(data=st.data())
    def test_standard_webhooks(self, signals_client: TestClient, admin: dict, db: Database,
                               data: st.DataObject) -> None:
        raw = encode(signal_body(timestamp="2024-01-29T12:00:00Z"))
        headers = standard_headers(WHSEC, raw, msg_id="msg_fixed")
        target = data.draw(st.sampled_from(["body", "webhook-signature", "webhook-id"]))
        if target == "body":
            raw = _flip_byte(data, raw)
        else:
            headers[target] = _flip_char(data, headers[target])
        response = signals_client.post(_whsec_path(signals_client, db), content=raw,
                                       headers=headers)
        assert response.status_code == 401, response.text
        assert row_counts(db) == (0, 0)


def _whsec_path(client: TestClient, db: Database) -> str:
    # One endpoint per test run, created on first use, with a known whsec_ secret.
    from sqlalchemy import select

    from tradeloop.accounts.models import User
    from tradeloop.webhooks import endpoints
    from tradeloop.webhooks.models import WebhookEndpoint
    from tradeloop.webhooks.schemas import EndpointCreate

    with db.unit_of_work() as session:
        existing = session.scalar(select(WebhookEndpoint.endpoint_key))
        if existing:
            return f"/webhook/{existing}"
        owner = session.scalar(select(User.id).where(User.is_admin.is_(True)))
        assert owner is not None
        created = endpoints.create_endpoint(session=session, owner_id=owner, data=EndpointCreate(
            name="whsec", secret=WHSEC, auth_modes=["standard_webhooks"]))
        return f"/webhook/{created.endpoint_key}"


def _flip_one(data: st.DataObject, raw: bytes, signature: str) -> tuple[bytes, str]:
    if data.draw(st.booleans()):
        return _flip_byte(data, raw), signature
    return raw, _flip_char(data, signature)


def _flip_byte(data: st.DataObject, raw: bytes) -> bytes:
    position = data.draw(st.integers(0, len(raw) - 1))
    mask = data.draw(st.integers(1, 255))
    return raw[:position] + bytes([raw[position] ^ mask]) + raw[position + 1:]


def _flip_char(data: st.DataObject, value: str) -> str:
    position = data.draw(st.integers(0, len(value) - 1))
    # Visible ASCII only: a header cannot carry control characters at all.
    replacement = data.draw(st.characters(min_codepoint=0x21, max_codepoint=0x7E).filter(
        lambda char: char != value[position]))
    return value[:position] + replacement + value[position + 1:]


class TestIpAllowlistOverHttp:
    def test_allowed_and_denied_addresses(self, signals_app: FastAPI, alice: dict,
                                          db: Database) -> None:
        with TestClient(signals_app) as client:
            endpoint = create_endpoint(client, alice, ip_allowlist=TRADINGVIEW_IPS)
            denied = post_signed(client, signal_body(), path=endpoint["path"],
                                 secret=endpoint["secret"])
        assert denied.status_code == 403
        assert denied.json()["error"]["code"] == "ip_not_allowed"
        assert row_counts(db) == (0, 0)
        with TestClient(signals_app, client=("52.89.214.238", 44321)) as client:
            allowed = post_signed(client, signal_body(), path=endpoint["path"],
                                  secret=endpoint["secret"])
        assert allowed.status_code == 200, allowed.text
        assert row_counts(db) == (1, 0)

    def test_allowlist_entries_are_validated(self, signals_client: TestClient,
                                             alice: dict) -> None:
        response = signals_client.post("/api/v1/webhook-endpoints", headers=alice, json={
            "name": "x", "ip_allowlist": ["52.89.214.238", "not-an-ip", "10.0.0.1/33"]})
        assert response.status_code == 422
        fields = {f["field"] for f in response.json()["error"]["details"]["fields"]}
        assert fields == {"ip_allowlist.1", "ip_allowlist.2"}


def test_now_parameter_is_respected() -> None:
    auth = EndpointAuth(WHSEC, ALL_MODES)
    raw = b"{}"
    headers = standard_headers(WHSEC, raw, timestamp=1_700_000_000)
    at = datetime.fromtimestamp(1_700_000_100, UTC)
    assert verify(auth, raw, headers, now=at) == "standard_webhooks"
