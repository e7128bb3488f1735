"""Hostile strategy definitions and params through the API (issue 13's reproductions): each is
a 4xx naming its line and column (or its field), never a 500 — on validate, create and patch,
and on the syntax test and backtests of definitions stored before the limits existed."""

from __future__ import annotations

import uuid

from fastapi.testclient import TestClient
from sqlalchemy import update

from tests.conftest import store_bars
from tradeloop.db import Database
from tradeloop.strategies.models import Strategy

BASE = "/api/v1/strategies"
HEADER = "name: hostile\nsymbols: [AAA]\n"
VALID = HEADER + "params: {n: 10}\nentry: {long: close > sma(close, n)}\n"

# (definition, line, fragment of the message) — the reproductions quoted in issue 13 and the
# neighbouring shapes of each.
REPRODUCTIONS = {
    "3000-deep flow sequence": ("[" * 3000 + "]" * 3000, 1, "nested deeper than 10 levels"),
    "3000-deep flow mapping": ("{a: " * 3000 + "1" + "}" * 3000, 1,
                               "nested deeper than 10 levels"),
    "3000-deep value": (HEADER + "description: " + "[" * 3000 + "]" * 3000 + "\n", 3,
                        "nested deeper than 10 levels"),
    "sma(close, 1e400)": (HEADER + "entry: {long: close > sma(close, 1e400)}\n", 3,
                          "the number 1e400 is too large"),
    "4,000-digit param": (HEADER + f"params: {{n: {'9' * 4000}}}\nentry: {{long: close > n}}\n",
                          3, "param 'n' is too large"),
    "5,000-digit param": (HEADER + f"params: {{n: {'9' * 5000}}}\nentry: {{long: close > n}}\n",
                          3, "param 'n' is too large"),
    "990-digit literal": (HEADER + f"entry: {{long: close > {'9' * 990}}}\n", 3, "too large"),
    "1,000 nested parentheses": (HEADER + "entry: {long: " + "(" * 1000 + "close" + ")" * 1000
                                 + " > 1}\n", 3, "entry.long: expression is"),
    "100 nested parentheses": (HEADER + "entry: {long: " + "(" * 100 + "close" + ")" * 100
                               + " > 1}\n", 3, "nested deeper than 32 levels"),
}


def assert_positioned(errors: list[dict], line: int, fragment: str) -> None:
    assert errors, "no errors"
    assert all(e["line"] >= 1 and e["column"] >= 1 for e in errors), errors
    assert any(e["line"] == line and fragment in e["message"] for e in errors), errors


def test_hostile_definitions_are_positioned_errors_on_validate_create_and_patch(
        client: TestClient, alice: dict) -> None:
    # One test for all of them: each case is three requests, a test of its own costs seconds.
    stored = client.post(BASE, json={"definition": VALID}, headers=alice).json()
    for name, (definition, line, fragment) in REPRODUCTIONS.items():
        validated = client.post(f"{BASE}/validate", json={"definition": definition},
                                headers=alice)
        assert validated.status_code == 200, (name, validated.text)
        assert validated.json()["valid"] is False, name
        assert_positioned(validated.json()["errors"], line, fragment)

        created = client.post(BASE, json={"definition": definition}, headers=alice)
        assert created.status_code == 422, (name, created.text)
        assert_positioned(created.json()["error"]["details"]["errors"], line, fragment)

        patched = client.patch(f"{BASE}/{stored['id']}",
                               json={"lock_version": 1, "definition": definition}, headers=alice)
        assert patched.status_code == 422, (name, patched.text)
        assert_positioned(patched.json()["error"]["details"]["errors"], line, fragment)
    assert client.get(f"{BASE}/{stored['id']}", headers=alice).json() == stored


def test_a_stored_990_digit_literal_answers_422_on_syntax_test_and_backtest(
        client: TestClient, db: Database, alice: dict) -> None:
    # On main such a definition validated and was saved; the row stays as it was stored.
    store_bars(db, "AAA", 60)
    stored = client.post(BASE, json={"definition": VALID}, headers=alice).json()
    hostile = VALID.replace("sma(close, n)", "9" * 990)
    with db.unit_of_work() as session:
        session.execute(update(Strategy).where(Strategy.id == uuid.UUID(stored["id"]))
                        .values(definition=hostile))

    tested = client.post(f"{BASE}/{stored['id']}/syntax-test", headers=alice)
    assert tested.status_code == 422, tested.text
    assert_positioned(tested.json()["error"]["details"]["errors"], 4, "too large")

    backtest = client.post("/api/v1/backtest/run", json={"strategy_id": stored["id"]},
                           headers=alice)
    assert backtest.status_code == 422, backtest.text
    assert_positioned(backtest.json()["error"]["details"]["errors"], 4, "too large")


def test_out_of_range_param_overrides_answer_422_naming_the_param(
        client: TestClient, db: Database, alice: dict) -> None:
    store_bars(db, "AAA", 60)
    stored = client.post(BASE, json={"definition": VALID}, headers=alice).json()
    for value, fragment in (("1e400", "must be a finite number"), ("1e300", "is too large"),
                            ("1e-300", "is too small"), ("-1e16", "is too large")):
        # Written out: a JSON encoder would not send 1e400 (it is inf once parsed).
        for url, body in ((f"{BASE}/{stored['id']}/syntax-test", f'{{"params": {{"n": {value}}}}}'),
                          ("/api/v1/backtest/run", f'{{"strategy_id": "{stored["id"]}", '
                                                   f'"params": {{"n": {value}}}}}')):
            response = client.post(url, content=body,
                                   headers={**alice, "content-type": "application/json"})
            assert response.status_code == 422, (url, value, response.text)
            # Named by the definition check, or (1e400 is inf once parsed) by a body check.
            details = response.json()["error"]["details"]
            assert any(f"param 'n' {fragment}" in e["message"] for e in details.get("errors", [])
                       ) or [f["field"] for f in details.get("fields", [])] == ["params.n"], details


def test_sweep_grids_too_large_or_not_finite_answer_422(client: TestClient, db: Database,
                                                        alice: dict) -> None:
    store_bars(db, "AAA", 60)
    stored = client.post(BASE, json={"definition": VALID}, headers=alice).json()
    # "1:1e9:1" used to build a billion values before counting them (last: on a server
    # without the check, this test should fail on a 500 before it runs out of memory).
    for grid in ("1:inf:1", "0:nan:1", "1:1e308:1e-300", "1:3:nan", "1:1e9:1"):
        response = client.post("/api/v1/backtest/sweep", headers=alice, json={
            "strategy_id": stored["id"], "grid": {"n": grid}, "metric": "return_pct"})
        assert response.status_code == 422, (grid, response.text)
        assert [e["field"] for e in response.json()["error"]["details"]["fields"]] == [
            "grid.n"], response.text
