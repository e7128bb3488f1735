"""Webhook intake: parsing, validation, normalisation, dedup, replay window, limits."""

from __future__ import annotations

import json
import uuid
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from decimal import Decimal

import pytest
from fastapi import FastAPI
from fastapi.testclient import TestClient
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from pydantic import ValidationError
from sqlalchemy import select

from tests.signals.conftest import (
    WEBHOOK_SECRET,
    create_endpoint,
    encode,
    iso_now,
    post_signed,
    row_counts,
    signal_body,
)
from tradeloop.db import Database
from tradeloop.signals.models import ProcessingError, Signal
from tradeloop.webhooks import service
from tradeloop.webhooks.auth import EndpointAuth
from tradeloop.webhooks.repository import IntakeStore
from tradeloop.webhooks.schemas import WebhookSignalIn

TRADINGVIEW_ALERT = """{
  "secret": "%s",
  "source": "TradingView",
  "symbol": "btcusdt",
  "direction": "buy",
  "timeframe": "60",
  "timestamp": "%s",
  "price": 43125.5,
  "id": "BTCUSDT-60-%s",
  "metadata": {"score": 72, "confidence": 0.7, "strategy": "ema-cross"}
}"""


def stored_signals(db: Database) -> list[Signal]:
    with db.unit_of_work() as session:
        return list(session.scalars(select(Signal).order_by(Signal.received_at)))


def stored_errors(db: Database) -> list[ProcessingError]:
    with db.unit_of_work() as session:
        return list(session.scalars(select(ProcessingError).order_by(ProcessingError.received_at)))


def everything_stored(db: Database) -> str:
    """Every column of every signal and processing error, as one string."""
    rows = [{c.key: getattr(row, c.key) for c in row.__mapper__.column_attrs}
            for row in [*stored_signals(db), *stored_errors(db)]]
    return json.dumps(rows, default=str)


class TestTradingViewBody:
    def test_text_plain_with_body_secret_is_accepted_and_the_secret_never_stored(
            self, signals_client: TestClient, admin: dict, db: Database) -> None:
        now = iso_now()
        text = TRADINGVIEW_ALERT % (WEBHOOK_SECRET, now, now)
        response = signals_client.post("/webhook", content=text.encode(),
                                       headers={"content-type": "text/plain; charset=utf-8"})
        assert response.status_code == 200, response.text
        [signal] = stored_signals(db)
        assert (signal.symbol, signal.direction, signal.raw_direction) == ("BTCUSDT", "LONG", "buy")
        assert signal.price == Decimal("43125.5")
        assert (signal.score, signal.confidence) == (72, 0.7)
        assert signal.metadata_ == {"score": 72, "confidence": 0.7, "strategy": "ema-cross"}
        assert signal.idempotency_key == f"id:BTCUSDT-60-{now}"
        assert (signal.status, signal.origin, signal.endpoint_id) == ("queued", "webhook", None)
        assert signal.correlation_id == response.json()["correlation_id"]
        assert WEBHOOK_SECRET not in everything_stored(db)

    def test_a_refused_body_is_stored_without_its_secret(
            self, signals_client: TestClient, alice: dict, db: Database) -> None:
        endpoint = create_endpoint(signals_client, alice)
        secret = endpoint["secret"]
        body = signal_body(secret=secret, direction="SIDEWAYS")
        response = signals_client.post(endpoint["path"], content=json.dumps(body),
                                       headers={"content-type": "text/plain"})
        assert response.status_code == 422
        [error] = stored_errors(db)
        assert "SIDEWAYS" in (error.raw_body or "")
        assert secret not in everything_stored(db)

    def test_the_secret_value_is_redacted_even_from_unparsable_bodies(self) -> None:
        text = service.redacted_body(b'{"secret": "abc-secret-123", broken', None,
                                     "abc-secret-123")
        assert "abc-secret-123" not in text and service.REDACTED in text


