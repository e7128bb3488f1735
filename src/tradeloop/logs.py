"""Structured logging with a correlation id bound to every line of a request or task."""

from __future__ import annotations

import functools
import json
import logging
import os
import sys
import threading
import time
import uuid
from collections.abc import Callable
from contextvars import ContextVar
from typing import Any, TextIO

import structlog
from starlette.types import ASGIApp, Message, Receive, Scope, Send
from structlog.typing import Processor

_correlation_id: ContextVar[str | None] = ContextVar("correlation_id", default=None)

CORRELATION_HEADER = "X-Request-ID"
_MAX_INCOMING_ID_LENGTH = 128

_STANDARD_LEVELS = (logging.NOTSET, logging.DEBUG, logging.INFO, logging.WARNING,
                    logging.ERROR, logging.CRITICAL)
# One list object for the life of the process, changed in place: cached loggers hold a
# reference to it, and structlog.testing.capture_logs swaps its contents the same way.
_PROCESSORS: list[Processor] = []


def current_correlation_id() -> str | None:
    return _correlation_id.get()


def bind_correlation_id(value: str | None = None) -> str:
    """Set the correlation id for the current context (generated when not given)."""
    correlation_id = value or uuid.uuid4().hex
    _correlation_id.set(correlation_id)
    structlog.contextvars.bind_contextvars(correlation_id=correlation_id)
    return correlation_id


def _add_correlation_id(_logger: object, _name: str, event: dict) -> dict:
    correlation_id = _correlation_id.get()
    if correlation_id and "correlation_id" not in event:
        event["correlation_id"] = correlation_id
    return event


class _Sink:
    """Where every line goes. One lock for structlog's lines and the stdlib handler's, so
    that lines written from several threads never interleave."""

    def __init__(self) -> None:
        self.stream: TextIO = sys.stderr
        self.lock = threading.Lock()

    def write_line(self, line: str) -> None:
        with self.lock:
            try:
                self.stream.write(line + "\n")
                self.stream.flush()
            except (OSError, ValueError):
                # A closed or broken stream (a pipe gone, a test's capture closed at exit)
                # must not turn a log call into an error for the code that logged.
                pass

    def reset_lock_after_fork(self) -> None:
        # A fork (Celery's prefork pool) while another thread held the lock would leave it
        # held forever in the child; stdlib logging resets its handler locks the same way.
        self.lock = threading.Lock()


_SINK = _Sink()
os.register_at_fork(after_in_child=_SINK.reset_lock_after_fork)


class _LineWriter:
    """The wrapped logger behind one structlog logger: it carries the module name passed to
    `structlog.get_logger(__name__)` (the `logger` field) and hands rendered lines to the
    sink, without a stdlib LogRecord."""

    __slots__ = ("name",)

    def __init__(self, name: str = "root"):
        self.name = name

    def msg(self, line: str) -> None:
        _SINK.write_line(line)

    debug = info = warning = warn = error = critical = fatal = exception = log = msg


class _BoundLogger(structlog.BoundLoggerBase):
    """structlog's filtering bound logger (a disabled level is a bare `return None`) whose
    level methods `configure_logging` swaps on the class: module loggers are cached on first
    use, and a later level change must still reach them."""


def _install_level(level: int) -> None:
    # structlog has filtering classes for the standard levels only: take the lowest one at or
    # above `level`, so that a custom level such as 25 drops info() as the stdlib would.
    standard = min((value for value in _STANDARD_LEVELS if value >= level),
                   default=logging.CRITICAL)
    chosen = structlog.make_filtering_bound_logger(standard)
    for name, member in vars(chosen).items():
        if not name.startswith("__"):
            setattr(_BoundLogger, name, member)


def _level_number(level: int | str) -> int:
    if isinstance(level, int):
        return level
    number = logging.getLevelNamesMapping().get(level.upper())
    if number is None:
        raise ValueError(f"unknown log level {level!r}")
    return number


def _shared_processors() -> list[Processor]:
    """The fields of every line, for structlog's events and stdlib records alike."""
    return [
        structlog.contextvars.merge_contextvars,
        _add_correlation_id,
        structlog.processors.add_log_level,
        # Takes `.name` from the wrapped logger (a _LineWriter) or from a stdlib record.
        structlog.stdlib.add_logger_name,
        _UtcTimestamp(),
    ]


class _UtcTimestamp:
    """The `timestamp` field as structlog's TimeStamper(fmt="iso", utc=True) writes it
    (2026-01-02T03:04:05.678901Z) at a third of its cost, which was a sixth of a line's: the
    part to the second is formatted once a second. Unlike datetime.isoformat, a whole second
    keeps its .000000, so every timestamp has the same width."""

    def __init__(self) -> None:
        # One tuple swapped whole, so a thread never pairs one second with another's text.
        self._second: tuple[int, str] = (-1, "")

    def __call__(self, _logger: object, _name: str, event: dict) -> dict:
        seconds, nanoseconds = divmod(time.time_ns(), 1_000_000_000)
        cached = self._second
        if cached[0] != seconds:
            cached = (seconds, time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(seconds)))
            self._second = cached
        event["timestamp"] = f"{cached[1]}.{nanoseconds // 1000:06d}Z"
        return event


