"""schemathesis over every operation of the OpenAPI, as a normal user and as an admin.

Each case goes in-process to the app of tests/fuzz/conftest.py; three cases in four with a
well-formed id (and every edge example of tests/fuzz/edges.py) get the id of a real row of the
caller (tests/fuzz/world.py) instead of the generated one, so id-taking operations are
exercised past their 404. Checks: no server error,
the status code, content type and body are the ones the OpenAPI documents.

The size of the run: FUZZ_EXAMPLES generated cases per operation and role (default 10) on top
of schemathesis' deterministic coverage cases (boundary and invalid values), FUZZ_SEED (fixed
by default, so CI sees the same cases each time). A long local run:
    FUZZ_EXAMPLES=500 FUZZ_SEED=$RANDOM FUZZ_REPORT=fuzz.json pytest tests/fuzz
"""

from __future__ import annotations

import os
import tempfile
import uuid
from pathlib import Path
from typing import Any

import pytest
import schemathesis
from hypothesis import HealthCheck, Phase, settings
from schemathesis.checks import (
    content_type_conformance,
    not_a_server_error,
    response_schema_conformance,
    status_code_conformance,
)
from schemathesis.core.failures import FailureGroup
from schemathesis.generation.meta import TestPhase

from tests.conftest import make_settings, wait_for_tasks
from tests.fuzz.conftest import SIGN_WITH, FuzzWorld
from tests.fuzz.edges import with_edge_examples
from tests.fuzz.report import Finding, OperationRun, exception_finding
from tests.fuzz.world import ROLES, Actor
from tradeloop.app import create_app
from tradeloop.tasks import get_task_runner, set_task_runner

EXAMPLES = int(os.environ.get("FUZZ_EXAMPLES", "10"))
SEED = int(os.environ.get("FUZZ_SEED", "13"))
CHECKS = [not_a_server_error, status_code_conformance, content_type_conformance,
          response_schema_conformance]
# Of every REAL_ID_PERIOD cases with well-formed ids, one keeps its generated ids (the 404 path).
REAL_ID_PERIOD = 4
# A template version in a query is a filter, not a lookup: its edge values stay.
PATH_ONLY_IDS = {"version"}
# Body fields that name a row of the caller, or the series with bars.
BODY_ID_FIELDS = ("strategy_id", "template_id", "signal_id", "endpoint_id", "symbol",
                  "timeframe")


def load_schema() -> schemathesis.BaseSchema:
    """The app's OpenAPI document. The app that serves it only describes the routes: cases go
    to the fuzz world's app (its task runner is not kept as the process-wide one)."""
    try:
        previous_runner = get_task_runner()
    except RuntimeError:
        previous_runner = None
    with tempfile.TemporaryDirectory() as data_dir:
        app = create_app(make_settings(Path(data_dir)))
    set_task_runner(previous_runner)
    config = schemathesis.Config.from_path(Path(__file__).with_name("schemathesis.toml"))
    document = with_edge_examples(app.openapi(), config.projects.get_default())
    loaded = schemathesis.openapi.from_dict(document, config=config)
    loaded.app = app
    loaded.config.seed = SEED
    return loaded


schema = load_schema()


@schema.parametrize()
@pytest.mark.parametrize("role", ROLES)
@settings(max_examples=EXAMPLES, deadline=None, database=None,
          phases=[Phase.explicit, Phase.generate], suppress_health_check=list(HealthCheck))
def test_api(case: schemathesis.Case, role: str, fuzz_world: FuzzWorld,
             fuzz_operation: OperationRun) -> None:
    actor = fuzz_world.actors[role]
    real = is_edge_example(case) or fuzz_operation.cases % REAL_ID_PERIOD != REAL_ID_PERIOD - 1
    real_ids = real and substitute_ids(case, ids_for(case.operation.path, actor.ids))
    headers = {**actor.headers, **signature_marker(case, actor, fuzz_world.webhook_secret,
                                                   sign=real)}
    fuzz_world.errors.take()
    try:
        response = case.call(session=fuzz_world.client, headers=headers)
        wait_for_tasks()
    except Exception as exc:  # the app raised past its own error handling
        fuzz_operation.record(None, [exception_finding(
            role, fuzz_operation.operation, exc, case.as_curl_command(headers=actor.headers))],
            real_ids=real_ids)
        return
    failures = failed_checks(case, response, actor.headers)
    raised = fuzz_world.errors.take()
    fuzz_operation.record(response.status_code, [
        Finding(role, fuzz_operation.operation, type(failure).__name__, response.status_code,
                getattr(failure, "title", ""), raised or getattr(failure, "message", ""),
                case.as_curl_command(headers=actor.headers)) for failure in failures],
        real_ids=real_ids)


def is_edge_example(case: schemathesis.Case) -> bool:
    """A case of the examples phase (tests/fuzz/edges.py): its edge value must reach the code
    behind the id lookup."""
    return case.meta is not None and case.meta.phase.name == TestPhase.EXAMPLES


def failed_checks(case: schemathesis.Case, response: Any,
                  headers: dict[str, str]) -> list[AssertionError]:
    try:
        case.validate_response(response, checks=CHECKS, headers=headers)
    except FailureGroup as group:
        return list(group.exceptions)
    except AssertionError as failure:  # a single failed check is raised on its own
        return [failure]
    return []


def signature_marker(case: schemathesis.Case, actor: Actor, webhook_secret: str, *,
                     sign: bool) -> dict[str, str]:
    """Webhook cases to be signed (see SigningClient): with the global secret on /webhook,
    with the endpoint's on the caller's endpoint; the others stay unsigned (the 401 path)."""
    if not sign or not case.operation.path.startswith("/webhook"):
        return {}
    key = (case.path_parameters or {}).get("endpoint_key")
    if key is None:
        return {SIGN_WITH: webhook_secret}
    return {SIGN_WITH: actor.endpoint_secret} if key == actor.ids["endpoint_key"] else {}


def ids_for(path: str, ids: dict[str, str]) -> dict[str, str]:
    """The admin prompt operations take ids of global templates, the others the caller's."""
    if path.startswith("/api/v1/admin/prompts"):
        return {**ids, "template_id": ids["global_template_id"]}
    return ids


def substitute_ids(case: schemathesis.Case, ids: dict[str, str]) -> bool:
    """Put the ids of real rows where the case has a well-formed id; whether it did."""
    substituted = False
    for container, names in ((case.path_parameters, ids.keys()),
                             (case.query, ids.keys() - PATH_ONLY_IDS)):
        for name, value in list((container or {}).items()):
            if name in names and is_well_formed(name, value):
                container[name] = ids[name]
                substituted = True
    if isinstance(case.body, dict):
        for name in BODY_ID_FIELDS:
            if is_well_formed(name, case.body.get(name)):
                case.body[name] = ids[name]
                substituted = True
        symbols = case.body.get("symbols")
        if isinstance(symbols, list) and symbols and all(
                isinstance(symbol, str) and symbol for symbol in symbols):
            case.body["symbols"] = [ids["symbol"]]
            substituted = True
    return substituted


def is_well_formed(name: str, value: Any) -> bool:
    """Whether a generated value could have been a real id (invalid ones stay: 422 path)."""
    if name == "version":
        return isinstance(value, int) and not isinstance(value, bool) and value >= 1
    if not isinstance(value, str):
        return False
    if name.endswith("_id"):
        try:
            uuid.UUID(value)
        except ValueError:
            return False
    return bool(value)
