"""CPU, statements and wall time per processed signal, in one process (no HTTP, no server).

    python bench/signal_processing.py [--signals 400] [--bars 300] [--mode trickle|batch]
        [--postgres] [--history 0] [--no-count] [--profile 25 [--sort tottime] [--dump F]]

What `bench/webhook.py --only e2e` measures from outside, broken down: signals like the
benchmark's (20 crypto pairs, LONG/SHORT alternating per symbol, so after the warm-up every
signal REVERSEs a position) are ingested through the real intake, then processed by
`flows.process_signal_queue` exactly as the task does. Only the drains are measured: CPU
(time.process_time: this process only, so the database server's work on PostgreSQL is not
in it), wall time, and the SQL statements the engine sent, by kind.

Modes: `trickle` ingests one signal and drains (what a steady 100/s looks like when
processing keeps up: one drain per webhook); `batch` ingests every signal, then drains once.
`--bars N` stores N 5-minute bars per symbol first (the e2e benchmark stores none, so its
contexts are "bars_missing"); `--history N` first stores N processed signals with their
closed positions, spread over the past week (the claim's and the book's query plans as the
tables grow). `--no-count` leaves out the statement counter, whose engine listeners cost
CPU of their own: use it for CPU figures. `--profile N` prints cProfile's top N functions
(CPU time) over the measured drains and the Python function calls per signal. SQLite is a
temporary file; PostgreSQL is BENCH_DATABASE_URL with `_processing` appended (created and
dropped).
"""

from __future__ import annotations

import argparse
import cProfile
import json
import os
import pstats
import shutil
import sys
import tempfile
import time
import uuid
from collections import Counter
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

DEFAULT_PG_URL = "postgresql+psycopg://postgres@127.0.0.1:5432/tradeloop_bench_webhook"
SYMBOLS = tuple(f"{base}{quote}" for base in ("BTC", "ETH", "SOL", "XRP", "ADA")
                for quote in ("USD", "USDT", "EUR", "GBP"))
WARM_UP = 200  # leaves every symbol SHORT, like bench/webhook.py's warm-up


