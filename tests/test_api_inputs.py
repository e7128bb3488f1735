"""Inputs mean the same on every endpoint (tradeloop.schema_types, docs/api.md "Dates,
numbers and decimals"): dates and times one way, bounded integers in queries and paths, no
NaN or infinity in any JSON body, decimals answered in plain notation. Each bad input is a
422 naming the field, never a 500."""

from __future__ import annotations

import base64
import json
import types
import typing
import uuid
from decimal import Decimal
from pathlib import Path
from typing import Any

import pytest
from fastapi import FastAPI
from fastapi.routing import APIRoute
from fastapi.testclient import TestClient
from pydantic import BaseModel, PlainSerializer

from tests.conftest import make_settings, store_bars, wait_for_tasks
from tests.prompts.conftest import template_body
from tradeloop import domains
from tradeloop.db import Database
from tradeloop.llm import service as llm
from tradeloop.schema_types import MAX_INT32, plain_decimal
from tradeloop.strategies.demo import MARKET_STRUCTURE, SMA_CROSS

TOO_BIG = 2**63  # one past SQLite's and PostgreSQL's bigint: OverflowError before the fix
BEFORE_YEAR_1 = "0001-01-01T00:00:00+01:00"  # astimezone(UTC) overflows
AFTER_9999 = "9999-12-31T23:59:59-01:00"


def fields(response: Any) -> dict[str, str]:
    """{field: message} of a 422 answer."""
    assert response.status_code == 422, response.text
    return {f["field"]: f["message"] for f in response.json()["error"]["details"]["fields"]}


def operations(app: FastAPI) -> list[tuple[str, str, dict[str, Any]]]:
    """(method, path, operation) of every documented operation."""
    return [(method, path, operation)
            for path, item in app.openapi()["paths"].items()
            for method, operation in item.items()]


@pytest.fixture
def app(client: TestClient) -> FastAPI:
    return client.app  # type: ignore[return-value]


class TestDates:
    @pytest.fixture
    def market_structure(self, client: TestClient, db: Database, alice: dict) -> dict:
        store_bars(db, "AAPL", 400, seed=3, end="2025-12-31")
        definition = MARKET_STRUCTURE.replace("[ACME, GLOBX, INITECH, UMBRL, BTCUSD]",
                                              "[AAPL]")
        response = client.post("/api/v1/strategies", json={"definition": definition},
                               headers=alice)
        assert response.status_code == 201, response.text
        return response.json()

    @pytest.mark.parametrize(("start", "end"), [
        ("2025-08-01", "2025-08-02"),  # seed 002's own curl body
        ("2024-01-01T00:00:00", "2025-08-02T00:00:00"),  # naive = UTC
        ("2024-01-01T00:00:00Z", "2025-08-02T02:00:00+02:00"),
    ])
    def test_seed_002_backtest_body_is_accepted(self, client: TestClient, alice: dict,
                                                market_structure: dict, start: str,
                                                end: str) -> None:
        response = client.post("/api/v1/backtest/run", headers=alice, json={
            "strategy_name": "MarketStructure", "start_date": start, "end_date": end,
            "symbols": ["AAPL"]})
        assert response.status_code == 202, response.text
        wait_for_tasks()
        run = client.get(f"/api/v1/backtest/results/{response.json()['id']}",
                         headers=alice).json()
        assert (run["start"], run["end"]) == (
            "2024-01-01T00:00:00Z" if start.startswith("2024") else "2025-08-01T00:00:00Z",
            "2025-08-02T00:00:00Z")

    @pytest.mark.parametrize("value", [BEFORE_YEAR_1, AFTER_9999, "1850-01-01",
                                       "2200-01-01", "yesterday", "2025-02-30"])
    def test_out_of_range_or_unparseable_dates_are_422(self, client: TestClient, alice: dict,
                                                       market_structure: dict,
                                                       value: str) -> None:
        body = {"strategy_name": "MarketStructure", "symbols": ["AAPL"]}
        for name in ("start_date", "end_date"):
            response = client.post("/api/v1/backtest/run", json={**body, name: value},
                                   headers=alice)
            assert set(fields(response)) == {name}
        test = client.post(f"/api/v1/strategies/{market_structure['id']}/syntax-test",
                           json={"start": value}, headers=alice)
        assert set(fields(test)) == {"start"}

    @pytest.mark.parametrize("value", [BEFORE_YEAR_1, AFTER_9999, "0001-01-01",
                                       "9999-12-31T23:59:59Z", "soon"])
    def test_every_date_query_parameter_refuses_what_it_cannot_hold(
            self, app: FastAPI, client: TestClient, db: Database, alice: dict,
            value: str) -> None:
        store_bars(db, "AAA", 10)
        checked = 0
        for method, path, operation in operations(app):
            for parameter in operation.get("parameters", []):
                if parameter["in"] != "query" or not _is_date_time(parameter["schema"]):
                    continue
                query = {"symbol": "AAA", parameter["name"]: value}
                response = client.request(method, path, params=query, headers=alice)
                assert set(fields(response)) == {parameter["name"]}, path
                checked += 1
        assert checked >= 2  # /api/v1/bars start and end

    @pytest.mark.parametrize("stamp", [BEFORE_YEAR_1, "2024-01-01T00:00:00",
                                       "2024-01-01T00:00:00+00:00"])
    def test_a_results_cursor_is_read_as_a_date_too(self, client: TestClient, alice: dict,
                                                    stamp: str) -> None:
        cursor = base64.urlsafe_b64encode(f"{stamp}|{uuid.uuid4()}".encode()).decode()
        response = client.get("/api/v1/backtest/results", params={"before": cursor},
                              headers=alice)
        if stamp == BEFORE_YEAR_1:  # astimezone(UTC) at the database overflowed: 500
            assert set(fields(response)) == {"before"}
        else:
            assert response.status_code == 200 and response.json()["results"] == []

    def test_every_form_of_one_instant_selects_the_same_bars(self, client: TestClient,
                                                              db: Database,
                                                              alice: dict) -> None:
        store_bars(db, "AAA", 10)  # daily from 2020-01-01
        answers = [client.get("/api/v1/bars", headers=alice, params={
            "symbol": "AAA", "start": start, "end": "2020-01-05T00:00:00Z"}).json()["bars"]
            for start in ("2020-01-03", "2020-01-03T00:00:00", "2020-01-03T00:00:00Z",
                          "2020-01-02T19:00:00-05:00")]
        assert [len(bars) for bars in answers] == [3, 3, 3, 3]
        assert all(bars == answers[0] for bars in answers)


