"""CPU time per webhook, in one process and without HTTP: (a) the bare endpoint, (c) the floor
and (b) tradeloop's /webhook, called as ASGI apps by concurrent in-process callers.

    python bench/webhook_cpu.py [--rounds 5] [--requests 3000] [--postgres]

The same apps as bench/webhook.py (bench/webhook_baseline.py, bench/webhook_floor.py and
tradeloop's app on its own database, default logging to /dev/null), without uvicorn, wrk or
sockets: what is left is the apps' own work, measured as this process's CPU time
(`time.process_time`), so another process's load moves it less than it moves requests/s on
a shared 2-core machine. Each (app, callers) pair runs `--rounds` times, alternating; the
table shows the minimum and the median of CPU µs per request, and each app's cost as a
multiple of (a)'s. 16 callers: batches form as under wrk's 16 connections; 1 caller: a lone
webhook, as in the single-connection latency row.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import statistics
import sys
import tempfile
import time
import uuid
from collections.abc import Awaitable, Callable, MutableMapping
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

BENCH_DIR = Path(__file__).resolve().parent
SECRET = "bench-webhook-secret"  # noqa: S105 - the same throwaway secret as bench/webhook.py
DEFAULT_PG_URL = "postgresql+psycopg://postgres@127.0.0.1:5432/tradeloop_bench_webhook_cpu"
App = Callable[[MutableMapping[str, Any], Callable[[], Awaitable[Any]],
                Callable[[Any], Awaitable[None]]], Awaitable[None]]


def signed_request(index: int, run: str) -> tuple[bytes, str]:
    from tradeloop.webhooks.auth import x_signature

    raw = json.dumps({"id": f"{run}-{index}", "source": "bench", "symbol": "BTCUSD",
                      "direction": "LONG" if index % 2 else "SHORT", "timeframe": "5m",
                      "timestamp": datetime.now(UTC).isoformat(), "price": 100 + index % 50,
                      "metadata": {"score": 80, "confidence": 0.8}}).encode()
    return raw, x_signature(SECRET, raw)


async def post(app: App, raw: bytes, signature: str) -> None:
    scope = {"type": "http", "asgi": {"version": "3.0"}, "http_version": "1.1",
             "method": "POST", "scheme": "http", "path": "/webhook", "raw_path": b"/webhook",
             "query_string": b"", "root_path": "", "client": ("127.0.0.1", 50000),
             "server": ("127.0.0.1", 8000), "state": {},
             "headers": [(b"host", b"127.0.0.1"), (b"content-type", b"application/json"),
                         (b"content-length", str(len(raw)).encode()),
                         (b"x-signature", signature.encode())]}
    delivered = False
    sent: list[dict[str, Any]] = []

    async def receive() -> dict[str, Any]:
        nonlocal delivered
        if delivered:
            await asyncio.Event().wait()  # the client never disconnects
        delivered = True
        return {"type": "http.request", "body": raw, "more_body": False}

    async def send(message: dict[str, Any]) -> None:
        sent.append(message)

    await app(scope, receive, send)
    if sent[0]["status"] != 200 or b'"status":"ACCEPTED"' not in sent[1]["body"]:
        raise RuntimeError(f"not ACCEPTED: {sent}")


async def cpu_per_request(app: App, callers: int, requests: int) -> float:
    """CPU µs per request for `requests` distinct signals posted by `callers` at a time."""
    run = uuid.uuid4().hex[:12]
    pending = [signed_request(index, run) for index in range(requests)]

    async def caller() -> None:
        while pending:
            await post(app, *pending.pop())

    started = time.process_time()
    await asyncio.gather(*(caller() for _ in range(callers)))
    return (time.process_time() - started) / requests * 1e6


def tradeloop_app(database_url: str) -> App:
    os.environ.update(WEBHOOK_SECRET=SECRET, SIGNAL_PROCESS_ON_INGEST="false",
                      LOAD_DEMO_ON_FIRST_START="false", CELERY_BROKER_URL="memory://",
                      CELERY_RESULT_BACKEND="cache+memory://", DATABASE_URL=database_url)
    from tradeloop import migrate
    from tradeloop.accounts import service as accounts
    from tradeloop.app import create_app
    from tradeloop.db import Database
    from tradeloop.logs import configure_logging
    from tradeloop.settings import Settings
    from tradeloop.webhooks.writer import WebhookWriter

    migrate.upgrade(database_url)
    db = Database.from_url(database_url)
    with db.unit_of_work() as session:
        accounts.create_user(session=session, email="bench@example.com",
                             password="bench-password-1", is_admin=True)  # noqa: S106
    settings = Settings()
    app = create_app(settings, db)
    # What the app's lifespan does at startup: these ASGI calls run without one.
    app.state.webhook_writer = WebhookWriter(db, settings)
    # Default logging (INFO, JSON), written where it costs no terminal time.
    configure_logging("INFO", "json", open(os.devnull, "w"))  # noqa: SIM115 - for the process
    return app


def apps(workdir: Path, pg_url: str | None) -> dict[str, App]:
    sys.path.insert(0, str(BENCH_DIR))
    import webhook_baseline
    import webhook_floor

    if pg_url is None:
        return {"(a) bare": webhook_baseline.app,
                "(c) floor, sqlite": webhook_floor.make_app(f"sqlite:///{workdir / 'floor.db'}"),
                "(b) tradeloop, sqlite": tradeloop_app(f"sqlite:///{workdir / 'tradeloop.db'}")}
    from tradeloop import migrate

    migrate.recreate_postgres_database(pg_url)
    migrate.recreate_postgres_database(f"{pg_url}_floor")  # empty: the floor makes its table
    floor_url = f"{pg_url}_floor".replace("postgresql+psycopg://", "postgresql://")
    return {"(a) bare": webhook_baseline.app,
            "(c) floor, postgresql": webhook_floor.make_app(floor_url),
            "(b) tradeloop, postgresql": tradeloop_app(pg_url)}


async def measure(targets: dict[str, App], rounds: int, requests: int,
                  ) -> dict[tuple[str, int], list[float]]:
    figures: dict[tuple[str, int], list[float]] = {}
    for app in targets.values():  # warm-up: imports, caches, connections
        await cpu_per_request(app, 16, 300)
    for _ in range(rounds):
        for callers in (16, 1):
            for name, app in targets.items():
                count = requests if callers > 1 else requests // 3
                figures.setdefault((name, callers), []).append(
                    await cpu_per_request(app, callers, count))
    return figures


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--requests", type=int, default=3000)
    parser.add_argument("--postgres", action="store_true",
                        help="PostgreSQL instead of SQLite (BENCH_DATABASE_URL)")
    args = parser.parse_args()
    import uvloop

    pg_url = os.environ.get("BENCH_DATABASE_URL", DEFAULT_PG_URL) if args.postgres else None
    workdir = Path(tempfile.mkdtemp(prefix="tradeloop-bench-webhook-cpu-"))
    try:
        targets = apps(workdir, pg_url)
        figures = uvloop.run(measure(targets, args.rounds, args.requests))
    finally:
        if pg_url:
            from tradeloop import migrate

            for url in (pg_url, f"{pg_url}_floor"):
                migrate.recreate_postgres_database(url, drop_only=True)
    print(f"CPU µs per webhook, in process (min / median of {args.rounds} rounds; "
          f"load average {os.getloadavg()[0]:.1f})")
    print(f"{'app':28} {'callers':>7} {'min':>7} {'median':>7} {'x (a)':>6}")
    for (name, callers), values in figures.items():
        bare = min(figures[("(a) bare", callers)])
        print(f"{name:28} {callers:>7} {min(values):>7.0f} {statistics.median(values):>7.0f} "
              f"{min(values) / bare:>6.2f}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