class TestValidation:
    def test_malformed_json_is_422_with_a_processing_error(
            self, signals_client: TestClient, admin: dict, db: Database) -> None:
        response = post_signed(signals_client, b'{"symbol": "SPY",')
        assert response.status_code == 422
        answer = response.json()
        assert answer["status"] == "REJECTED"
        [field] = answer["error"]["details"]["fields"]
        assert field["field"] == "body" and "not valid JSON" in field["message"]
        [error] = stored_errors(db)
        assert (error.stage, error.error_type) == ("validation", "validation_error")
        assert error.raw_body == '{"symbol": "SPY",'
        assert error.correlation_id == answer["correlation_id"]
        assert row_counts(db) == (0, 1)

    def test_every_bad_field_is_listed(self, signals_client: TestClient, admin: dict,
                                       db: Database) -> None:
        body = {"symbol": "S P Y", "direction": "UP", "timeframe": "", "timestamp": "yesterday",
                "price": -1, "metadata": {"confidence": 1.5, "score": "high"}, "colour": "red"}
        response = post_signed(signals_client, body)
        assert response.status_code == 422
        fields = {f["field"] for f in response.json()["error"]["details"]["fields"]}
        assert fields == {"source", "symbol", "direction", "timeframe", "timestamp", "price",
                          "metadata.confidence", "metadata.score", "colour"}
        [error] = stored_errors(db)
        assert {f["field"] for f in error.details["fields"]} == fields
        assert row_counts(db) == (0, 1)

    def test_unstorable_characters_are_422_not_500(self, signals_client: TestClient,
                                                   admin: dict, db: Database) -> None:
        body = {**signal_body(source="Trading\x00View"), "\x00": 1,
                "metadata": {"note": "\x00"}}
        response = post_signed(signals_client, json.dumps(body))
        assert response.status_code == 422
        fields = {f["field"] for f in response.json()["error"]["details"]["fields"]}
        assert fields == {"source", "\x00", "metadata"}
        surrogate = post_signed(signals_client, json.dumps({**signal_body(), "k\ud800": 1}))
        assert surrogate.status_code == 422
        assert "surrogate" in surrogate.json()["error"]["details"]["fields"][0]["message"]
        assert row_counts(db) == (0, 2)
        assert all("\x00" not in e.message for e in stored_errors(db))

    @pytest.mark.parametrize("price", [1e-9, "4890.123456789", "0.000000001"])
    def test_a_price_the_column_cannot_hold_is_422_not_rounded(
            self, signals_client: TestClient, admin: dict, db: Database,
            price: object) -> None:
        # Rounded to the column's 8 decimals, 1e-9 was stored as 0E-8: "no price".
        response = post_signed(signals_client, signal_body(price=price))
        assert response.status_code == 422, response.text
        [field] = response.json()["error"]["details"]["fields"]
        assert field["field"] == "price" and "8 decimal places" in field["message"]
        assert row_counts(db) == (0, 1)

    @pytest.mark.parametrize("number", ["1e400", "-1e400"])
    def test_a_non_finite_metadata_number_is_422_not_stored_as_null(
            self, signals_client: TestClient, admin: dict, db: Database, number: str) -> None:
        raw = json.dumps(signal_body(metadata={"x": 0})).replace('{"x": 0}',
                                                                 f'{{"x": {number}}}')
        response = post_signed(signals_client, raw)
        assert response.status_code == 422, response.text
        [field] = response.json()["error"]["details"]["fields"]
        assert field["field"] == "metadata" and "metadata.x must be a finite number" in \
            field["message"]
        assert row_counts(db) == (0, 1)

    def test_the_smallest_price_is_kept_and_answered_in_plain_notation(
            self, signals_client: TestClient, admin: dict, db: Database) -> None:
        assert post_signed(signals_client, signal_body(price="0.00000001")).status_code == 200
        [signal] = signals_client.get("/api/v1/signals", headers=admin).json()["signals"]
        assert signal["price"] == "0.00000001"  # str(Decimal) would say "1E-8"

    @pytest.mark.parametrize("raw", [b"[]", b"42", b'"text"', b"NaN", b"\xff\xfe",
                                     b'{"a":' * 40 + b"1" + b"}" * 40])
    def test_bodies_that_are_not_an_object(self, raw: bytes) -> None:
        parsed = service.parse_body(raw)
        assert parsed.errors and parsed.errors[0]["field"] == "body"

    def test_no_admin_means_no_default_endpoint(self, signals_client: TestClient,
                                                db: Database) -> None:
        response = post_signed(signals_client, signal_body())
        assert response.status_code == 404
        assert response.json()["error"]["code"] == "no_admin"

    def test_unknown_and_inactive_endpoints_are_404(self, signals_client: TestClient,
                                                    alice: dict, db: Database) -> None:
        endpoint = create_endpoint(signals_client, alice, is_active=False)
        for path in (endpoint["path"], "/webhook/not-a-key"):
            response = post_signed(signals_client, signal_body(), path=path,
                                   secret=endpoint["secret"])
            assert response.status_code == 404
        assert row_counts(db) == (0, 0)


