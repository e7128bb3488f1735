"""Every request body bounded in size and in time, before anything parses it.

Pure ASGI middleware (not Starlette's BaseHTTPMiddleware, which runs the app in a task and
buffers): it wraps `receive`, so bodies still stream, and costs the webhooks' fast path a few
attribute updates per request, no timer of its own (see `_Deadlines`).
"""

from __future__ import annotations

import asyncio
from collections import deque
from collections.abc import Mapping
from typing import Any

from starlette.exceptions import HTTPException
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from tradeloop.errors import send_error

# The rest of the body is never read: closing the connection after the answer (uvicorn does
# on this header) frees it, instead of leaving a sender to go on trickling into it.
CLOSE_CONNECTION = {"connection": "close"}


class RequestBodyTooLarge(HTTPException):
    """Raised while the body streams in; the app's handler for HTTPException answers 413."""

    def __init__(self, limit: int):
        super().__init__(413, f"Request body larger than {limit} bytes", CLOSE_CONNECTION)


class RequestBodyTimeout(HTTPException):
    def __init__(self, timeout_s: float):
        super().__init__(408, f"Request body not received within {timeout_s:g} s",
                         CLOSE_CONNECTION)


class RequestBodyGuard:
    """Bound every request body in size and in time.

    A declared Content-Length over the limit is answered 413 at once, without calling the app.
    A chunked body (or one longer than declared) is counted while it streams: the read that
    crosses the limit raises `RequestBodyTooLarge`. The whole body must arrive within
    `timeout_s` of its first read, else the read raises `RequestBodyTimeout` (408): a client
    trickling bytes cannot hold a connection and a worker forever (uvicorn's own timeouts
    cover idle keep-alive connections, not a slow body). FastAPI passes both exceptions
    through its body parsing to the app's HTTPException handler; raised outside it (a
    middleware reading the body), they are answered here.

    `route_limits` maps a path (and everything below it) to its own limit, or to None for
    routes that enforce one themselves (the webhooks); the deadline applies everywhere.
    """

    def __init__(self, app: ASGIApp, *, max_bytes: int, timeout_s: float,
                 route_limits: Mapping[str, int | None] | None = None):
        self.app = app
        self.max_bytes = max_bytes
        self.timeout_s = timeout_s
        self.route_limits = tuple((route_limits or {}).items())
        self.deadlines: dict[asyncio.AbstractEventLoop, _Deadlines] = {}

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        limit = self._limit_for(scope["path"])
        if limit is not None and (declared_length(scope) or 0) > limit:
            await _answer(send, RequestBodyTooLarge(limit))
            return
        guarded = _GuardedReceive(receive, limit, self._deadlines())
        started = False

        async def tracking_send(message: Message) -> None:
            nonlocal started
            started = True
            await send(message)

        try:
            await self.app(scope, guarded, tracking_send)
        except (RequestBodyTooLarge, RequestBodyTimeout) as exc:
            if started:
                raise
            await _answer(send, exc)
        finally:
            guarded.release()

    def _limit_for(self, path: str) -> int | None:
        for prefix, limit in self.route_limits:
            if is_under(path, prefix):
                return limit
        return self.max_bytes

    def _deadlines(self) -> _Deadlines:
        # One per event loop (a server process has one; test clients bring their own).
        loop = asyncio.get_running_loop()
        deadlines = self.deadlines.get(loop)
        if deadlines is None:
            deadlines = self.deadlines.setdefault(loop, _Deadlines(loop, self.timeout_s))
        return deadlines