def _is_date_time(schema: dict[str, Any]) -> bool:
    options = schema.get("anyOf", [schema])
    return any(option.get("format") == "date-time" for option in options)


class TestBoundedIntegers:
    def test_every_integer_in_a_query_or_path_has_a_documented_range(self,
                                                                     app: FastAPI) -> None:
        unbounded = []
        for method, path, operation in operations(app):
            for parameter in operation.get("parameters", []):
                schema = parameter["schema"]
                for option in schema.get("anyOf", [schema]):
                    if option.get("type") == "integer" and not (
                            "minimum" in option and "maximum" in option):
                        unbounded.append(f"{method} {path} {parameter['name']}")
        assert unbounded == []

    def test_offset_past_bigint_is_422_on_every_list(self, app: FastAPI, client: TestClient,
                                                     admin: dict) -> None:
        lists = [path for method, path, operation in operations(app)
                 if method == "get" and "{" not in path
                 and any(p["name"] == "offset" for p in operation.get("parameters", []))]
        assert len(lists) >= 12
        for path in lists:
            assert set(fields(client.get(path, params={"offset": TOO_BIG},
                                         headers=admin))) == {"offset"}, path
            deepest = client.get(path, params={"offset": MAX_INT32}, headers=admin)
            assert deepest.status_code == 200, (path, deepest.text)

    def test_prompt_versions_diff_and_stats(self, client: TestClient, admin: dict) -> None:
        created = client.post("/api/v1/prompts/", json=template_body(), headers=admin)
        url = f"/api/v1/prompts/{created.json()['id']}"
        assert set(fields(client.get(f"{url}/diff", params={"from": TOO_BIG, "to": 1},
                                     headers=admin))) == {"from"}
        assert set(fields(client.get(f"{url}/diff", params={"from": 1, "to": TOO_BIG},
                                     headers=admin))) == {"to"}
        assert set(fields(client.get(f"{url}/stats", params={"version": TOO_BIG},
                                     headers=admin))) == {"version"}
        assert set(fields(client.get(f"{url}/versions/{TOO_BIG}", headers=admin))) == {
            "version"}
        assert set(fields(client.post(f"{url}/rollback", json={"version": TOO_BIG},
                                      headers=admin))) == {"version"}
        for request in (client.get(f"{url}/diff", params={"from": 1, "to": MAX_INT32},
                                   headers=admin),
                        client.get(f"{url}/stats", params={"version": MAX_INT32},
                                   headers=admin),
                        client.get(f"{url}/versions/{MAX_INT32}", headers=admin)):
            assert request.status_code == 404, request.text

    def test_strategy_lock_version(self, client: TestClient, alice: dict) -> None:
        created = client.post("/api/v1/strategies", json={"definition": SMA_CROSS},
                              headers=alice).json()
        response = client.patch(f"/api/v1/strategies/{created['id']}",
                                json={"lock_version": TOO_BIG, "status": "paused"},
                                headers=alice)
        assert set(fields(response)) == {"lock_version"}

    def test_the_largest_lock_version_is_a_conflict_not_an_overflow(
            self, client: TestClient, alice: dict) -> None:
        # PostgreSQL's integer column overflowed on the caller's lock_version + 1 (a 500).
        created = client.post("/api/v1/strategies", json={"definition": SMA_CROSS},
                              headers=alice).json()
        response = client.patch(f"/api/v1/strategies/{created['id']}",
                                json={"lock_version": MAX_INT32, "status": "paused"},
                                headers=alice)
        assert response.status_code == 409, response.text