class TestBodySize:
    def test_declared_length_over_64_kib_is_413(self, signals_client: TestClient, admin: dict,
                                                db: Database) -> None:
        body = signal_body(metadata={"pad": "x" * (64 * 1024)})
        response = post_signed(signals_client, body)
        assert response.status_code == 413
        assert response.json()["error"]["code"] == "payload_too_large"
        assert row_counts(db) == (0, 0)

    def test_streamed_body_over_64_kib_is_413(self, signals_client: TestClient, admin: dict,
                                              db: Database) -> None:
        def chunks() -> Iterator[bytes]:  # no Content-Length: sent chunked
            for _ in range(20):
                yield b" " * 4096

        response = signals_client.post("/webhook", content=chunks(),
                                       headers={"x-signature": "sha256=00"})
        assert response.status_code == 413
        assert row_counts(db) == (0, 0)

    def test_exactly_64_kib_is_read(self, signals_client: TestClient, admin: dict) -> None:
        raw = json.dumps(signal_body(secret=WEBHOOK_SECRET)).encode()
        raw = raw[:-1] + b" " * (64 * 1024 - len(raw)) + b"}"
        assert len(raw) == 64 * 1024
        assert signals_client.post("/webhook", content=raw).status_code == 200


class TestDeduplication:
    def test_repeat_is_duplicate_and_changes_nothing(self, signals_client: TestClient,
                                                     admin: dict, db: Database) -> None:
        body = signal_body()
        first = post_signed(signals_client, body).json()
        before = everything_stored(db)
        again = post_signed(signals_client, body)
        assert again.status_code == 200
        assert again.json()["status"] == "DUPLICATE"
        assert again.json()["signal_id"] == first["signal_id"]
        # Same content, other formatting and key order, secret instead of header: same body.
        reordered = json.dumps(dict(reversed(list(body.items()))), indent=2)
        third = signals_client.post("/webhook", content=reordered.replace(
            "{", f'{{"secret": "{WEBHOOK_SECRET}", ', 1))
        assert third.json()["status"] == "DUPLICATE", third.text
        assert everything_stored(db) == before

    def test_reused_id_with_another_body_is_rejected(self, signals_client: TestClient,
                                                     admin: dict, db: Database) -> None:
        first = post_signed(signals_client, signal_body(id="alert-1")).json()
        response = post_signed(signals_client, signal_body(id="alert-1", direction="PUT"))
        assert response.status_code == 200 and response.json()["status"] == "REJECTED"
        answer = response.json()
        assert answer["status"] == "REJECTED"
        assert answer["message"] == "idempotency key reused with a different body"
        assert answer["error"]["details"]["signal_id"] == first["signal_id"]
        [signal] = stored_signals(db)
        assert signal.direction == "LONG"
        [error] = stored_errors(db)
        assert (error.stage, error.error_type) == ("deduplication", "idempotency_conflict")

    def test_without_id_the_key_is_a_hash_of_what_the_signal_says(
            self, signals_client: TestClient, admin: dict, db: Database) -> None:
        stamp = iso_now()
        post_signed(signals_client, signal_body(timestamp=stamp, direction="CALL"))
        other_price = post_signed(signals_client, signal_body(timestamp=stamp, direction="BUY",
                                                              price=1))
        assert other_price.json()["status"] == "REJECTED"  # same signal, conflicting content
        later = post_signed(signals_client, signal_body(timestamp=iso_now(1)))
        assert later.status_code == 200
        assert row_counts(db)[0] == 2

    def test_webhook_id_is_the_key_when_the_body_has_no_id(self) -> None:
        signal_in = WebhookSignalIn.model_validate(signal_body())
        assert service.idempotency_key(signal_in, "msg_1") == "webhook-id:msg_1"
        with_id = WebhookSignalIn.model_validate(signal_body(id=42))
        assert service.idempotency_key(with_id, "msg_1") == "id:42"
        assert service.idempotency_key(signal_in).startswith("sha256:")