class _GuardedReceive:
    """`receive` counting the body's bytes and bounding its arrival by a deadline."""

    __slots__ = ("complete", "deadline", "deadlines", "expired", "limit", "receive",
                 "received", "task", "waiting")

    def __init__(self, receive: Receive, limit: int | None, deadlines: _Deadlines):
        self.receive = receive
        self.limit = limit
        self.deadlines = deadlines
        self.deadline: float | None = None
        self.received = 0
        self.complete = False
        self.expired = False
        self.waiting = False
        self.task: asyncio.Task[Any] | None = None

    async def __call__(self) -> Message:
        if self.complete:
            # Later calls wait for the client to disconnect (streaming responses): no deadline.
            return await self.receive()
        message = await self._read_before_deadline()
        if message["type"] != "http.request":
            self.complete = True
            return message
        self.received += len(message.get("body", b""))
        if self.limit is not None and self.received > self.limit:
            self.complete = True
            raise RequestBodyTooLarge(self.limit)
        self.complete = not message.get("more_body", False)
        return message

    async def _read_before_deadline(self) -> Message:
        if self.expired:
            raise RequestBodyTimeout(self.deadlines.timeout_s)
        if self.deadline is None:
            self.deadlines.add(self)
        self.task = asyncio.current_task()
        self.waiting = True
        try:
            return await self.receive()
        except asyncio.CancelledError:
            # Our own cancellation (expire) becomes the 408; anyone else's goes on.
            if self.expired and self.task is not None and self.task.uncancel() == 0:
                raise RequestBodyTimeout(self.deadlines.timeout_s) from None
            raise
        finally:
            self.waiting = False

    def release(self) -> None:
        """The request is over (perhaps without reading its whole body): no deadline any more,
        and nothing of the request kept alive by the deadline queue's reference."""
        self.complete = True
        self.receive = _request_over
        self.task = None

    def expire(self) -> None:
        """The deadline passed: end the read waiting now, or refuse the next one."""
        self.expired = True
        if self.waiting and self.task is not None:
            self.task.cancel()


class _Deadlines:
    """The body deadlines of one event loop, behind one timer instead of one per request.

    Every body gets the same timeout, so deadlines come in the order bodies start: the oldest
    unfinished read has the next one. The timer, armed for it, expires every read past its
    deadline and re-arms for the next unfinished one. A read that finishes is dropped the
    next time the queue is looked at; its timer is not cancelled but simply finds nothing to
    do. So a request costs a queue append, and a timer only when none is armed (at most one
    per timeout while requests finish in time) — a per-request timer (or asyncio.timeout)
    costs several times the rest of this middleware.
    """

    def __init__(self, loop: asyncio.AbstractEventLoop, timeout_s: float):
        self.loop = loop
        self.timeout_s = timeout_s
        self.reads: deque[_GuardedReceive] = deque()
        self.armed = False

    def add(self, read: _GuardedReceive) -> None:
        read.deadline = self.loop.time() + self.timeout_s
        reads = self.reads
        while reads and reads[0].complete:
            reads.popleft()
        reads.append(read)
        if not self.armed:
            self.loop.call_at(read.deadline, self._expire_overdue)
            self.armed = True

    def _expire_overdue(self) -> None:
        self.armed = False
        now = self.loop.time()
        reads = self.reads
        while reads:
            read = reads[0]
            if not read.complete:
                assert read.deadline is not None
                if read.deadline > now:
                    self.loop.call_at(read.deadline, self._expire_overdue)
                    self.armed = True
                    return
                read.expire()
            reads.popleft()


async def _request_over() -> Message:
    return {"type": "http.disconnect"}


async def _answer(send: Send, exc: RequestBodyTooLarge | RequestBodyTimeout) -> None:
    code = "payload_too_large" if exc.status_code == 413 else "request_timeout"
    await send_error(send, exc.status_code, code, exc.detail, [(b"connection", b"close")])


def declared_length(scope: Scope) -> int | None:
    """The request's Content-Length, or None when absent (chunked) or unreadable."""
    for name, value in scope["headers"]:
        if name == b"content-length":
            try:
                return int(value)
            except ValueError:
                return None
    return None


def is_under(path: str, prefix: str) -> bool:
    """True for `prefix` itself and every path below it (`/webhook`, `/webhook/abc`)."""
    return path == prefix or path.startswith(prefix + "/")


async def read_and_replay(receive: Receive) -> tuple[bytes, Receive]:
    """The whole request body, and a `receive` that hands the same body to the next app."""
    chunks: list[bytes] = []
    while True:
        message = await receive()
        if message["type"] != "http.request":
            # The client went away: let the application see the disconnect too.
            return b"".join(chunks), _replay([message], receive)
        chunks.append(message.get("body", b""))
        if not message.get("more_body", False):
            break
    body = b"".join(chunks)
    return body, _replay([{"type": "http.request", "body": body, "more_body": False}], receive)


def _replay(messages: list[Message], receive: Receive) -> Receive:
    pending = list(messages)

    async def replayed() -> Message:
        if pending:
            return pending.pop(0)
        return await receive()

    return replayed