class TestNonFiniteNumbers:
    @pytest.mark.parametrize(("metadata", "field"), [
        ('{"x": 1e400}', "metadata.x"), ('{"x": -1e400}', "metadata.x"),
        ('{"x": NaN}', "metadata.x"), ('{"x": Infinity}', "metadata.x"),
        ('{"a": {"b": [1, -Infinity]}}', "metadata.a.b.1")])
    def test_strategy_metadata_is_refused_not_stored_as_null(
            self, client: TestClient, alice: dict, metadata: str, field: str) -> None:
        body = f'{{"definition": {json.dumps(SMA_CROSS)}, "metadata": {metadata}}}'
        response = client.post("/api/v1/strategies", content=body, headers={
            **alice, "content-type": "application/json"})
        assert set(fields(response)) == {field}
        assert "finite" in fields(response)[field]
        assert client.get("/api/v1/strategies", headers=alice).json()["total"] == 0

    def test_typed_numbers_too(self, client: TestClient, alice: dict) -> None:
        body = '{"strategy_name": "sma_cross", "params": {"fast": Infinity}, "cash": 1e400}'
        response = client.post("/api/v1/backtest/run", content=body, headers={
            **alice, "content-type": "application/json"})
        assert set(fields(response)) == {"params.fast", "cash"}


class TestNulCharacters:
    @pytest.mark.parametrize(("metadata", "field"), [
        ('{"x": "a\\u0000b"}', "metadata.x"), ('{"a\\u0000": 1}', "metadata.a\u0000"),
        ('{"a": ["ok", "\\u0000"]}', "metadata.a.1")])
    def test_strategy_metadata_with_nul_is_refused_on_both_databases(
            self, client: TestClient, alice: dict, metadata: str, field: str) -> None:
        # PostgreSQL's text and jsonb refuse NUL (a 500); SQLite stored it: refused alike.
        body = f'{{"definition": {json.dumps(SMA_CROSS)}, "metadata": {metadata}}}'
        response = client.post("/api/v1/strategies", content=body, headers={
            **alice, "content-type": "application/json"})
        assert set(fields(response)) == {field}, response.text
        assert "NUL" in fields(response)[field]

    def test_a_template_text_with_nul_is_refused(self, client: TestClient,
                                                 alice: dict) -> None:
        response = client.post("/api/v1/prompts/", json={
            "name": "nul", "template_text": "a\u0000b"},
            headers=alice)
        assert response.status_code == 422, response.text
        assert "template_text" in fields(response)


class TestPlainDecimals:
    @pytest.mark.parametrize(("value", "text"), [
        ("0E-12", "0"), ("-0E-8", "0"), ("0.000135000000", "0.000135"), ("1E-8", "0.00000001"),
        ("1E+3", "1000"), ("487.12000000", "487.12"), ("-2.50", "-2.5"),
        ("12345678901234567890.1234567890", "12345678901234567890.123456789")])
    def test_plain_notation(self, value: str, text: str) -> None:
        assert plain_decimal(Decimal(value)) == text

    def test_a_zero_cost_is_answered_as_0(self, client: TestClient, db: Database,
                                          tmp_path: Path, alice: dict) -> None:
        me = client.get("/api/v1/auth/me", headers=alice).json()
        llm.execute(db, make_settings(tmp_path), llm.PromptCall(
            user_id=uuid.UUID(me["id"]), user_text="Analyse", context={"close": 10, "sma20": 9}))
        [row] = client.get("/api/v1/llm/executions", headers=alice).json()["executions"]
        assert row["cost_usd"] == "0"  # was "0E-12"

    def test_every_decimal_of_every_answer_goes_through_one_serialiser(self) -> None:
        models = [route.response_model for router in domains.routers()
                  for route in router.routes
                  if isinstance(route, APIRoute) and route.response_model is not None]
        assert len(models) > 50
        assert sorted({where for model in models for where in _bare_decimals(model, set())}) \
            == []


def _bare_decimals(annotation: Any, seen: set[Any], where: str = "") -> list[str]:
    """Fields of a response type holding a Decimal without the PlainDecimal serialiser."""
    if isinstance(annotation, type) and issubclass(annotation, BaseModel):
        if annotation in seen:
            return []
        seen.add(annotation)
        found = []
        for name, info in annotation.model_fields.items():
            if not any(isinstance(m, PlainSerializer) for m in info.metadata):
                found += _bare_decimals(info.annotation, seen, f"{annotation.__name__}.{name}")
        return found
    if typing.get_origin(annotation) is typing.Annotated:
        plain = any(isinstance(m, PlainSerializer) for m in annotation.__metadata__)
        return [] if plain else _bare_decimals(typing.get_args(annotation)[0], seen, where)
    if annotation is Decimal:
        return [where]
    if typing.get_origin(annotation) in (typing.Union, types.UnionType, list, dict, tuple):
        return [found for arg in typing.get_args(annotation)
                for found in _bare_decimals(arg, seen, where)]
    return []
