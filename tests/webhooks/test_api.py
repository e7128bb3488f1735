"""Per-user webhook endpoints, signals and processing errors over the API; isolation."""

from __future__ import annotations

import uuid

from fastapi.testclient import TestClient

from tests.signals.conftest import (
    ENDPOINTS,
    create_endpoint,
    post_signed,
    row_counts,
    signal_body,
)
from tradeloop.db import Database


class TestEndpointCrud:
    def test_create_shows_the_secret_once(self, signals_client: TestClient,
                                          alice: dict) -> None:
        created = create_endpoint(signals_client, alice, name="TradingView SPY",
                                  risk={"min_score": 70, "max_open_positions": 3})
        assert created["secret"].startswith("whsec_")
        assert created["path"] == f"/webhook/{created['endpoint_key']}"
        assert created["auth_modes"] == ["x_signature", "standard_webhooks", "body_secret"]
        assert created["ip_allowlist"] == [] and created["is_active"] is True
        assert created["risk"]["min_score"] == 70 and created["risk"]["cooldown_seconds"] is None
        fetched = signals_client.get(f"{ENDPOINTS}/{created['id']}", headers=alice).json()
        listing = signals_client.get(ENDPOINTS, headers=alice).json()
        assert "secret" not in fetched and "secret" not in listing["endpoints"][0]
        assert listing["total"] == 1 and listing["endpoints"][0]["id"] == created["id"]
        assert fetched == {k: v for k, v in created.items() if k != "secret"}

    def test_a_chosen_secret_is_kept(self, signals_client: TestClient, alice: dict) -> None:
        created = create_endpoint(signals_client, alice, secret="my-own-secret-1234")
        assert created["secret"] == "my-own-secret-1234"
        bad = signals_client.post(ENDPOINTS, headers=alice, json={
            "name": "x", "secret": "whsec_not*base64!!"})
        assert bad.status_code == 422

    def test_patch(self, signals_client: TestClient, alice: dict) -> None:
        created = create_endpoint(signals_client, alice)
        url = f"{ENDPOINTS}/{created['id']}"
        response = signals_client.patch(url, headers=alice, json={
            "name": "renamed", "auth_modes": ["body_secret", "body_secret"],
            "ip_allowlist": ["52.89.214.238", "10.0.0.0/8"], "is_active": False,
            "risk": {"cooldown_seconds": 300, "daily_loss_limit": 500}})
        assert response.status_code == 200, response.text
        changed = response.json()
        assert changed["name"] == "renamed" and changed["auth_modes"] == ["body_secret"]
        assert changed["ip_allowlist"] == ["52.89.214.238/32", "10.0.0.0/8"]
        assert changed["is_active"] is False and changed["risk"]["cooldown_seconds"] == 300
        assert changed["endpoint_key"] == created["endpoint_key"]
        refused = signals_client.patch(url, headers=alice, json={
            "auth_modes": [], "risk": {"min_confidence": 2}, "secret": "x" * 20})
        assert refused.status_code == 422
        fields = {f["field"] for f in refused.json()["error"]["details"]["fields"]}
        assert fields == {"auth_modes", "risk.min_confidence", "secret"}

    def test_rotation_retires_the_old_secret(self, signals_client: TestClient, alice: dict,
                                             db: Database) -> None:
        created = create_endpoint(signals_client, alice)
        rotated = signals_client.post(f"{ENDPOINTS}/{created['id']}/rotate-secret",
                                      headers=alice)
        assert rotated.status_code == 200
        new_secret = rotated.json()["secret"]
        assert new_secret != created["secret"]
        old = post_signed(signals_client, signal_body(), path=created["path"],
                          secret=created["secret"])
        assert old.status_code == 401
        new = post_signed(signals_client, signal_body(), path=created["path"], secret=new_secret)
        assert new.status_code == 200
        assert row_counts(db) == (1, 0)

    def test_delete_keeps_the_signals(self, signals_client: TestClient, alice: dict) -> None:
        created = create_endpoint(signals_client, alice)
        post_signed(signals_client, signal_body(), path=created["path"],
                    secret=created["secret"])
        url = f"{ENDPOINTS}/{created['id']}"
        assert signals_client.delete(url, headers=alice).status_code == 204
        assert signals_client.get(url, headers=alice).status_code == 404
        assert post_signed(signals_client, signal_body(), path=created["path"],
                           secret=created["secret"]).status_code == 404
        [signal] = signals_client.get("/api/v1/signals", headers=alice).json()["signals"]
        assert signal["endpoint_id"] is None

    def test_needs_authentication(self, signals_client: TestClient) -> None:
        for path in (ENDPOINTS, "/api/v1/signals", "/api/v1/processing-errors"):
            assert signals_client.get(path).status_code == 401


