"""Errors users can act on, and the handlers that turn them into `{"error": {...}}` JSON."""

from __future__ import annotations

import json
from collections.abc import Callable, Iterable, Iterator
from typing import Any, TypeVar

from fastapi import APIRouter, FastAPI, Request
from fastapi.dependencies.models import Dependant
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from fastapi.routing import APIRoute
from pydantic import BaseModel, Field
from starlette.exceptions import HTTPException as StarletteHTTPException
from starlette.types import Send

from tradeloop.logs import current_correlation_id


class AppError(Exception):
    """A failure with a stable machine-readable code, a message and optional details."""

    status_code = 400
    code = "bad_request"

    def __init__(self, message: str, *, details: dict[str, Any] | None = None,
                 code: str | None = None, headers: dict[str, str] | None = None):
        super().__init__(message)
        self.message = message
        self.details = details or {}
        self.headers = headers
        if code:
            self.code = code


class NotFoundError(AppError):
    status_code = 404
    code = "not_found"


class ConflictError(AppError):
    status_code = 409
    code = "conflict"


class UnauthorizedError(AppError):
    status_code = 401
    code = "unauthorized"

    def __init__(self, message: str = "Not authenticated", **kwargs: Any):
        kwargs.setdefault("headers", {"WWW-Authenticate": "Bearer"})
        super().__init__(message, **kwargs)


class ForbiddenError(AppError):
    status_code = 403
    code = "forbidden"


class RateLimitedError(AppError):
    status_code = 429
    code = "rate_limited"


class FieldValidationError(AppError):
    """Input that passed parsing but broke a rule; `fields` names each offending field."""

    status_code = 422
    code = "validation_error"

    def __init__(self, fields: list[dict[str, str]], message: str = "Invalid input"):
        super().__init__(message, details={"fields": fields})


def error_body(code: str, message: str, details: dict[str, Any] | None = None) -> dict[str, Any]:
    return {"error": {"code": code, "message": message, "details": details or {},
                      "correlation_id": current_correlation_id()}}


async def send_error(send: Send, status: int, code: str, message: str,
                     headers: Iterable[tuple[bytes, bytes]] = ()) -> None:
    """Answer with the `{"error": {...}}` body from a pure ASGI middleware (no Response)."""
    body = json.dumps(error_body(code, message)).encode()
    await send({"type": "http.response.start", "status": status,
                "headers": [(b"content-type", b"application/json"),
                            (b"content-length", str(len(body)).encode()), *headers]})
    await send({"type": "http.response.body", "body": body})


def _field_path(location: tuple[Any, ...] | list[Any]) -> str:
    parts = [str(part) for part in location]
    if parts and parts[0] in {"body", "query", "path", "header", "cookie", "form"}:
        parts = parts[1:]
    return ".".join(parts) or "body"


def validation_fields(errors: list[dict[str, Any]] | Any) -> list[dict[str, str]]:
    """Every failing field of a pydantic/FastAPI validation error, as {field, message, type}."""
    return [{"field": _field_path(err.get("loc", ())), "message": err.get("msg", "invalid"),
             "type": err.get("type", "value_error")} for err in errors]


async def _app_error_handler(_request: Request, exc: Exception) -> JSONResponse:
    assert isinstance(exc, AppError)
    return JSONResponse(error_body(exc.code, exc.message, exc.details),
                        status_code=exc.status_code, headers=exc.headers)


async def _validation_error_handler(_request: Request, exc: Exception) -> JSONResponse:
    assert isinstance(exc, RequestValidationError)
    fields = validation_fields(exc.errors())
    return JSONResponse(error_body("validation_error", "Invalid input", {"fields": fields}),
                        status_code=422)


async def _http_error_handler(_request: Request, exc: Exception) -> JSONResponse:
    assert isinstance(exc, StarletteHTTPException)
    code = {404: "not_found", 405: "method_not_allowed", 408: "request_timeout",
            413: "payload_too_large"}.get(
        exc.status_code, "http_error")
    return JSONResponse(error_body(code, str(exc.detail)), status_code=exc.status_code,
                        headers=getattr(exc, "headers", None))


def install_error_handlers(app: FastAPI) -> None:
    app.add_exception_handler(AppError, _app_error_handler)
    app.add_exception_handler(RequestValidationError, _validation_error_handler)
    app.add_exception_handler(StarletteHTTPException, _http_error_handler)


# --- The error answers in the OpenAPI document -------------------------------------------

class ErrorDetail(BaseModel):
    code: str = Field(description="Stable machine-readable code, e.g. not_found")
    message: str
    details: dict[str, Any] = Field(default_factory=dict,
                                    description="e.g. `fields` for validation errors")
    correlation_id: str | None = Field(default=None, description="Quote it when reporting")