@functools.cache
def _json_encoder(default: Callable[[Any], Any]) -> json.JSONEncoder:
    return json.JSONEncoder(default=default)


def _json_dumps(event: dict, *, default: Callable[[Any], Any]) -> str:
    # json.dumps builds a new JSONEncoder on every call that passes `default` (JSONRenderer
    # always does), which was a third of the renderer's cost; the output is the same.
    return _json_encoder(default).encode(event)


def _renderer(fmt: str) -> Processor:
    if fmt == "json":
        return structlog.processors.JSONRenderer(serializer=_json_dumps)
    return structlog.dev.ConsoleRenderer(colors=False)


def configure_logging(level: int | str = "INFO", fmt: str = "json",
                      stream: TextIO | None = None) -> None:
    """Write structlog's events and stdlib loggers' records (uvicorn, alembic, celery) as the
    same lines to `stream` (sys.stderr at the time of the call when not given).

    structlog's events never become stdlib LogRecords: its own processor chain renders them
    and a locked writer prints them, and levels below `level` are filtered before any work.
    Foreign stdlib records go through one root handler with the same fields and renderer.
    Safe to call again: the level, format and stream apply to loggers already in use.
    """
    number = _level_number(level)
    shared, renderer = _shared_processors(), _renderer(fmt)
    _SINK.stream = stream or sys.stderr
    _install_level(number)
    _PROCESSORS[:] = [*shared, structlog.processors.format_exc_info, renderer]
    structlog.configure(processors=_PROCESSORS, logger_factory=_LineWriter,
                        wrapper_class=_BoundLogger, cache_logger_on_first_use=True)
    _configure_stdlib(number, shared, renderer)


class _SinkHandler(logging.Handler):
    """The root handler for foreign stdlib records, writing through the same sink."""

    def emit(self, record: logging.LogRecord) -> None:
        try:
            line = self.format(record)
        except Exception:
            self.handleError(record)
            return
        _SINK.write_line(line)


def _configure_stdlib(level: int, shared: list[Processor], renderer: Processor) -> None:
    handler = _SinkHandler()
    handler.setFormatter(structlog.stdlib.ProcessorFormatter(
        processors=[structlog.stdlib.ProcessorFormatter.remove_processors_meta,
                    structlog.processors.format_exc_info, renderer],
        foreign_pre_chain=shared,
    ))
    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel(level)
    for name in ("uvicorn", "uvicorn.error", "uvicorn.access"):
        logging.getLogger(name).handlers[:] = []
        logging.getLogger(name).propagate = True


class CorrelationIdMiddleware:
    """Accept `X-Request-ID` (or generate one), bind it for the request, echo it back, and
    write the request's access line (`http_request`: method, path, status, duration).

    The access line replaces uvicorn's (`serve` turns that off): it carries the correlation
    id, and as a structlog event it costs a fraction of a stdlib record.
    """

    def __init__(self, app: ASGIApp):
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        started = time.perf_counter()
        incoming = dict(scope["headers"]).get(CORRELATION_HEADER.lower().encode())
        candidate = incoming.decode("latin-1").strip() if incoming else ""
        valid = 0 < len(candidate) <= _MAX_INCOMING_ID_LENGTH and candidate.isprintable()
        structlog.contextvars.clear_contextvars()
        correlation_id = bind_correlation_id(candidate if valid else None)
        status: int | None = None

        async def send_with_header(message: Message) -> None:
            nonlocal status
            if message["type"] == "http.response.start":
                status = message["status"]
                headers = list(message.get("headers", []))
                headers.append((CORRELATION_HEADER.lower().encode(), correlation_id.encode()))
                message["headers"] = headers
            await send(message)

        try:
            await self.app(scope, receive, send_with_header)
        except Exception:
            # Answer here rather than in Starlette's outermost error middleware, so the
            # 500 still carries the correlation id in its body and header.
            logging.getLogger("tradeloop.errors").exception("unhandled_error")
            if status is not None:
                raise
            await _send_internal_error(send_with_header, correlation_id)
        finally:
            _access_log.info("http_request", method=scope["method"], path=scope["path"],
                             status=status, client=_client(scope),
                             duration_ms=round((time.perf_counter() - started) * 1000, 2))


_access_log = structlog.get_logger("tradeloop.access")


def _client(scope: Scope) -> str | None:
    client = scope.get("client")
    return f"{client[0]}:{client[1]}" if client else None


async def _send_internal_error(send: Send, correlation_id: str) -> None:
    body = json.dumps({"error": {
        "code": "internal_error",
        "message": "Internal server error; quote the correlation_id when reporting it",
        "details": {}, "correlation_id": correlation_id}}).encode()
    await send({"type": "http.response.start", "status": 500,
                "headers": [(b"content-type", b"application/json"),
                            (b"content-length", str(len(body)).encode())]})
    await send({"type": "http.response.body", "body": body})
