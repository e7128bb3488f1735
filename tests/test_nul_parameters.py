"""NUL characters in the path or query string: 422 naming the parameter on both databases
(schemathesis on PostgreSQL: `?symbol=%00` answered 500, psycopg refuses NUL in text)."""

from __future__ import annotations

import pytest
from fastapi.testclient import TestClient


@pytest.mark.parametrize(("path", "field"), [
    ("/api/v1/signals?limit=5&symbol=SPY%00", "symbol"),
    ("/api/v1/strategies?name=%00", "name"),
    ("/api/v1/bars?symbol=ACME&timeframe=1%00d", "timeframe"),
])
def test_a_nul_in_a_query_parameter_is_422_naming_it(client: TestClient, alice: dict,
                                                      path: str, field: str) -> None:
    answer = client.get(path, headers=alice | {"X-Request-ID": "nul-probe"})
    assert answer.status_code == 422, answer.text
    error = answer.json()["error"]
    assert error["code"] == "validation_error" and error["correlation_id"] == "nul-probe"
    assert [entry["field"] for entry in error["details"]["fields"]] == [field]


def test_a_nul_in_the_path_is_422(client: TestClient) -> None:
    answer = client.post("/webhook/key%00", content=b"{}")
    assert answer.status_code == 422, answer.text
    assert answer.json()["error"]["details"]["fields"][0]["field"] == "path"


def test_other_requests_pass(client: TestClient, alice: dict) -> None:
    assert client.get("/api/v1/signals?symbol=SPY%2500", headers=alice).status_code == 200