class ErrorResponse(BaseModel):
    """Every error answer (error_body)."""

    error: ErrorDetail


ERROR_DESCRIPTIONS = {
    400: "Malformed request: a body that is not valid JSON or not UTF-8",
    408: "The body did not arrive in time (REQUEST_BODY_TIMEOUT_S)",
    401: "Missing, invalid or expired credentials",
    403: "Not allowed to the caller",
    404: "Not found (or not the caller's)",
    409: "Conflicts with the current state",
    413: "Body larger than the limit (REQUEST_BODY_MAX_BYTES)",
    422: "Invalid input: details.fields names every invalid field",
    429: "Too many attempts: retry after Retry-After seconds",
    502: "The analyst (LLM provider) gave no usable answer",
}
# What an operation with a request body, or with parameters, can answer whatever it does
# (408 and 413 from request_bodies.RequestBodyGuard).
BODY_STATUSES = (400, 408, 413, 422)
PARAMETER_STATUSES = (422,)
PATH_PARAMETER_STATUSES = (404,)
STATUSES_ATTRIBUTE = "__tradeloop_error_statuses__"

Call = TypeVar("Call", bound=Callable[..., Any])


def error_responses(*statuses: int) -> dict[int | str, dict[str, Any]]:
    """`responses=` of a route for the error statuses it answers beyond those documented on
    every operation (document_error_responses)."""
    return {status: {"model": ErrorResponse, "description": ERROR_DESCRIPTIONS[status]}
            for status in statuses}


def answers(*statuses: int) -> Callable[[Call], Call]:
    """Mark a dependency with the error statuses it answers (e.g. 401 for authentication), so
    that every operation that depends on it documents them."""
    def mark(call: Call) -> Call:
        setattr(call, STATUSES_ATTRIBUTE, statuses)
        return call
    return mark


def document_error_responses(app: FastAPI, routers: list[APIRouter]) -> None:
    """Document on every operation of `routers` the errors it can answer, in the one error
    shape, instead of FastAPI's default 422 (`{"detail": [...]}`, which this app never
    sends): BODY_STATUSES for a body, 422 for parameters, 404 for path ids, and the statuses
    its dependencies are marked with (`answers`)."""
    default_openapi = app.openapi
    routes = [route for router in routers for route in router.routes
              if isinstance(route, APIRoute) and route.include_in_schema]

    def openapi() -> dict[str, Any]:
        if app.openapi_schema is None:
            document = default_openapi()
            components = document.setdefault("components", {}).setdefault("schemas", {})
            components.update(_error_schemas())
            for name in ("HTTPValidationError", "ValidationError"):
                components.pop(name, None)
            for route in routes:
                operations = document["paths"].get(route.path_format, {})
                for method in route.methods:
                    if method.lower() in operations:
                        _add_error_statuses(operations[method.lower()], _route_statuses(route))
        return app.openapi_schema or {}

    app.openapi = openapi  # type: ignore[method-assign]


def _error_schemas() -> dict[str, Any]:
    schema = ErrorResponse.model_json_schema(ref_template="#/components/schemas/{model}")
    definitions = schema.pop("$defs", {})
    return {**definitions, "ErrorResponse": schema}


def _route_statuses(route: APIRoute) -> set[int]:
    statuses = set(BODY_STATUSES) if route.body_field is not None else set()
    for dependant in _dependants(route.dependant):
        statuses.update(getattr(dependant.call, STATUSES_ATTRIBUTE, ()))
        if (dependant.query_params or dependant.path_params or dependant.header_params
                or dependant.cookie_params):
            statuses.update(PARAMETER_STATUSES)
        if dependant.path_params:
            statuses.update(PATH_PARAMETER_STATUSES)
    return statuses


def _dependants(dependant: Dependant) -> Iterator[Dependant]:
    """The route's own dependant and those of all its dependencies, depth first."""
    yield dependant
    for dependency in dependant.dependencies:
        yield from _dependants(dependency)


def _add_error_statuses(operation: dict[str, Any], statuses: set[int]) -> None:
    responses = operation.setdefault("responses", {})
    default_validation = responses.get("422", {}).get("content", {}).get(
        "application/json", {}).get("schema", {}).get("$ref", "").endswith(
        "/HTTPValidationError")
    if default_validation:
        del responses["422"]
    for status in sorted(statuses):
        responses.setdefault(str(status), {
            "description": ERROR_DESCRIPTIONS[status],
            "content": {"application/json": {
                "schema": {"$ref": "#/components/schemas/ErrorResponse"}}}})
