"""Error bodies and correlation ids in responses and log lines."""

from __future__ import annotations

import io
import json
import logging
import re
import uuid
from collections.abc import Callable, Iterator

import jsonschema
import pytest
import structlog
from fastapi.testclient import TestClient

from tests.conftest import TEST_PASSWORD
from tradeloop.logs import bind_correlation_id, configure_logging

ISO_UTC = re.compile(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{6}Z")
Reconfigure = Callable[..., io.StringIO]


@pytest.fixture
def reconfigure() -> Iterator[Reconfigure]:
    """configure_logging writing to a fresh buffer, as it writes to stderr; the default
    configuration again afterwards. (The app's loggers are already cached by then, so every
    call also checks that a new configuration reaches loggers in use.)"""

    def configure(level: str = "INFO", fmt: str = "json") -> io.StringIO:
        buffer = io.StringIO()
        configure_logging(level, fmt, stream=buffer)
        return buffer

    yield configure
    configure_logging()


def json_lines(buffer: io.StringIO) -> list[dict]:
    return [json.loads(line) for line in buffer.getvalue().splitlines()]


def test_request_id_is_echoed_and_logged(client: TestClient,
                                         reconfigure: Reconfigure) -> None:
    buffer = reconfigure()
    response = client.post("/api/v1/auth/register",
                           json={"email": "log@example.com", "password": TEST_PASSWORD},
                           headers={"X-Request-ID": "req-abc-123"})
    assert response.status_code == 201
    assert response.headers["X-Request-ID"] == "req-abc-123"
    created = [line for line in json_lines(buffer) if line["event"] == "user_created"]
    assert len(created) == 1
    assert created[0]["correlation_id"] == "req-abc-123"
    assert (created[0]["level"], created[0]["logger"]) == ("info", "tradeloop.accounts.service")
    assert ISO_UTC.fullmatch(created[0]["timestamp"])


def test_generated_request_id_is_in_error_body(client: TestClient) -> None:
    response = client.get("/api/v1/auth/me")
    assert response.status_code == 401
    error = response.json()["error"]
    assert set(error) == {"code", "message", "details", "correlation_id"}
    assert error["correlation_id"] == response.headers["X-Request-ID"]
    assert len(error["correlation_id"]) == 32


def test_unknown_route_is_json_404(client: TestClient) -> None:
    response = client.get("/api/v1/nothing-here")
    assert response.status_code == 404
    assert response.json()["error"]["code"] == "not_found"


def test_unhandled_error_is_json_500_with_correlation_id(client: TestClient,
                                                         reconfigure: Reconfigure) -> None:
    def explode() -> None:
        raise RuntimeError("boom")

    client.app.add_api_route("/api/v1/_explode", explode)  # type: ignore[attr-defined]
    buffer = reconfigure()
    with TestClient(client.app, raise_server_exceptions=False) as raw:
        response = raw.get("/api/v1/_explode", headers={"X-Request-ID": "trace-500"})
    assert response.status_code == 500
    assert response.json()["error"]["code"] == "internal_error"
    assert response.json()["error"]["correlation_id"] == "trace-500"
    assert response.headers["X-Request-ID"] == "trace-500"
    assert "boom" not in response.text
    # The stdlib logger's record comes out as the same JSON line as structlog's events.
    errors = [line for line in json_lines(buffer) if line["event"] == "unhandled_error"]
    assert len(errors) == 1
    assert errors[0]["correlation_id"] == "trace-500"
    assert (errors[0]["level"], errors[0]["logger"]) == ("error", "tradeloop.errors")
    assert errors[0]["exception"].endswith("RuntimeError: boom")
    assert ISO_UTC.fullmatch(errors[0]["timestamp"])
    [access] = [line for line in json_lines(buffer) if line["event"] == "http_request"]
    assert (access["status"], access["correlation_id"]) == (500, "trace-500")


def test_every_request_has_one_access_line(client: TestClient,
                                           reconfigure: Reconfigure) -> None:
    buffer = reconfigure()
    response = client.get("/api/v1/auth/me", headers={"X-Request-ID": "access-1"})
    assert response.status_code == 401
    [access] = [line for line in json_lines(buffer) if line["event"] == "http_request"]
    assert {key: access[key] for key in ("method", "path", "status", "correlation_id",
                                         "logger", "level")} == {
        "method": "GET", "path": "/api/v1/auth/me", "status": 401,
        "correlation_id": "access-1", "logger": "tradeloop.access", "level": "info"}
    assert access["duration_ms"] >= 0 and access["client"]


def test_structlog_exception_line(reconfigure: Reconfigure) -> None:
    buffer = reconfigure()
    bind_correlation_id("task-1")
    try:
        raise ValueError("bad input")
    except ValueError:
        structlog.get_logger("tradeloop.tests").exception("task_failed", task="demo")
    (line,) = json_lines(buffer)
    assert {key: line[key] for key in ("event", "task", "level", "logger", "correlation_id")} \
        == {"event": "task_failed", "task": "demo", "level": "error",
            "logger": "tradeloop.tests", "correlation_id": "task-1"}
    assert line["exception"].startswith("Traceback (most recent call last):")
    assert line["exception"].endswith("ValueError: bad input")


def test_levels_are_filtered_and_a_new_level_reaches_cached_loggers(
        reconfigure: Reconfigure) -> None:
    log, foreign = structlog.get_logger("tradeloop.tests"), logging.getLogger("tradeloop.x")
    buffer = reconfigure("INFO")
    for logger in (log, foreign):
        logger.debug("hidden")
        logger.info("shown")
    assert [line["event"] for line in json_lines(buffer)] == ["shown", "shown"]
    buffer = reconfigure("warning")  # the structlog logger is cached by now
    for logger in (log, foreign):
        logger.info("hidden")
        logger.warning("shown")
    assert [line["level"] for line in json_lines(buffer)] == ["warning", "warning"]
    buffer = reconfigure("DEBUG")
    log.debug("shown")
    assert [line["level"] for line in json_lines(buffer)] == ["debug"]


def test_unknown_level_is_refused() -> None:
    with pytest.raises(ValueError, match="unknown log level"):
        configure_logging("LOUD")


def test_console_format(reconfigure: Reconfigure) -> None:
    buffer = reconfigure(fmt="console")
    bind_correlation_id("console-1")
    structlog.get_logger("tradeloop.tests").info("user_created", user_id="u1")
    logging.getLogger("uvicorn.access").info("GET / %d", 200)
    structlog_line, stdlib_line = buffer.getvalue().splitlines()
    assert "[info     ] user_created" in structlog_line
    assert "[tradeloop.tests] correlation_id=console-1 user_id=u1" in structlog_line
    assert "GET / 200" in stdlib_line
    assert "[uvicorn.access] correlation_id=console-1" in stdlib_line


def test_a_closed_stream_does_not_break_the_caller(reconfigure: Reconfigure) -> None:
    reconfigure().close()
    structlog.get_logger("tradeloop.tests").info("dropped")
    logging.getLogger("tradeloop.x").warning("dropped")


def test_the_openapi_documents_the_error_answers_in_their_shape(client: TestClient,
                                                                 alice: dict) -> None:
    """schemathesis: 404/401/409/400 were undocumented, and every 422 was documented as
    FastAPI's `{"detail": [...]}`, a shape this app never sends."""
    document = client.get("/openapi.json").json()
    assert "HTTPValidationError" not in document["components"]["schemas"]
    paths = document["paths"]
    documented = {(path, method): set(operation["responses"])
                  for path, methods in paths.items() for method, operation in methods.items()}
    assert {"200", "400", "401", "404", "409", "422"} <= documented[
        ("/api/v1/strategies/{strategy_id}", "patch")]
    assert {"401", "429"} <= documented[("/api/v1/auth/token", "post")]
    assert {"401", "403", "422"} <= documented[("/metrics/signals", "get")]
    assert "404" in documented[("/api/v1/admin/guardrails", "get")]  # admins only: 404 to others
    validator = jsonschema.Draft202012Validator({
        "$ref": "#/components/schemas/ErrorResponse", "components": document["components"]})
    strategy = f"/api/v1/strategies/{uuid.uuid4()}"
    for answer, status in ((client.patch(strategy, json={"lock_version": 1}, headers=alice), 404),
                           (client.patch(strategy, json={}, headers=alice), 422),
                           (client.get(strategy), 401)):
        assert answer.status_code == status
        assert str(status) in paths["/api/v1/strategies/{strategy_id}"][
            "patch" if answer.request.method == "PATCH" else "get"]["responses"]
        validator.validate(answer.json())