class TestIsolation:
    def test_other_users_rows_are_404(self, signals_client: TestClient, alice: dict,
                                      bob: dict) -> None:
        endpoint = create_endpoint(signals_client, alice)
        accepted = post_signed(signals_client, signal_body(), path=endpoint["path"],
                               secret=endpoint["secret"]).json()
        post_signed(signals_client, signal_body(direction="nope"), path=endpoint["path"],
                    secret=endpoint["secret"])
        url = f"{ENDPOINTS}/{endpoint['id']}"
        assert signals_client.get(url, headers=bob).status_code == 404
        assert signals_client.patch(url, headers=bob, json={"name": "x"}).status_code == 404
        assert signals_client.post(url + "/rotate-secret", headers=bob).status_code == 404
        assert signals_client.delete(url, headers=bob).status_code == 404
        assert signals_client.get(ENDPOINTS, headers=bob).json()["total"] == 0
        signal_url = f"/api/v1/signals/{accepted['signal_id']}"
        assert signals_client.get(signal_url, headers=bob).status_code == 404
        assert signals_client.get(signal_url, headers=alice).status_code == 200
        assert signals_client.get("/api/v1/signals", headers=bob).json()["total"] == 0
        errors = "/api/v1/processing-errors"
        assert signals_client.get(errors, headers=bob).json()["total"] == 0
        assert signals_client.get(errors, headers=alice).json()["total"] == 1
        missing = signals_client.get(f"/api/v1/signals/{uuid.uuid4()}", headers=alice)
        assert missing.status_code == 404
        # The endpoint still works for its owner after bob's attempts.
        assert signals_client.get(url, headers=alice).json()["name"] == "tv"


class TestSignalsListing:
    def test_filters_pagination_newest_first(self, signals_client: TestClient,
                                             alice: dict) -> None:
        endpoint = create_endpoint(signals_client, alice)
        ids = []
        for n, symbol in enumerate(["SPY", "QQQ", "SPY", "IWM"]):
            answer = post_signed(signals_client, signal_body(symbol=symbol, id=f"s{n}"),
                                 path=endpoint["path"], secret=endpoint["secret"]).json()
            ids.append(answer["signal_id"])
        listing = signals_client.get("/api/v1/signals", headers=alice).json()
        assert [s["id"] for s in listing["signals"]] == ids[::-1]
        assert listing["total"] == 4
        spy = signals_client.get("/api/v1/signals?symbol=spy", headers=alice).json()
        assert [s["id"] for s in spy["signals"]] == [ids[2], ids[0]]
        page = signals_client.get("/api/v1/signals?limit=2&offset=1", headers=alice).json()
        assert [s["id"] for s in page["signals"]] == [ids[2], ids[1]] and page["total"] == 4
        queued = signals_client.get("/api/v1/signals?status=queued&origin=webhook",
                                    headers=alice).json()
        assert queued["total"] == 4
        none = signals_client.get("/api/v1/signals?status=processed", headers=alice).json()
        assert none["total"] == 0
        bad = signals_client.get("/api/v1/signals?status=bogus&origin=fax", headers=alice)
        assert bad.status_code == 422
        one = signals_client.get(f"/api/v1/signals/{ids[0]}", headers=alice).json()
        assert one["symbol"] == "SPY" and one["idempotency_key"] == "id:s0"
        assert one["price"] == "487.12" and one["metadata"]["score"] == 85
        assert one["outcome"] is None and one["prompt_template_id"] is None

    def test_processing_errors_listing(self, signals_client: TestClient, alice: dict) -> None:
        endpoint = create_endpoint(signals_client, alice)
        for direction in ("up", "down"):
            post_signed(signals_client, signal_body(direction=direction),
                        path=endpoint["path"], secret=endpoint["secret"])
        listing = signals_client.get(
            f"/api/v1/processing-errors?stage=validation&endpoint_id={endpoint['id']}",
            headers=alice).json()
        assert listing["total"] == 2
        newest = listing["processing_errors"][0]
        assert '"down"' in newest["raw_body"]
        assert newest["details"]["fields"][0]["field"] == "direction"
        assert newest["endpoint_id"] == endpoint["id"]
