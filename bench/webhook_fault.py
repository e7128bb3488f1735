"""Fault injection for the webhook: kill -9 `tradeloop serve` under a load of signals.

    python bench/webhook_fault.py [--postgres] [--clients 8] [--kill-after 3] [--min-accepted 200]

1. starts `tradeloop serve` (processing on, as deployed: SQLite file, or PostgreSQL with
   --postgres on BENCH_DATABASE_URL's server, database `<that database>_fault`);
2. `--clients` threads post distinct signals (each its own `id`, HMAC-signed) as fast as the
   server answers;
3. once `--kill-after` seconds have passed and `--min-accepted` signals were ACCEPTED, sends
   SIGKILL to the server, mid-load and mid-processing;
4. restarts it on the same database, re-sends (same bytes) every signal whose answer the
   kill swallowed, as a sender retrying would, and waits for the queue to drain;
5. counts, from the database: signals answered ACCEPTED but missing (lost), ids stored more
   than once or processed more than once (duplicated), signals left unprocessed or with no
   decision. Prints PASS when all of these are 0, else FAIL (exit code 1).
"""

from __future__ import annotations

import argparse
import contextlib
import http.client
import itertools
import os
import shutil
import signal
import sys
import tempfile
import threading
import time
import uuid
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path

# This script's folder is on sys.path when run as a script: reuse the webhook bench's helpers.
from webhook import (
    DEFAULT_PG_URL,
    Server,
    reset_postgres,
    signal_body,
    signed,
    sqlite_url,
    start_tradeloop,
    stop_server,
)

FINAL = ("processed", "rejected", "failed")


@dataclass
class Load:
    """What the senders saw: answers by id, and the ids whose answer never came."""

    run: str
    bodies: dict[str, tuple[bytes, str]] = field(default_factory=dict)
    answers: dict[str, str] = field(default_factory=dict)
    unanswered: list[str] = field(default_factory=list)
    lock: threading.Lock = field(default_factory=threading.Lock)

    def record(self, signal_id: str, answer: str | None) -> None:
        with self.lock:
            if answer is None:
                self.unanswered.append(signal_id)
            else:
                self.answers[signal_id] = answer


def post(connection: http.client.HTTPConnection, raw: bytes, signature: str) -> str:
    """The answer's status (ACCEPTED, DUPLICATE, REJECTED or HTTP <code>)."""
    connection.request("POST", "/webhook", body=raw, headers={
        "content-type": "application/json", "x-signature": signature})
    response = connection.getresponse()
    body = response.read()
    if response.status != 200:
        return f"HTTP {response.status}"
    for status in ("ACCEPTED", "DUPLICATE", "REJECTED"):
        if f'"status":"{status}"'.encode() in body:
            return status
    return "unknown answer"


def sender(server: Server, load: Load, numbers: itertools.count[int],
           stop: threading.Event) -> None:
    """Post new signals until the server stops answering (the kill) or `stop` is set."""
    connection = http.client.HTTPConnection("127.0.0.1", server.port, timeout=30)
    while not stop.is_set():
        index = next(numbers)
        signal_id = f"{load.run}-{index}"
        raw, signature = signed(signal_body(index, load.run))
        with load.lock:
            load.bodies[signal_id] = (raw, signature)
        try:
            load.record(signal_id, post(connection, raw, signature))
        except (OSError, http.client.HTTPException):
            load.record(signal_id, None)  # in flight at the kill: outcome unknown to us
            return
    connection.close()


def retry_unanswered(server: Server, load: Load) -> Counter[str]:
    """Re-send the exact bytes of every signal whose answer the kill swallowed."""
    outcomes: Counter[str] = Counter()
    connection = http.client.HTTPConnection("127.0.0.1", server.port, timeout=30)
    for signal_id in load.unanswered:
        answer = post(connection, *load.bodies[signal_id])
        outcomes[answer] += 1
        load.answers[signal_id] = answer
    connection.close()
    return outcomes


def stored_state(url: str, run: str) -> tuple[dict[str, list[str]], Counter[str]]:
    """Per body id, the statuses of its stored rows; per signal row, its decision count."""
    from sqlalchemy import create_engine, text

    engine = create_engine(url)
    try:
        with engine.connect() as connection:
            rows = connection.execute(text(
                "SELECT idempotency_key, status FROM signals WHERE idempotency_key LIKE :p"),
                {"p": f"id:{run}-%"}).all()
            decisions = connection.execute(text(
                "SELECT s.idempotency_key, count(d.id) FROM signals s "
                "LEFT JOIN decisions d ON d.signal_id = s.id "
                "WHERE s.idempotency_key LIKE :p GROUP BY s.id, s.idempotency_key"),
                {"p": f"id:{run}-%"}).all()
    finally:
        engine.dispose()
    statuses: dict[str, list[str]] = {}
    for key, status in rows:
        statuses.setdefault(key.removeprefix("id:"), []).append(status)
    counts: Counter[str] = Counter()
    for key, count in decisions:
        counts[key.removeprefix("id:")] += int(count)
    return statuses, counts


def wait_drained(url: str, run: str, timeout_s: float) -> bool:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        statuses, _ = stored_state(url, run)
        if all(status in FINAL for row in statuses.values() for status in row):
            return True
        time.sleep(0.5)
    return False