def signal_raw(index: int, run: str) -> bytes:
    """bench/webhook.py's `index`-th signal body."""
    symbol = SYMBOLS[index % len(SYMBOLS)]
    direction = "LONG" if (index // len(SYMBOLS)) % 2 == 0 else "SHORT"
    return json.dumps({"id": f"{run}-{index}", "source": "bench", "symbol": symbol,
                       "direction": direction, "timeframe": "5m",
                       "timestamp": datetime.now(UTC).isoformat(), "price": 100 + index % 50,
                       "metadata": {"score": 80, "confidence": 0.8}}).encode()


class StatementCounter:
    """Counts the statements sent, by their first word (SELECT, INSERT, ...): through the
    engine (its events) and on the DBAPI connection (tradeloop.driver, wrapped)."""

    def __init__(self) -> None:
        self.kinds: Counter[str] = Counter()
        self.active = False

    def __call__(self, _conn: Any, _cursor: Any, statement: str, *_args: Any) -> None:
        kind = statement.split(None, 1)[0].upper()
        if kind != "BEGIN":  # counted by the begin event, which PostgreSQL's BEGIN skips
            self.count(kind)

    def attach(self, engine: Any) -> None:
        from sqlalchemy import event

        from tradeloop.driver import DriverConnection

        event.listen(engine, "before_cursor_execute", self)
        event.listen(engine, "begin", lambda _conn: self.count("BEGIN"))
        event.listen(engine, "commit", lambda _conn: self.count("COMMIT"))
        for name in ("rows", "execute", "execute_many"):
            self._wrap(DriverConnection, name)

    def _wrap(self, cls: type, name: str) -> None:
        method = getattr(cls, name)

        def counted(connection: Any, statement: Any, *args: Any, **kwargs: Any) -> Any:
            # A driver Statement wraps the Core statement whose kind is counted.
            self.count(type(getattr(statement, "core", statement)).__name__.upper())
            return method(connection, statement, *args, **kwargs)

        setattr(cls, name, counted)

    def count(self, kind: str) -> None:
        if self.active:
            self.kinds[kind] += 1


class Bench:
    def __init__(self, url: str, profile: bool, count_statements: bool = True) -> None:
        from tradeloop.db import Database
        from tradeloop.market_data.calendar import MarketCalendar
        from tradeloop.signals import flows

        self.db = Database.from_url(url)
        self.config = flows.ProcessingConfig(MarketCalendar())
        self.counter = StatementCounter()
        if count_statements:
            self.counter.attach(self.db.engine)
        # CPU time, not wall time: waits on the database (and on other processes) are not
        # what a drain costs this process.
        self.profiler = cProfile.Profile(time.process_time) if profile else None
        self.cpu = self.wall = 0.0
        self.owner = self._admin()

    def _admin(self) -> uuid.UUID:
        from tradeloop.accounts.models import User

        with self.db.unit_of_work() as session:
            user = User(email=f"bench-{uuid.uuid4().hex[:8]}@example.com", hashed_password="!",  # noqa: S106 - no login
                        is_admin=True)
            session.add(user)
            session.flush()
            return user.id

    def ingest(self, raw: bytes) -> None:
        from tradeloop.webhooks import service
        from tradeloop.webhooks.auth import EndpointAuth

        intake = service.Intake(self.owner, None, EndpointAuth("s", frozenset({"x_signature"})))
        with self.db.unit_of_work() as session:
            result = service.ingest_signal(session=session, intake=intake, raw_body=raw,
                                           parsed=service.parse_body(raw))
        assert result.status == "ACCEPTED", result

    def drain(self) -> int:
        """One measured drain, as the process_signal_queue task runs it."""
        from tradeloop.signals import flows

        self.counter.active = True
        if self.profiler:
            self.profiler.enable()
        cpu, wall = time.process_time(), time.perf_counter()
        done = flows.process_signal_queue(self.db, self.config)
        self.cpu += time.process_time() - cpu
        self.wall += time.perf_counter() - wall
        if self.profiler:
            self.profiler.disable()
        self.counter.active = False
        return done


def store_bars(bench: Bench, count: int) -> None:
    """`count` 5-minute random-walk bars per symbol, the last one ending now."""
    import numpy as np
    import pandas as pd

    from tradeloop.market_data import service as market_data
    from tradeloop.market_data.bar_files import ParsedBars

    end = pd.Timestamp.now(tz="UTC").floor("5min") - pd.Timedelta(minutes=5)
    rng = np.random.default_rng(7)
    for symbol in SYMBOLS:
        close = 100 * np.exp(np.cumsum(rng.normal(0, 0.002, count)))
        frame = pd.DataFrame({
            "ts": pd.date_range(end=end, periods=count, freq="5min"), "open": close,
            "high": close * 1.001, "low": close * 0.999, "close": close,
            "volume": np.full(count, 1000.0)})
        with bench.db.unit_of_work() as session:
            market_data.import_bars(session=session, symbol=symbol, timeframe="5m",
                                    parsed=ParsedBars("plain", frame, 0), source="bench")


def store_history(bench: Bench, count: int) -> None:
    """`count` processed signals received over the last week, each with the position it
    opened and closed, straight into the tables (what weeks of trading leave behind)."""
    from decimal import Decimal

    from sqlalchemy import insert

    from tradeloop.signals.models import Signal
    from tradeloop.trading.models import Position

    start = datetime.now(UTC) - timedelta(days=7)
    step = timedelta(days=7) / max(count, 1)
    for offset in range(0, count, 5_000):
        signals, positions = [], []
        for i in range(offset, min(count, offset + 5_000)):
            at, symbol, signal_id = start + step * i, SYMBOLS[i % len(SYMBOLS)], uuid.uuid4()
            signals.append({
                "id": signal_id, "user_id": bench.owner, "origin": "webhook",
                "source": "bench", "symbol": symbol, "direction": "LONG",
                "raw_direction": "LONG", "timeframe": "5m", "signal_time": at,
                "metadata_": {}, "idempotency_key": f"history-{i}", "body_hash": "x",
                "status": "processed", "received_at": at, "processed_at": at})
            positions.append({
                "id": uuid.uuid4(), "user_id": bench.owner, "symbol": symbol, "side": "LONG",
                "quantity": Decimal(10), "entry_price": Decimal(100), "opened_at": at,
                "status": "closed", "exit_price": Decimal(101), "closed_at": at + step,
                "realized_pnl": Decimal(10), "signal_id": signal_id})
        with bench.db.unit_of_work() as session:
            session.execute(insert(Signal), signals)
            session.execute(insert(Position), positions)


def run(bench: Bench, signals: int, mode: str) -> int:
    """Warm up (untimed), then ingest and drain `signals` signals; returns how many."""
    warm = f"warm-{uuid.uuid4().hex[:8]}"
    for index in range(WARM_UP):
        bench.ingest(signal_raw(index, warm))
    from tradeloop.signals import flows

    flows.process_signal_queue(bench.db, bench.config)
    measured = f"run-{uuid.uuid4().hex[:8]}"
    done = 0
    if mode == "batch":
        for index in range(signals):
            bench.ingest(signal_raw(index, measured))
        done = bench.drain()
    else:
        for index in range(signals):
            bench.ingest(signal_raw(index, measured))
            done += bench.drain()
    return done


@contextmanager
def database(postgres: bool) -> Iterator[str]:
    from tradeloop import migrate

    if postgres:
        url = os.environ.get("BENCH_DATABASE_URL", DEFAULT_PG_URL) + "_processing"
        migrate.recreate_postgres_database(url)
        try:
            migrate.upgrade(url)
            yield url
        finally:
            migrate.recreate_postgres_database(url, drop_only=True)
        return
    workdir = Path(tempfile.mkdtemp(prefix="tradeloop-bench-processing-"))
    try:
        url = f"sqlite:///{workdir / 'bench.db'}"
        migrate.upgrade(url)
        yield url
    finally:
        shutil.rmtree(workdir, ignore_errors=True)


def report(bench: Bench, done: int, args: argparse.Namespace, setup: Callable[[], str]) -> None:
    kinds = dict(sorted(bench.counter.kinds.items()))
    statements = sum(n for kind, n in kinds.items() if kind != "COMMIT")
    print(f"{setup()}: {done} signals processed ({args.mode}, {args.bars} bars per symbol, "
          f"{args.history} history rows)")
    print(f"  CPU {bench.cpu / done * 1000:.2f} ms/signal, wall {bench.wall / done * 1000:.2f}"
          f" ms/signal, statements {statements / done:.1f}/signal "
          f"({', '.join(f'{k} {n / done:.2f}' for k, n in kinds.items())})")
    if bench.profiler and args.profile:
        stats = pstats.Stats(bench.profiler)
        print(f"  Python function calls {stats.total_calls / done:,.0f}/signal (cProfile)")
        stats.sort_stats(args.sort).print_stats(args.profile)
        if args.dump:
            stats.dump_stats(args.dump)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--signals", type=int, default=400)
    parser.add_argument("--bars", type=int, default=0, help="5m bars per symbol")
    parser.add_argument("--history", type=int, default=0, help="processed signals already "
                        "in the table")
    parser.add_argument("--mode", choices=("trickle", "batch"), default="trickle")
    parser.add_argument("--postgres", action="store_true")
    parser.add_argument("--log-level", default="WARNING")
    parser.add_argument("--profile", type=int, default=0, help="print the top N functions")
    parser.add_argument("--no-count", action="store_true", help="no statement counting "
                        "(its engine event listeners cost CPU of their own)")
    parser.add_argument("--dump", help="also write the cProfile data to this file")
    parser.add_argument("--sort", default="cumulative", help="cProfile order: cumulative, "
                        "tottime, ...")
    args = parser.parse_args()
    from tradeloop.logs import configure_logging

    # WARNING by default: the figures are processing's own. `--log-level INFO` adds what the
    # server's default logging costs (run with stderr to /dev/null).
    configure_logging(args.log_level, "json")
    with database(args.postgres) as url:
        bench = Bench(url, profile=args.profile > 0, count_statements=not args.no_count)
        if args.bars:
            store_bars(bench, args.bars)
        if args.history:
            store_history(bench, args.history)
        done = run(bench, args.signals, args.mode)
        report(bench, done, args, lambda: "PostgreSQL" if args.postgres else "SQLite")
        bench.db.dispose()
    return 0


if __name__ == "__main__":
    sys.exit(main())