class TestGroupCommit:
    """Webhooks written together in one transaction answer as if written one by one."""

    def deliver(self, db: Database, bodies: list[dict | bytes], *,
                endpoint_keys: list[str | None] | None = None,
                secret: str = WEBHOOK_SECRET) -> list[service.Outcome]:
        from tradeloop.webhooks.auth import x_signature

        deliveries = []
        for index, body in enumerate(bodies):
            raw = encode(body)
            key = endpoint_keys[index] if endpoint_keys else None
            deliveries.append(service.Delivery(key, raw, {"x-signature": x_signature(secret, raw)},
                                               "127.0.0.1", correlation_id=f"c{index}"))
        with IntakeStore.opened(db.driver_unit_of_work) as store:
            return service.receive_webhooks(store=store, deliveries=deliveries,
                                            webhook_secret=WEBHOOK_SECRET)

    def test_outcomes_in_order_for_a_mixed_batch(self, db: Database, admin: dict) -> None:
        first, other = signal_body(id="a"), signal_body(id="b", symbol="QQQ")
        outcomes = self.deliver(db, [first, b'{"broken', first, {**first, "price": 1},
                                     other, first], endpoint_keys=[None, None, None, None,
                                                                   None, "no-such-endpoint"])
        assert [_status(o) for o in outcomes] == [
            "ACCEPTED", "REJECTED:validation_error", "DUPLICATE",
            "REJECTED:idempotency_conflict", "ACCEPTED", "404:not_found"]
        accepted = outcomes[0]
        assert isinstance(accepted, service.IngestResult)
        assert outcomes[2].signal_id == outcomes[3].signal_id == accepted.signal_id  # type: ignore[union-attr]
        signals = stored_signals(db)
        assert sorted(s.idempotency_key for s in signals) == ["id:a", "id:b"]
        assert {s.correlation_id for s in signals} == {"c0", "c4"}
        assert sorted(e.error_type for e in stored_errors(db)) == [
            "idempotency_conflict", "validation_error"]

    def test_a_bad_signature_stores_nothing_and_spares_its_neighbours(
            self, db: Database, admin: dict) -> None:
        from tradeloop.webhooks.auth import x_signature

        good, forged = encode(signal_body(id="g")), encode(signal_body(id="f"))
        deliveries = [service.Delivery(None, raw, {"x-signature": x_signature(key, raw)}, None)
                      for raw, key in [(good, WEBHOOK_SECRET), (forged, "wrong-secret")]]
        with IntakeStore.opened(db.driver_unit_of_work) as store:
            outcomes = service.receive_webhooks(store=store, deliveries=deliveries,
                                                webhook_secret=WEBHOOK_SECRET)
        assert [_status(o) for o in outcomes] == ["ACCEPTED", "401:invalid_signature"]
        assert row_counts(db) == (1, 0)

    def test_a_repeat_of_a_refused_signal_is_judged_on_its_own(
            self, db: Database, admin: dict) -> None:
        stale = signal_body(id="k", timestamp=iso_now(-3 * 86400))
        fresh = signal_body(id="k")
        outcomes = self.deliver(db, [stale, fresh, fresh])
        assert [_status(o) for o in outcomes] == [
            "REJECTED:stale_signal", "ACCEPTED", "DUPLICATE"]

    @given(picks=st.lists(st.tuples(st.sampled_from("abc"), st.sampled_from([0, 1]),
                                    st.sampled_from([0, -3 * 86400])), min_size=1, max_size=8))
    @settings(max_examples=100, deadline=None,
              suppress_health_check=[HealthCheck.function_scoped_fixture])
    def test_a_batch_answers_like_the_same_webhooks_one_by_one(
            self, db: Database, admin: dict, bob: dict,
            picks: list[tuple[str, int, int]]) -> None:
        from tests.signals.conftest import user_id

        run = uuid.uuid4().hex[:8]  # examples share the database: keys must not collide
        bodies: list[dict | bytes] = [
            signal_body(id=f"{run}-{key}", price=100 + variant, timestamp=iso_now(age))
            for key, variant, age in picks]
        batch = [_status(o) for o in self.deliver(db, bodies)]
        owner = user_id(db, "bob@example.com")
        intake = service.Intake(owner, None, EndpointAuth(WEBHOOK_SECRET,
                                                          frozenset({"x_signature"})))
        one_by_one = []
        for body in bodies:
            raw = encode(body)
            with db.unit_of_work() as session:
                one_by_one.append(_status(service.ingest_signal(
                    session=session, intake=intake, raw_body=raw,
                    parsed=service.parse_body(raw))))
        assert batch == one_by_one


