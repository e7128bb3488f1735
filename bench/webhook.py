"""tradeloop's webhook intake under wrk, side by side with the bare framework ceiling.

    python bench/webhook.py [--quick] [--json PATH]

Measured in one run, on loopback (bench/README.md explains each row and holds the figures):
  a. a bare FastAPI + uvicorn endpoint that parses the same JSON and answers 200
     (bench/webhook_baseline.py, uvicorn run exactly as `tradeloop serve` runs it);
  b. `tradeloop serve`'s POST /webhook: x-signature HMAC, validation, dedup and the durable
     insert, on SQLite and on PostgreSQL (processing off, so only the intake is measured);
  1. requests/s with 16 connections, (b)/(a) (goal >= 70 %);
  2. single-connection p50 latency (goal <= 2 ms);
  3. end to end, signal -> decision -> position, p99 at a steady 100 signals/s with
     processing on (goal <= 50 ms), from the signals' received_at to their processed_at:
     processing in the server's own process (the embedded default, SQLite and PostgreSQL),
     and on PostgreSQL also in a `tradeloop worker` fed through Redis (the production path).

Every request carries a distinct signal (its own `id`), signed with HMAC-SHA256 by this
script into a pool file that bench/webhook.lua cycles through; answers that are not 2xx or
not ACCEPTED are counted, and the stored rows are counted afterwards. wrk is Debian's
package (installed with apt-get when missing). PostgreSQL is the local server of
BENCH_DATABASE_URL (default postgresql+psycopg://postgres@127.0.0.1:5432/tradeloop_bench_webhook);
this script creates its databases and drops them at the end. The worker's broker is
BENCH_REDIS_URL (default redis://127.0.0.1:6379/14), on a queue of its own.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import platform
import shutil
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import time
import uuid
from collections.abc import Iterator
from dataclasses import asdict, dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

BENCH_DIR = Path(__file__).resolve().parent
LUA_SCRIPT = BENCH_DIR / "webhook.lua"
DEFAULT_PG_URL = "postgresql+psycopg://postgres@127.0.0.1:5432/tradeloop_bench_webhook"
DEFAULT_REDIS_URL = "redis://127.0.0.1:6379/14"
SECRET = "bench-webhook-secret"  # noqa: S105 - a throwaway test secret
# Crypto pairs trade 24/7: market hours never turn a benchmark signal into a REJECT.
SYMBOLS = tuple(f"{base}{quote}" for base in ("BTC", "ETH", "SOL", "XRP", "ADA")
                for quote in ("USD", "USDT", "EUR", "GBP"))
CONNECTIONS = 16
WRK_THREADS = 1  # one wrk thread: the server keeps the other core of a 2-core machine
E2E_RATE = 100.0  # signals per second
FLOOR = "floor_"  # server names of (c), the floor: FLOOR + "sqlite", FLOOR + "postgresql"


@dataclass
class Config:
    quick: bool
    duration_s: int       # each wrk throughput run
    rounds: int           # alternating rounds of (a), (b) SQLite, (b) PostgreSQL
    single_s: int         # each single-connection run
    e2e_s: int            # the steady 100 signals/s run, per database

    @classmethod
    def make(cls, quick: bool) -> Config:
        return cls(True, 4, 1, 3, 5) if quick else cls(False, 10, 3, 10, 30)


@dataclass
class WrkResult:
    requests: int
    duration_us: int
    accepted: int
    not_accepted: int
    non_2xx: int
    exhausted: int
    errors: dict[str, int]
    latency_us: dict[str, float]

    @property
    def rps(self) -> float:
        return self.requests / (self.duration_us / 1e6)

    @property
    def failures(self) -> int:
        """Requests not answered 2xx ACCEPTED (socket errors included)."""
        return self.requests - self.accepted + sum(self.errors.values()) - self.errors["status"]


@dataclass
class Report:
    rows: list[dict[str, Any]] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)
    data: dict[str, Any] = field(default_factory=dict)

    def row(self, what: str, value: str, goal: str = "", met: bool | None = None) -> None:
        self.rows.append({"what": what, "value": value, "goal": goal, "met": met})
        print(f"  {what}: {value}" + (f"  (goal {goal}: {'met' if met else 'NOT met'})"
                                      if goal else ""), flush=True)


# --- tools -----------------------------------------------------------------------------------

def ensure_wrk() -> str:
    """wrk's path, installing Debian's package first when it is missing (needs root)."""
    found = shutil.which("wrk")
    if found:
        return found
    print("wrk not found: apt-get install -y wrk", flush=True)
    subprocess.run(["apt-get", "update", "-qq"], check=True)  # noqa: S607
    subprocess.run(["apt-get", "install", "-y", "-qq", "wrk"], check=True)  # noqa: S607
    found = shutil.which("wrk")
    if not found:
        raise RuntimeError("wrk is still missing after apt-get install")
    return found


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def percentile(values: list[float], q: float) -> float:
    """Nearest-rank percentile (q in 0..100) of a non-empty list."""
    ordered = sorted(values)
    rank = max(1, -(-len(ordered) * q // 100))
    return ordered[int(rank) - 1]


# --- signals ---------------------------------------------------------------------------------

def signal_body(index: int, run: str) -> dict[str, Any]:
    """The `index`-th signal of a run: its own id, symbols in turn, LONG/SHORT alternating per
    symbol so that processing enters and reverses (writes positions) every time."""
    symbol = SYMBOLS[index % len(SYMBOLS)]
    direction = "LONG" if (index // len(SYMBOLS)) % 2 == 0 else "SHORT"
    return {"id": f"{run}-{index}", "source": "bench", "symbol": symbol, "direction": direction,
            "timeframe": "5m", "timestamp": datetime.now(UTC).isoformat(),
            "price": 100 + index % 50, "metadata": {"score": 80, "confidence": 0.8}}


def signed(body: dict[str, Any]) -> tuple[bytes, str]:
    """The raw body and its `x-signature` header value."""
    from tradeloop.webhooks.auth import x_signature

    raw = json.dumps(body).encode()
    return raw, x_signature(SECRET, raw)


def write_pool(path: Path, count: int) -> str:
    """`count` distinct signed signals, one "signature<TAB>body" line each; returns the run
    prefix of their ids."""
    run = f"wrk-{uuid.uuid4().hex[:12]}"
    with path.open("w") as out:
        for index in range(count):
            raw, signature = signed(signal_body(index, run))
            out.write(f"{signature}\t{raw.decode()}\n")
    return run


# --- servers ---------------------------------------------------------------------------------

@dataclass
class Server:
    name: str
    port: int
    process: subprocess.Popen[bytes]
    log: Path

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"


def tradeloop_env(data_dir: Path, database_url: str | None, *, process_on_ingest: bool,
                  broker_url: str | None = None) -> dict[str, str]:
    """`tradeloop serve`'s environment. Without `process_on_ingest` the server is the web
    process alone: a Celery broker is configured (in-memory, and nothing is ever sent to it),
    so neither the per-signal drain nor the every-minute schedule runs in the process whose
    intake is measured. With `broker_url` (Redis), processing goes to Celery workers there, on
    a queue named after the data directory."""
    env = {**os.environ, "TRADELOOP_DATA_DIR": str(data_dir), "WEBHOOK_SECRET": SECRET,
           "LOAD_DEMO_ON_FIRST_START": "false",
           "SIGNAL_PROCESS_ON_INGEST": "true" if process_on_ingest else "false"}
    for name in ("DATABASE_URL", "CELERY_BROKER_URL", "CELERY_RESULT_BACKEND"):
        env.pop(name, None)
    if not process_on_ingest:
        env["CELERY_BROKER_URL"] = "memory://"
        env["CELERY_RESULT_BACKEND"] = "cache+memory://"
    if broker_url:
        env["CELERY_BROKER_URL"] = env["CELERY_RESULT_BACKEND"] = broker_url
        env["CELERY_QUEUE"] = f"bench-{data_dir.parent.name}-{data_dir.name}"
    if database_url:
        env["DATABASE_URL"] = database_url
    return env


def start_server(name: str, command: list[str], env: dict[str, str], workdir: Path,
                 port: int | None = None) -> Server:
    port = port or free_port()
    log = workdir / f"{name}-{port}.log"
    with log.open("ab") as out:
        process = subprocess.Popen([*command, "--port", str(port)], env=env,  # noqa: S603
                                   stdout=out, stderr=subprocess.STDOUT)
    server = Server(name, port, process, log)
    wait_until_listening(server)
    return server


def wait_until_listening(server: Server, timeout_s: float = 90) -> None:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if server.process.poll() is not None:
            raise RuntimeError(f"{server.name} exited: {server.log.read_text()[-2000:]}")
        with contextlib.suppress(OSError), socket.create_connection(("127.0.0.1", server.port), 1):
            return
        time.sleep(0.1)
    raise RuntimeError(f"{server.name} did not listen within {timeout_s} s")


def start_floor(workdir: Path, database: str) -> Server:
    """(c): bench/webhook_floor.py on `database` (sqlite:///PATH or a postgresql:// URL)."""
    name = FLOOR + database.split(":", 1)[0]
    return start_server(name, [sys.executable, str(BENCH_DIR / "webhook_floor.py"),
                               "--database", database], dict(os.environ), workdir)


def start_tradeloop(name: str, workdir: Path, database_url: str | None, *,
                    process_on_ingest: bool, port: int | None = None,
                    broker_url: str | None = None) -> Server:
    """`tradeloop serve`; with `broker_url` it sends processing to Celery workers there
    (start_worker) instead of running it in its own process."""
    return start_server(name, [sys.executable, "-m", "tradeloop.cli", "serve"],
                        tradeloop_env(workdir / f"data-{name}", database_url,
                                      process_on_ingest=process_on_ingest, broker_url=broker_url),
                        workdir, port)


def start_worker(name: str, workdir: Path, database_url: str, broker_url: str,
                 ) -> subprocess.Popen[bytes]:
    """`tradeloop worker` (its default concurrency, as docs/deployment.md runs it) for the
    server started with the same `name` and `broker_url`."""
    env = tradeloop_env(workdir / f"data-{name}", database_url, process_on_ingest=True,
                        broker_url=broker_url)
    with (workdir / f"{name}-worker.log").open("ab") as out:
        return subprocess.Popen(
            [sys.executable, "-m", "tradeloop.cli", "worker", "--loglevel", "WARNING"],
            env=env, stdout=out, stderr=subprocess.STDOUT)


def stop_server(server: Server, *, kill: bool = False) -> None:
    stop_process(server.process, kill=kill)


def stop_process(process: subprocess.Popen[bytes], *, kill: bool = False) -> None:
    if process.poll() is not None:
        return
    process.send_signal(signal.SIGKILL if kill else signal.SIGTERM)
    try:
        process.wait(timeout=15)
    except subprocess.TimeoutExpired:
        process.kill()
        process.wait()


def sqlite_url(workdir: Path, name: str) -> str:
    """The embedded database of `tradeloop serve` with the data dir of server `name`."""
    return f"sqlite:///{workdir / f'data-{name}' / 'tradeloop.db'}"


def reset_postgres(url: str, *, drop_only: bool = False) -> None:
    """Drop (and recreate, then migrate) the database named in `url`."""
    from tradeloop import migrate

    migrate.recreate_postgres_database(url, drop_only=drop_only)
    if not drop_only:
        migrate.upgrade(url)


def signal_counts(url: str, id_prefix: str) -> dict[str, int]:
    """Rows per status of the signals whose body id starts with `id_prefix`."""
    from sqlalchemy import create_engine, text

    engine = create_engine(url)
    try:
        with engine.connect() as connection:
            rows = connection.execute(text(
                "SELECT status, count(*) FROM signals WHERE idempotency_key LIKE :prefix "
                "GROUP BY status"), {"prefix": f"id:{id_prefix}-%"})
            return {status: int(count) for status, count in rows}
    finally:
        engine.dispose()


# --- wrk -------------------------------------------------------------------------------------

def run_wrk(wrk: str, server: Server, pool: Path, *, connections: int, duration_s: int,
            threads: int = WRK_THREADS) -> WrkResult:
    env = {**os.environ, "WEBHOOK_POOL": str(pool), "WEBHOOK_THREADS": str(threads)}
    completed = subprocess.run(  # noqa: S603
        [wrk, f"-t{threads}", f"-c{connections}", f"-d{duration_s}s", "--timeout", "10s",
         "-s", str(LUA_SCRIPT), f"{server.url}/webhook"],
        env=env, capture_output=True, text=True, check=True)
    for line in completed.stdout.splitlines():
        if line.startswith("WRK_RESULT "):
            return WrkResult(**json.loads(line.removeprefix("WRK_RESULT ")))
    raise RuntimeError(f"wrk printed no result:\n{completed.stdout}\n{completed.stderr}")


def pool_size(expected_rps: float, duration_s: int) -> int:
    """Enough distinct signals for a run at up to three times the expected rate."""
    return int(max(2_000, expected_rps * duration_s * 3))


def wrk_run(wrk: str, server: Server, workdir: Path, *, expected_rps: float, connections: int,
            duration_s: int, check_url: str | None) -> WrkResult:
    """One wrk run on fresh signals; for tradeloop, every ACCEPTED one must be stored."""
    pool = workdir / "pool.tsv"
    run = write_pool(pool, pool_size(expected_rps, duration_s))
    result = run_wrk(wrk, server, pool, connections=connections, duration_s=duration_s)
    if result.exhausted:
        raise RuntimeError(f"{server.name}: the pool of signals ran out ({result.exhausted} "
                           "reused); raise pool_size")
    if check_url is not None:
        # Requests still in flight when wrk stops are stored but their answers not counted.
        stored = sum(signal_counts(check_url, run).values())
        if not result.accepted <= stored <= result.accepted + connections:
            raise RuntimeError(f"{server.name}: {result.accepted} ACCEPTED but {stored} stored")
    return result


# --- the rows --------------------------------------------------------------------------------

def bench_throughput(cfg: Config, report: Report, wrk: str, workdir: Path,
                     servers: dict[str, Server], urls: dict[str, str | None]) -> None:
    """Rounds of (a), (b) SQLite, (b) PostgreSQL alternating, so all see the same load."""
    results: dict[str, list[WrkResult]] = {name: [] for name in servers}
    for name, server in servers.items():  # warm-up: imports, caches, connection pools
        wrk_run(wrk, server, workdir, expected_rps=5_000, connections=CONNECTIONS,
                duration_s=2, check_url=urls[name])
    for _ in range(cfg.rounds):
        for name, server in servers.items():
            expected = max((r.rps for r in results["baseline"]), default=5_000)
            results[name].append(wrk_run(wrk, server, workdir, expected_rps=expected,
                                         connections=CONNECTIONS, duration_s=cfg.duration_s,
                                         check_url=urls[name]))
    rps = {name: statistics.median(r.rps for r in runs) for name, runs in results.items()}
    report.data["throughput"] = {name: [asdict(r) for r in runs]
                                 for name, runs in results.items()}
    report.row("(a) bare FastAPI+uvicorn, requests/s", f"{rps['baseline']:,.0f}")
    for database in ("sqlite", "postgresql"):
        if database not in rps:
            continue
        floor = rps[FLOOR + database]
        report.row(f"(c) floor on {database} (bench/webhook_floor.py), requests/s",
                   f"{floor:,.0f} ({floor / rps['baseline']:.0%} of (a))")
        ratio = rps[database] / rps["baseline"]
        failures = sum(r.failures for r in results[database])
        report.row(f"(b) tradeloop /webhook on {database}, requests/s",
                   f"{rps[database]:,.0f} ({ratio:.0%} of (a), {rps[database] / floor:.0%} of "
                   f"(c)); {failures} not ACCEPTED",
                   ">= 70 % of (a), 0 not ACCEPTED", ratio >= 0.70 and failures == 0)
        p50 = statistics.median(r.latency_us["p50"] for r in results[database]) / 1000
        p99 = statistics.median(r.latency_us["p99"] for r in results[database]) / 1000
        report.notes.append(f"{database} under {CONNECTIONS} connections: p50 {p50:.2f} ms, "
                            f"p99 {p99:.2f} ms per request")


def bench_single(cfg: Config, report: Report, wrk: str, workdir: Path,
                 servers: dict[str, Server], urls: dict[str, str | None]) -> None:
    for name, server in servers.items():
        result = wrk_run(wrk, server, workdir, expected_rps=3_000, connections=1,
                         duration_s=cfg.single_s, check_url=urls[name])
        p50 = result.latency_us["p50"] / 1000
        report.data.setdefault("single", {})[name] = asdict(result)
        label = {"baseline": "(a) bare", FLOOR + "sqlite": "(c) floor on sqlite",
                 FLOOR + "postgresql": "(c) floor on postgresql"}.get(
                     name, f"(b) tradeloop on {name}")
        if not label.startswith("(b)"):
            report.row(f"{label}, 1 connection, p50 latency",
                       f"{p50:.2f} ms ({result.rps:,.0f} requests/s)")
        else:
            report.row(f"{label}, 1 connection, p50 latency",
                       f"{p50:.2f} ms (p99 {result.latency_us['p99'] / 1000:.2f} ms, "
                       f"{result.rps:,.0f} requests/s, {result.failures} not ACCEPTED)",
                       "<= 2 ms", p50 <= 2.0 and result.failures == 0)


def send_steadily(url: str, rate: float, seconds: float, run: str) -> list[float]:
    """POST `rate` signals a second for `seconds` on one keep-alive connection, each at its
    planned time (late ones go at once); returns the answers' latencies in seconds."""
    import http.client

    connection = http.client.HTTPConnection("127.0.0.1", int(url.rsplit(":", 1)[1]), timeout=30)
    latencies, started = [], time.perf_counter()
    for index in range(int(rate * seconds)):
        raw, signature = signed(signal_body(index, run))
        delay = started + index / rate - time.perf_counter()
        if delay > 0:
            time.sleep(delay)
        sent = time.perf_counter()
        connection.request("POST", "/webhook", body=raw, headers={
            "content-type": "application/json", "x-signature": signature})
        response = connection.getresponse()
        answer = response.read()
        latencies.append(time.perf_counter() - sent)
        if response.status != 200 or b'"status":"ACCEPTED"' not in answer:
            raise RuntimeError(f"signal {index}: {response.status} {answer[:300]!r}")
    connection.close()
    return latencies


def wait_processed(url: str, run: str, expected: int, timeout_s: float = 120) -> None:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        counts = signal_counts(url, run)
        if counts.get("queued", 0) + counts.get("processing", 0) == 0 \
                and sum(counts.values()) == expected:
            return
        time.sleep(0.2)
    raise RuntimeError(f"signals still unprocessed after {timeout_s} s: {counts}")


def end_to_end_latencies(url: str, run: str) -> dict[str, list[float]]:
    """Per signal of the run, in ms: received_at to its decision's created_at, and to its
    processed_at (stamped after the decision and the position rows, before the commit)."""
    from sqlalchemy import create_engine, select

    from tradeloop.signals.models import Signal
    from tradeloop.trading.models import Decision, Position

    engine = create_engine(url)
    try:
        with engine.connect() as connection:
            rows = connection.execute(
                select(Signal.received_at, Signal.processed_at, Decision.created_at,
                       Decision.action, Signal.status)
                .join(Decision, Decision.signal_id == Signal.id)
                .where(Signal.idempotency_key.like(f"id:{run}-%"))).all()
            positions = connection.execute(
                select(Position.id).join(Signal, Position.signal_id == Signal.id)
                .where(Signal.idempotency_key.like(f"id:{run}-%"))).all()
    finally:
        engine.dispose()

    def ms(later: datetime, earlier: datetime) -> float:
        return (as_utc(later) - as_utc(earlier)).total_seconds() * 1000

    return {"decision": [ms(r.created_at, r.received_at) for r in rows],
            "position": [ms(r.processed_at, r.received_at) for r in rows],
            "actions": [r.action for r in rows], "statuses": [r.status for r in rows],
            "positions": [len(positions)]}


def process_cpu_s(pid: int) -> float:
    """User + system CPU seconds a process has used so far (Linux /proc)."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def as_utc(moment: datetime) -> datetime:
    return moment.replace(tzinfo=UTC) if moment.tzinfo is None else moment


@dataclass(frozen=True)
class EndToEnd:
    """One end-to-end setup: its database, and its broker when a worker processes."""

    name: str
    database_url: str | None  # None: the server's embedded SQLite
    broker_url: str | None = None


def bench_end_to_end(cfg: Config, report: Report, workdir: Path,
                     setups: list[EndToEnd]) -> None:
    """A fresh server with processing on, per setup, at a steady 100 signals/s."""
    for setup in setups:
        if setup.database_url:
            reset_postgres(setup.database_url)
        name = "e2e-" + setup.name.replace(" + ", "-")  # its files and queue
        server = start_tradeloop(name, workdir, setup.database_url, process_on_ingest=True,
                                 broker_url=setup.broker_url)
        worker = start_worker(name, workdir, setup.database_url, setup.broker_url) \
            if setup.database_url and setup.broker_url else None
        url = setup.database_url or sqlite_url(workdir, name)
        try:
            # 200 warm-up signals leave every symbol SHORT: the run's first LONGs reverse.
            # Waiting for them also waits for a worker to be up.
            warm_up = f"warm-{uuid.uuid4().hex[:8]}"
            wait_processed(url, warm_up, len(send_steadily(server.url, E2E_RATE, 2.0, warm_up)))
            run = f"e2e-{uuid.uuid4().hex[:12]}"
            cpu_before = process_cpu_s(server.process.pid)
            answers = send_steadily(server.url, E2E_RATE, cfg.e2e_s, run)
            count = len(answers)
            wait_processed(url, run, count)
            server_cpu_ms = (process_cpu_s(server.process.pid) - cpu_before) * 1000 / count
            latencies = end_to_end_latencies(url, run)
        finally:
            stop_server(server)
            if worker is not None:
                stop_process(worker)
        report_end_to_end(report, setup, count, answers, latencies, server_cpu_ms)


def report_end_to_end(report: Report, setup: EndToEnd, count: int, answers: list[float],
                      latencies: dict[str, list[Any]], server_cpu_ms: float) -> None:
    if len(latencies["position"]) != count:
        raise RuntimeError(f"{count} sent, {len(latencies['position'])} decisions")
    p99 = percentile(latencies["position"], 99)
    actions = sorted(set(latencies["actions"]))
    report.data.setdefault("end_to_end", {})[setup.name] = {
        "signals": count, "answer_ms": [a * 1000 for a in answers],
        "server_cpu_ms_per_signal": server_cpu_ms, **latencies}
    report.row(f"end to end at {E2E_RATE:.0f} signals/s on {setup.name}: signal -> decision -> "
               "position p50 / p95 / p99",
               f"{percentile(latencies['position'], 50):.1f} / "
               f"{percentile(latencies['position'], 95):.1f} / {p99:.1f} ms "
               f"({count} signals, {latencies['positions'][0]} positions, "
               f"actions {', '.join(actions)})", "p99 <= 50 ms", p99 <= 50.0)
    where = "the web process: intake and Celery sends; processing is the worker's" \
        if setup.broker_url else \
        "intake + processing + logging; its Python work shares one core, under the GIL"
    report.notes.append(
        f"{setup.name} at {E2E_RATE:.0f}/s: answers p50 "
        f"{percentile(answers, 50) * 1000:.2f} ms, p99 {percentile(answers, 99) * 1000:.2f}"
        f" ms; signal -> decision p99 {percentile(latencies['decision'], 99):.1f} ms; "
        f"server CPU {server_cpu_ms:.1f} ms per signal ({where})")


def redis_reachable(url: str) -> bool:
    import redis

    try:
        return bool(redis.Redis.from_url(url, socket_connect_timeout=2).ping())
    except redis.RedisError:
        return False


@contextlib.contextmanager
def intake_servers(workdir: Path, pg_url: str | None) -> Iterator[
        tuple[dict[str, Server], dict[str, str | None]]]:
    """(a), (b) and (c) side by side: the baseline, and tradeloop and the floor on SQLite and
    on PostgreSQL."""
    from tradeloop import migrate

    servers: dict[str, Server] = {}
    urls: dict[str, str | None] = {"baseline": None, "sqlite": sqlite_url(workdir, "sqlite"),
                                   FLOOR + "sqlite": None, FLOOR + "postgresql": None}
    try:
        servers["baseline"] = start_server(
            "baseline", [sys.executable, str(BENCH_DIR / "webhook_baseline.py")],
            dict(os.environ), workdir)
        servers[FLOOR + "sqlite"] = start_floor(workdir, f"sqlite:///{workdir / 'floor.db'}")
        servers["sqlite"] = start_tradeloop("sqlite", workdir, None, process_on_ingest=False)
        if pg_url:
            floor_url = f"{pg_url}_floor"
            migrate.recreate_postgres_database(floor_url)  # empty: the floor makes its table
            servers[FLOOR + "postgresql"] = start_floor(
                workdir, floor_url.replace("postgresql+psycopg://", "postgresql://"))
            servers["postgresql"] = start_tradeloop("postgresql", workdir, pg_url,
                                                    process_on_ingest=False)
            urls["postgresql"] = pg_url
        yield servers, urls
    finally:
        for server in servers.values():
            stop_server(server)
        if pg_url:
            with contextlib.suppress(Exception):
                reset_postgres(f"{pg_url}_floor", drop_only=True)


def machine() -> str:
    load = os.getloadavg()
    return (f"{platform.processor() or platform.machine()}, {os.cpu_count()} CPUs, "
            f"Python {platform.python_version()}, load average {load[0]:.1f}")


def versions() -> str:
    from importlib.metadata import version

    names = ("fastapi", "uvicorn", "uvloop", "httptools", "starlette", "sqlalchemy", "psycopg")
    found = []
    for name in names:
        with contextlib.suppress(Exception):
            found.append(f"{name} {version(name)}")
    wrk = subprocess.run(["wrk", "-v"], capture_output=True, text=True, check=False)  # noqa: S607
    return ", ".join([*found, (wrk.stdout or wrk.stderr).split(" [")[0]])


def end_to_end_setups(report: Report, pg_url: str | None) -> list[EndToEnd]:
    setups = [EndToEnd("sqlite", None)]
    if pg_url:
        setups.append(EndToEnd("postgresql", pg_url))
        redis_url = os.environ.get("BENCH_REDIS_URL", DEFAULT_REDIS_URL)
        if redis_reachable(redis_url):
            setups.append(EndToEnd("postgresql + worker", pg_url, redis_url))
        else:
            report.notes.append(f"no Redis at {redis_url}: the worker row was left out")
    return setups


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--quick", action="store_true", help="short smoke run")
    parser.add_argument("--json", type=Path, help="also write every figure to this file")
    parser.add_argument("--no-postgres", action="store_true", help="SQLite only")
    parser.add_argument("--only", default="throughput,single,e2e",
                        help="parts to run, e.g. e2e or throughput,single")
    args = parser.parse_args()
    cfg = Config.make(args.quick)
    wrk = ensure_wrk()
    pg_url = None if args.no_postgres else os.environ.get("BENCH_DATABASE_URL", DEFAULT_PG_URL)
    e2e_pg_url = f"{pg_url}_e2e" if pg_url else None
    workdir = Path(tempfile.mkdtemp(prefix="tradeloop-bench-webhook-"))
    report, began = Report(), time.perf_counter()
    print(f"webhook bench ({'quick' if cfg.quick else 'full'}), {machine()}", flush=True)
    try:
        for url in (pg_url, e2e_pg_url):
            if url:
                reset_postgres(url)
        only = {part.strip() for part in args.only.split(",")}
        if only & {"throughput", "single"}:
            with intake_servers(workdir, pg_url) as (servers, urls):
                if "throughput" in only:
                    print(f"requests/s, {CONNECTIONS} connections ...", flush=True)
                    bench_throughput(cfg, report, wrk, workdir, servers, urls)
                if "single" in only:
                    print("single connection ...", flush=True)
                    bench_single(cfg, report, wrk, workdir, servers, urls)
        if "e2e" in only:
            print(f"end to end at {E2E_RATE:.0f} signals/s ...", flush=True)
            bench_end_to_end(cfg, report, workdir, end_to_end_setups(report, e2e_pg_url))
    finally:
        for url in (pg_url, e2e_pg_url):
            if url:
                with contextlib.suppress(Exception):
                    reset_postgres(url, drop_only=True)
        shutil.rmtree(workdir, ignore_errors=True)
    elapsed = time.perf_counter() - began
    print()
    for row in report.rows:
        verdict = "" if row["met"] is None else (" — met" if row["met"] else " — NOT MET")
        goal = f"  [goal {row['goal']}{verdict}]" if row["goal"] else ""
        print(f"{row['what']}: {row['value']}{goal}")
    for note in report.notes:
        print(f"- {note}")
    print(f"\n{'quick' if cfg.quick else 'full'} run, {elapsed:.0f} s; {machine()}; "
          f"{versions()}")
    if args.json:
        args.json.write_text(json.dumps({
            "quick": cfg.quick, "config": asdict(cfg), "elapsed_s": elapsed,
            "machine": machine(), "versions": versions(), "rows": report.rows,
            "notes": report.notes, "data": report.data}, indent=2, default=str))
    return 0 if all(row["met"] is not False for row in report.rows) else 1


if __name__ == "__main__":
    sys.exit(main())
