"""The floor for bench/webhook.py: the bare endpoint plus only the work the issue requires of a
durable webhook intake, written as leanly as the stack allows.

    python bench/webhook_floor.py --port 8101 --database sqlite:////tmp/floor.db
    python bench/webhook_floor.py --port 8101 --database postgresql://postgres@127.0.0.1/floor

Per request, on top of bench/webhook_baseline.py: the `x-signature` HMAC-SHA256 of the raw body
(constant-time compare), JSON parsed and validated by tradeloop's own pydantic model of a
signal, and the signal stored under a unique key, committed before the answer says ACCEPTED
or DUPLICATE. Requests that arrive while a transaction is being written share the next one
(group commit in a worker thread, one multi-row `INSERT … ON CONFLICT DO NOTHING RETURNING`
per batch), on the bare drivers (sqlite3 in WAL mode with synchronous=NORMAL, as tradeloop;
psycopg). Nothing else: no endpoint lookup, no field-error answers, no replay window, no
processing-error rows, no correlation id, no log lines, no ORM.

No implementation of the issue's intake can do less per request on this stack, so this
server's requests/s bound what tradeloop's /webhook can reach; bench/webhook.py measures it
side by side with (a) and (b).
"""

from __future__ import annotations

import argparse
import asyncio
import hashlib
import hmac
import json
import sqlite3
import time
import uuid
from collections.abc import Callable, Sequence
from typing import Any

import uvicorn
from fastapi import FastAPI, Request, Response
from pydantic import ValidationError

from tradeloop.webhooks.schemas import WebhookSignalIn

SECRET = b"bench-webhook-secret"  # the same throwaway secret as bench/webhook.py
MAX_BATCH = 128
Row = tuple[str, str, str, str, str]  # id, key, symbol, direction, body

SQLITE_SCHEMA = ("CREATE TABLE IF NOT EXISTS floor_signals (id TEXT PRIMARY KEY, "
                 "key TEXT NOT NULL UNIQUE, symbol TEXT NOT NULL, direction TEXT NOT NULL, "
                 "body TEXT NOT NULL)")
POSTGRES_SCHEMA = ("CREATE TABLE IF NOT EXISTS floor_signals (id UUID PRIMARY KEY, "
                   "key TEXT NOT NULL UNIQUE, symbol TEXT NOT NULL, direction TEXT NOT NULL, "
                   "body TEXT NOT NULL)")


def sqlite_writer(path: str) -> Callable[[Sequence[Row]], set[str]]:
    connection = sqlite3.connect(path, check_same_thread=False, isolation_level=None)
    connection.execute("PRAGMA journal_mode=WAL")
    connection.execute("PRAGMA synchronous=NORMAL")
    connection.execute(SQLITE_SCHEMA)

    def write(rows: Sequence[Row]) -> set[str]:
        values = ",".join(["(?,?,?,?,?)"] * len(rows))
        connection.execute("BEGIN IMMEDIATE")
        try:
            inserted = connection.execute(
                f"INSERT INTO floor_signals VALUES {values} ON CONFLICT (key) DO NOTHING "  # noqa: S608 - placeholders only
                "RETURNING key", [value for row in rows for value in row]).fetchall()
            connection.execute("COMMIT")
        except BaseException:
            connection.execute("ROLLBACK")
            raise
        return {key for (key,) in inserted}

    return write


def postgres_writer(url: str) -> Callable[[Sequence[Row]], set[str]]:
    import psycopg

    connection = psycopg.connect(url, autocommit=True)
    connection.execute(POSTGRES_SCHEMA)
    connection.autocommit = False

    def write(rows: Sequence[Row]) -> set[str]:
        columns = list(zip(*rows, strict=True))
        with connection.transaction():
            inserted = connection.execute(
                "INSERT INTO floor_signals SELECT * FROM unnest(%s::uuid[], %s::text[], "
                "%s::text[], %s::text[], %s::text[]) ON CONFLICT (key) DO NOTHING RETURNING key",
                [list(column) for column in columns]).fetchall()
        return {key for (key,) in inserted}

    return write


class GroupWriter:
    """Rows that arrive while a batch is being written go together in the next one."""

    def __init__(self, write: Callable[[Sequence[Row]], set[str]]):
        self._write = write
        self._waiting: list[tuple[Row, asyncio.Future[bool]]] = []
        self._writing = False
        self._task: asyncio.Task[None] | None = None

    async def stored(self, row: Row) -> bool:
        """True when `row` was inserted, False when its key was already stored."""
        loop = asyncio.get_running_loop()
        future: asyncio.Future[bool] = loop.create_future()
        self._waiting.append((row, future))
        if not self._writing:
            self._writing = True
            self._task = loop.create_task(self._drain())
        return await future

    async def _drain(self) -> None:
        loop = asyncio.get_running_loop()
        try:
            while self._waiting:
                batch = self._waiting[:MAX_BATCH]
                del self._waiting[:MAX_BATCH]
                try:
                    inserted = await loop.run_in_executor(None, self._write,
                                                          [row for row, _ in batch])
                except Exception as exc:  # every caller of the batch hears of it
                    for _, future in batch:
                        future.set_exception(exc)
                    continue
                for row, future in batch:
                    future.set_result(row[1] in inserted)
        finally:
            self._writing = False


def make_app(database: str) -> FastAPI:
    writer = GroupWriter(sqlite_writer(database.removeprefix("sqlite:///"))
                         if database.startswith("sqlite:///") else postgres_writer(database))
    app = FastAPI()

    @app.post("/webhook")
    async def webhook(request: Request) -> Response:
        started = time.perf_counter()
        raw = await request.body()
        expected = "sha256=" + hmac.new(SECRET, raw, hashlib.sha256).hexdigest()
        if not hmac.compare_digest(request.headers.get("x-signature", ""), expected):
            return answer("REJECTED", "bad signature", started, 401)
        try:
            signal = WebhookSignalIn.model_validate(json.loads(raw))
        except (ValueError, ValidationError) as exc:
            return answer("REJECTED", str(exc), started, 422)
        signal_id = str(uuid.uuid4())
        key = signal.id or hashlib.sha256(raw).hexdigest()
        fresh = await writer.stored((signal_id, key, signal.symbol, signal.side.value,
                                     raw.decode()))
        return answer("ACCEPTED" if fresh else "DUPLICATE", "stored", started, 200,
                      signal_id=signal_id if fresh else None)

    return app


def answer(status: str, message: str, started: float, http_status: int,
           **extra: Any) -> Response:
    body = {"status": status, "message": message,
            "processing_time_ms": round((time.perf_counter() - started) * 1000, 2), **extra}
    return Response(json.dumps(body, separators=(",", ":")), status_code=http_status,
                    media_type="application/json")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=8101)
    parser.add_argument("--database", required=True,
                        help="sqlite:///PATH or a postgresql:// URL (psycopg's form)")
    args = parser.parse_args()
    # The same uvicorn.run options as bench/webhook_baseline.py and tradeloop.cli.serve.
    uvicorn.run(make_app(args.database), host=args.host, port=args.port, proxy_headers=True,
                log_config=None)


if __name__ == "__main__":
    main()