def _status(outcome: service.Outcome) -> str:
    """An outcome in a word: ACCEPTED, DUPLICATE, REJECTED:<code> or <http>:<code>."""
    if isinstance(outcome, service.IngestResult):
        return outcome.status if outcome.status != "REJECTED" \
            else f"REJECTED:{outcome.error_code}"
    return f"{outcome.status_code}:{outcome.code}"


class TestReplayWindow:
    @pytest.mark.parametrize(("offset", "outcome"), [
        (timedelta(hours=-23), "ACCEPTED"), (timedelta(hours=-25), "REJECTED"),
        (timedelta(minutes=4), "ACCEPTED"), (timedelta(minutes=10), "REJECTED")])
    def test_window(self, signals_client: TestClient, admin: dict, db: Database,
                    offset: timedelta, outcome: str) -> None:
        stamp = (datetime.now(UTC) + offset).isoformat()
        response = post_signed(signals_client, signal_body(timestamp=stamp))
        # A replay is a business outcome: 200 REJECTED, never a retry-inducing error code.
        assert response.status_code == 200, response.text
        assert response.json()["status"] == outcome
        if outcome == "REJECTED":
            [field] = response.json()["error"]["details"]["fields"]
            assert field["field"] == "timestamp"
            assert stored_errors(db)[0].stage == "replay"

    def test_window_is_a_parameter(self, db: Database, alice: dict) -> None:
        from tests.signals.conftest import user_id
        from tradeloop.webhooks.auth import EndpointAuth

        intake = service.Intake(user_id(db, "alice@example.com"), None,
                                EndpointAuth("s", frozenset({"x_signature"})))
        raw = json.dumps(signal_body(timestamp=iso_now(-7200))).encode()
        with db.unit_of_work() as session:
            result = service.ingest_signal(session=session, intake=intake, raw_body=raw,
                                           parsed=service.parse_body(raw),
                                           replay_window=timedelta(hours=1))
        assert (result.status, result.error_code) == ("REJECTED", "stale_signal")


DIRECTION_TABLE = [("CALL", "LONG"), ("call", "LONG"), ("Buy", "LONG"), ("LONG", "LONG"),
                   ("PUT", "SHORT"), ("sell", "SHORT"), ("Short", "SHORT"), ("EXIT", "EXIT"),
                   ("exit", "EXIT"), ("flat", "EXIT"), ("close", "EXIT"), (" buy ", "LONG")]


class TestNormalisation:
    @pytest.mark.parametrize(("raw", "normalised"), DIRECTION_TABLE)
    def test_direction_table(self, raw: str, normalised: str) -> None:
        signal_in = WebhookSignalIn.model_validate(signal_body(direction=raw))
        assert signal_in.side.value == normalised
        assert signal_in.direction == raw.strip()

    @pytest.mark.parametrize("raw", ["UP", "", "LONGSHORT", "B"])
    def test_unknown_directions(self, raw: str) -> None:
        with pytest.raises(ValidationError):
            WebhookSignalIn.model_validate(signal_body(direction=raw))

    @pytest.mark.parametrize(("stamp", "expected"), [
        ("2024-01-29T12:00:00Z", "2024-01-29T12:00:00+00:00"),
        ("2024-01-29T07:00:00-05:00", "2024-01-29T12:00:00+00:00"),
        ("2024-01-29T12:00:00", "2024-01-29T12:00:00+00:00"),  # naive = UTC
        ("2024-01-29 12:00:00", "2024-01-29T12:00:00+00:00"),
        (1706529600, "2024-01-29T12:00:00+00:00"),
        ("1706529600", "2024-01-29T12:00:00+00:00"),
        (1706529600000, "2024-01-29T12:00:00+00:00"),  # milliseconds
    ])
    def test_timestamps(self, stamp: object, expected: str) -> None:
        signal_in = WebhookSignalIn.model_validate(signal_body(timestamp=stamp))
        assert signal_in.timestamp.isoformat() == expected
        assert signal_in.timestamp.tzinfo is UTC

    def test_symbol_price_and_metadata(self) -> None:
        signal_in = WebhookSignalIn.model_validate(signal_body(
            symbol=" es1! ", price="4890.12345678", metadata={"note": "x"}))
        assert signal_in.symbol == "ES1!"
        assert signal_in.price == Decimal("4890.12345678")
        assert signal_in.metadata.score is None

    def test_stored_direction_over_http(self, signals_client: TestClient, admin: dict,
                                        db: Database) -> None:
        assert post_signed(signals_client, signal_body(direction="sell")).status_code == 200
        [signal] = stored_signals(db)
        assert (signal.direction, signal.raw_direction) == ("SHORT", "sell")


