"""Request bodies: a size limit for every JSON/form body (413 before parsing, chunked bodies
counted as they stream), the routes with limits of their own, and a deadline for slow bodies."""

from __future__ import annotations

import json
import socket
import time
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import httpx
import pandas as pd
import pytest
from fastapi.testclient import TestClient

from tests.conftest import make_settings
from tests.signals.conftest import post_signed, signal_body
from tests.web.conftest import LiveServer, start_live_server
from tests.web.test_security_headers import assert_security_headers
from tradeloop.app import create_app
from tradeloop.db import Database
from tradeloop.strategies.demo import SMA_CROSS
from tradeloop.webhooks.service import MAX_BODY_BYTES as WEBHOOK_MAX_BYTES

STRATEGIES = "/api/v1/strategies"
SMALL_LIMIT = 4096


def strategy_body(metadata_bytes: int) -> bytes:
    return json.dumps({"definition": SMA_CROSS, "metadata": {"x": "a" * metadata_bytes}}).encode()


def chunked(body: bytes) -> Iterator[bytes]:
    """The body in pieces: httpx sends it with Transfer-Encoding: chunked, no Content-Length."""
    for start in range(0, len(body), 65536):
        yield body[start:start + 65536]


def stored_strategies(client: TestClient, headers: dict[str, str]) -> int:
    return len(client.get(STRATEGIES, headers=headers).json()["strategies"])


def assert_too_large(response) -> None:
    assert response.status_code == 413, response.text
    assert response.json()["error"]["code"] == "payload_too_large"
    assert_security_headers(response)


def test_a_20_mib_strategy_metadata_is_refused(client: TestClient, alice: dict) -> None:
    """The issue's reproduction: 20 MiB of metadata was stored and listed back."""
    body = strategy_body(20 * 2**20)
    response = client.post(STRATEGIES, content=body,
                           headers={**alice, "content-type": "application/json"})
    assert_too_large(response)
    assert "1048576 bytes" in response.json()["error"]["message"]
    assert stored_strategies(client, alice) == 0
    fits = client.post(STRATEGIES, content=strategy_body(900_000),
                       headers={**alice, "content-type": "application/json"})
    assert fits.status_code == 201


def test_a_chunked_body_is_counted_while_it_streams(client: TestClient, alice: dict) -> None:
    response = client.post(STRATEGIES, content=chunked(strategy_body(3 * 2**20)),
                           headers={**alice, "content-type": "application/json"})
    assert "content-length" not in response.request.headers
    assert_too_large(response)
    assert stored_strategies(client, alice) == 0


def test_form_bodies_are_limited_too(client: TestClient) -> None:
    response = client.post("/users/log_in", data={"user[email]": "a" * 2 * 2**20},
                           headers={"origin": "http://testserver"})
    assert_too_large(response)


def test_a_chunked_form_read_by_the_csrf_check_is_limited(client: TestClient) -> None:
    # Cookies and no Origin/Referer: the CSRF check reads the form for its token field, and
    # that read is limited as any other.
    client.get("/users/log_in")
    form = b"user%5Bemail%5D=" + b"a" * 2 * 2**20
    response = client.post("/users/log_in", content=chunked(form),
                           headers={"content-type": "application/x-www-form-urlencoded"})
    assert_too_large(response)
    assert response.headers["connection"] == "close"


@pytest.fixture
def small_limit_client(db: Database, tmp_path: Path) -> Iterator[TestClient]:
    settings = make_settings(tmp_path / "data", request_body_max_bytes=SMALL_LIMIT)
    with TestClient(create_app(settings, db)) as client:
        yield client


def test_the_limit_is_a_setting(small_limit_client: TestClient, alice: dict) -> None:
    headers = {**alice, "content-type": "application/json"}
    assert_too_large(small_limit_client.post(STRATEGIES, content=strategy_body(SMALL_LIMIT),
                                             headers=headers))
    assert small_limit_client.post(STRATEGIES, content=strategy_body(100),
                                   headers=headers).status_code == 201


def test_the_webhook_keeps_its_own_limit(small_limit_client: TestClient,
                                         admin: dict) -> None:
    padded = signal_body(metadata={"note": "x" * (2 * SMALL_LIMIT)})
    accepted = post_signed(small_limit_client, padded)
    assert accepted.status_code == 200 and accepted.json()["status"] == "ACCEPTED"
    too_large = post_signed(small_limit_client,
                            signal_body(metadata={"note": "x" * WEBHOOK_MAX_BYTES}))
    assert too_large.status_code == 413
    assert too_large.json()["status"] == "REJECTED"  # the webhook's own answer