def wait_for_load(load: Load, seconds: float, accepted: int, timeout_s: float = 120) -> None:
    """Until `seconds` have passed and `accepted` signals were answered ACCEPTED."""
    started = time.monotonic()
    while time.monotonic() - started < timeout_s:
        with load.lock:
            count = sum(1 for answer in load.answers.values() if answer == "ACCEPTED")
        if count >= accepted and time.monotonic() - started >= seconds:
            return
        time.sleep(0.05)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--postgres", action="store_true", help="run on PostgreSQL")
    parser.add_argument("--clients", type=int, default=8, help="concurrent senders")
    parser.add_argument("--kill-after", type=float, default=3.0,
                        help="seconds of load before the kill (at least)")
    parser.add_argument("--min-accepted", type=int, default=200,
                        help="ACCEPTED answers before the kill (at least; 120 s at most)")
    parser.add_argument("--drain-timeout", type=float, default=180.0)
    args = parser.parse_args()
    workdir = Path(tempfile.mkdtemp(prefix="tradeloop-fault-"))
    pg_url = None
    if args.postgres:
        base = os.environ.get("BENCH_DATABASE_URL", DEFAULT_PG_URL)
        # A database of its own next to BENCH_DATABASE_URL's, like webhook.py's `_e2e`: two
        # benchmarks on one server never share one.
        pg_url = f"{base}_fault"
        reset_postgres(pg_url)
    url = pg_url or sqlite_url(workdir, "fault")
    load = Load(run=f"fault-{uuid.uuid4().hex[:12]}")
    try:
        server = start_tradeloop("fault", workdir, pg_url, process_on_ingest=True)
        numbers, stop = itertools.count(), threading.Event()
        threads = [threading.Thread(target=sender, args=(server, load, numbers, stop))
                   for _ in range(args.clients)]
        for thread in threads:
            thread.start()
        wait_for_load(load, args.kill_after, args.min_accepted)
        server.process.send_signal(signal.SIGKILL)
        server.process.wait(timeout=10)
        stop.set()
        for thread in threads:
            thread.join(timeout=60)
        at_kill, _ = stored_state(url, load.run)
        unfinished = sum(1 for row in at_kill.values() for s in row if s not in FINAL)
        accepted_before = sum(1 for answer in load.answers.values() if answer == "ACCEPTED")
        print(f"killed (SIGKILL) under load from {args.clients} "
              f"clients: {accepted_before} ACCEPTED, {len(load.unanswered)} in flight "
              f"(no answer), {unfinished} stored but not yet processed", flush=True)

        server = start_tradeloop("fault", workdir, pg_url, process_on_ingest=True,
                                 port=server.port)
        try:
            retried = retry_unanswered(server, load)
            print(f"restarted; re-sent the {len(load.unanswered)} unanswered signals: "
                  f"{dict(retried) or 'none'}", flush=True)
            drained = wait_drained(url, load.run, args.drain_timeout)
        finally:
            stop_server(server)
        return report(load, url, drained, unfinished)
    finally:
        if pg_url:
            with contextlib.suppress(Exception):
                reset_postgres(pg_url, drop_only=True)
        shutil.rmtree(workdir, ignore_errors=True)


def report(load: Load, url: str, drained: bool, unfinished_at_kill: int) -> int:
    statuses, decisions = stored_state(url, load.run)
    accepted = [i for i, answer in load.answers.items() if answer == "ACCEPTED"]
    answered_duplicate = [i for i, answer in load.answers.items() if answer == "DUPLICATE"]
    refused = Counter(a for a in load.answers.values() if a not in ("ACCEPTED", "DUPLICATE"))
    lost = [i for i in accepted if i not in statuses]
    duplicated = [i for i, row in statuses.items() if len(row) > 1]
    processed_twice = [i for i, count in decisions.items() if count > 1]
    unprocessed = [i for i, row in statuses.items()
                   if any(s not in FINAL for s in row) or decisions[i] == 0]
    final = Counter(s for row in statuses.values() for s in row)
    checks = {
        "lost (answered ACCEPTED, not stored)": len(lost),
        "duplicated (an id stored more than once)": len(duplicated),
        "processed more than once (more than one decision)": len(processed_twice),
        "unprocessed after restart (queued/processing, or no decision)": len(unprocessed),
        "answers other than ACCEPTED/DUPLICATE": sum(refused.values()),
    }
    print(f"\nsignals sent: {len(load.bodies)}; answered ACCEPTED: {len(accepted)}, DUPLICATE "
          f"(retries of signals stored before the kill): {len(answered_duplicate)}; stored: "
          f"{len(statuses)} ({dict(final)}); claimed or queued at the kill: "
          f"{unfinished_at_kill}; queue drained after restart: {drained}")
    for what, count in checks.items():
        print(f"  {count:6d}  {what}")
    if refused:
        print(f"  answers: {dict(refused)}")
    passed = drained and not any(checks.values()) and len(statuses) == len(load.bodies)
    print("PASS: nothing lost, nothing duplicated, everything processed exactly once" if passed
          else "FAIL")
    return 0 if passed else 1


if __name__ == "__main__":
    sys.exit(main())