JSON_LEAF = st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False) | st.text()
JSON_VALUE = st.recursive(JSON_LEAF, lambda inner: st.lists(inner, max_size=3) | st.dictionaries(
    st.text(max_size=5), inner, max_size=3), max_leaves=8)
FIELD_VALUES = {
    "source": st.text(max_size=120) | JSON_VALUE, "symbol": st.text(max_size=40) | JSON_VALUE,
    "direction": st.sampled_from([d for d, _ in DIRECTION_TABLE]) | JSON_VALUE,
    "timeframe": st.text(max_size=20) | JSON_VALUE,
    "timestamp": st.just(iso_now()) | st.integers() | st.text(max_size=30),
    "price": st.decimals(allow_nan=False).map(str) | st.floats(allow_nan=False) | JSON_VALUE,
    "id": st.text(max_size=220) | st.integers(),
    "metadata": st.dictionaries(st.sampled_from(["score", "confidence", "x", "\x00"]),
                                JSON_VALUE, max_size=4) | JSON_VALUE,
}


@settings(max_examples=60, deadline=None,
          suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(body=st.fixed_dictionaries({}, optional=FIELD_VALUES),
       extra=st.dictionaries(st.text(max_size=6), JSON_VALUE, max_size=2))
def test_no_body_ever_causes_a_server_error(signals_client: TestClient, admin: dict,
                                            body: dict, extra: dict) -> None:
    """Whatever an authenticated sender posts, the answer is a business outcome, not a 5xx."""
    response = post_signed(signals_client, {**extra, **body})
    assert response.status_code in {200, 422}, response.text
    assert response.json()["status"] in {"ACCEPTED", "DUPLICATE", "REJECTED"}


def test_replay_window_setting(settings: object) -> None:
    from types import SimpleNamespace

    from tradeloop.webhooks.writer import replay_window

    # SIGNAL_REPLAY_WINDOW_S, once settings.py declares it; the 24 h default until then.
    configured = SimpleNamespace(signal_replay_window_s=3600)
    assert replay_window(configured) == timedelta(hours=1)  # type: ignore[arg-type]
    expected = getattr(settings, "signal_replay_window_s", 86_400)
    assert replay_window(settings) == timedelta(seconds=expected)  # type: ignore[arg-type]


def test_the_webhooks_are_documented_in_openapi(signals_app: FastAPI) -> None:
    """Served without dependency solving (RequestOnlyRoute), still documented as routes."""
    paths = signals_app.openapi()["paths"]
    default, keyed = paths["/webhook"]["post"], paths["/webhook/{endpoint_key}"]["post"]
    assert set(default["requestBody"]["content"]) == {"application/json", "text/plain"}
    assert [p["name"] for p in keyed["parameters"]] == ["endpoint_key"]
    assert {"200", "401", "413", "422"} <= set(keyed["responses"])


def test_the_webhook_writer_starts_and_stops_with_the_app(
        signals_app: FastAPI, admin: dict, monkeypatch: pytest.MonkeyPatch) -> None:
    from tradeloop.webhooks.writer import WebhookWriter

    closed: list[WebhookWriter] = []
    close = WebhookWriter.close
    monkeypatch.setattr(WebhookWriter, "close", lambda self: (closed.append(self), close(self)))
    assert getattr(signals_app.state, "webhook_writer", None) is None
    with TestClient(signals_app) as client:
        writer = signals_app.state.webhook_writer
        assert post_signed(client, signal_body()).json()["status"] == "ACCEPTED"
        assert closed == []
    assert closed == [writer]