def test_bar_uploads_keep_their_own_limit(small_limit_client: TestClient,
                                          admin: dict) -> None:
    days = pd.bdate_range("2020-01-01", periods=500)
    csv = "date,open,high,low,close,volume\n" + "".join(
        f"{day.date()},100,101,99,100.5,1000\n" for day in days)
    assert len(csv) > 2 * SMALL_LIMIT
    response = small_limit_client.post(
        "/api/v1/bars", headers=admin, data={"symbol": "BIG", "timeframe": "1d"},
        files={"file": ("big.csv", csv.encode(), "text/csv")})
    assert response.status_code == 201, response.text


# --- through uvicorn and a socket ------------------------------------------------------------

@pytest.fixture(scope="module")
def slow_body_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[LiveServer]:
    settings = make_settings(tmp_path_factory.mktemp("slow") / "data",
                             request_body_timeout_s=0.5)
    with start_live_server(settings) as server:
        yield server


def raw_request(server: LiveServer, head: str, body_parts: Iterator[bytes] = iter(()),
                pause_s: float = 0.0, timeout_s: float = 5.0) -> tuple[bytes, float]:
    """Send `head` then each body part `pause_s` apart; the answer (read until the server
    closes the connection) and the seconds it took."""
    host, port = server.url.removeprefix("http://").split(":")
    started = time.monotonic()
    with socket.create_connection((host, int(port)), timeout=timeout_s) as sock:
        sock.sendall(head.replace("\n", "\r\n").encode())
        answer = b""
        for part in body_parts:
            try:
                sock.sendall(part)
            except OSError:  # the server answered and closed: stop sending
                break
            time.sleep(pause_s)
        while chunk := sock.recv(65536):
            answer += chunk
    return answer, time.monotonic() - started


def trickle(total: int) -> Iterator[bytes]:
    yield from (b" " for _ in range(total))


@pytest.mark.parametrize("path", ["/api/v1/auth/token", "/webhook"])
def test_a_trickling_body_times_out(slow_body_server: LiveServer, path: str) -> None:
    head = (f"POST {path} HTTP/1.1\nHost: localhost\n"
            "Content-Type: application/json\nContent-Length: 100\n\n")
    answer, elapsed = raw_request(slow_body_server, head, trickle(100), pause_s=0.05)
    assert answer.startswith(b"HTTP/1.1 408 "), answer[:200]
    assert b'"request_timeout"' in answer and b"content-security-policy" in answer.lower()
    # Answered at the deadline (0.5 s), not after the 100 bytes' 5 s, and the connection
    # closed: nothing of this request holds the server any longer.
    assert elapsed < 3


def test_overlapping_slow_bodies_each_time_out_at_their_own_deadline(
        slow_body_server: LiveServer) -> None:
    # One timer serves all bodies: fired for the first, it must re-arm for the second.
    head = ("POST /api/v1/auth/token HTTP/1.1\nHost: localhost\n"
            "Content-Type: application/json\nContent-Length: 100\n\n")
    with ThreadPoolExecutor(max_workers=3) as pool:
        first = pool.submit(raw_request, slow_body_server, head)
        time.sleep(0.3)
        second = pool.submit(raw_request, slow_body_server, head)
        fast = pool.submit(httpx.post, f"{slow_body_server.url}/api/v1/auth/token", json={})
        answers = [first.result(), second.result()]
        assert fast.result().status_code == 422
    for answer, elapsed in answers:
        assert answer.startswith(b"HTTP/1.1 408 "), answer[:200]
        assert 0.4 < elapsed < 2


def test_a_trickling_chunked_body_times_out(slow_body_server: LiveServer) -> None:
    head = ("POST /api/v1/auth/token HTTP/1.1\nHost: localhost\n"
            "Content-Type: application/json\nTransfer-Encoding: chunked\n\n")
    chunks = (b"1\r\n \r\n" for _ in range(100))
    answer, elapsed = raw_request(slow_body_server, head, chunks, pause_s=0.05)
    assert answer.startswith(b"HTTP/1.1 408 "), answer[:200]
    assert elapsed < 3


def test_a_body_that_never_comes_times_out(slow_body_server: LiveServer) -> None:
    head = ("POST /users/log_in HTTP/1.1\nHost: localhost\n"
            "Content-Type: application/x-www-form-urlencoded\nContent-Length: 50\n\n")
    answer, elapsed = raw_request(slow_body_server, head)
    assert answer.startswith(b"HTTP/1.1 408 "), answer[:200]
    assert elapsed < 3


def test_a_declared_length_over_the_limit_is_answered_before_any_byte(
        slow_body_server: LiveServer) -> None:
    head = ("POST /api/v1/strategies HTTP/1.1\nHost: localhost\n"
            "Content-Type: application/json\nContent-Length: 10737418240\n\n")
    answer, elapsed = raw_request(slow_body_server, head)
    assert answer.startswith(b"HTTP/1.1 413 "), answer[:200]
    assert elapsed < 0.5  # not waiting for the body, nor for the deadline
