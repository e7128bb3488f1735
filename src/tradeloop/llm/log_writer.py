"""The background execution-log writer: callers hand a row over and return at once; one daemon
thread per Database writes the rows in batches.

    submit(db, logged, capacity=10_000)   # never blocks, never raises; False when dropped
    flush(db, timeout_s=5.0)              # wait until every row submitted so far is written
    shutdown(db, timeout_s=5.0)           # flush, then stop the thread (app lifespan, atexit)

A batch is one unit of work: each row is inserted and its listeners run in a savepoint, as in
the inline path (`executions.write_execution`). When the batch fails as a whole (a missing
table, a lost connection), each of its rows is retried alone so that one bad row cannot take
the others with it; a row that still fails is logged as `prompt_execution_log_failed`.

The queue is bounded: when the database falls behind, new rows are dropped with a
`prompt_execution_log_dropped` warning rather than holding callers up or growing memory.
A writer never shares a connection with the caller: do not use it with a Database bound to a
single connection (the test fixture's); use PROMPT_LOG_MODE=inline there.
"""

from __future__ import annotations

import atexit
import os
import threading
import time
from collections import deque
from dataclasses import dataclass

import structlog

from tradeloop.db import Database
from tradeloop.llm.executions import (
    LoggedExecution,
    log_write_failure,
    write_batch,
    write_execution,
)

log = structlog.get_logger(__name__)

DEFAULT_CAPACITY = 10_000
BATCH_SIZE = 200
# After the first row of a batch, the writer waits this long for more (unless a flush, a stop
# or a full batch ends the wait): one transaction per many rows costs the process far less CPU
# (and the caller far less GIL time) than one per row, and a log row may well arrive 50 ms late.
LINGER_S = 0.05
# What a process exit waits for pending rows at most (atexit runs after the app's shutdown).
EXIT_FLUSH_TIMEOUT_S = 5.0


@dataclass(frozen=True)
class WriterStats:
    """Counters since the writer started: rows accepted, written, failed and dropped; rows
    not yet written (`pending`), of which `queued` are still waiting in the queue."""

    submitted: int
    written: int
    failed: int
    dropped: int
    pending: int
    queued: int


class ExecutionLogWriter:
    """A bounded queue of execution rows and the daemon thread that writes them."""

    def __init__(self, db: Database, capacity: int = DEFAULT_CAPACITY,
                 batch_size: int = BATCH_SIZE, linger_s: float = LINGER_S):
        self.db = db
        self.capacity = capacity
        self.batch_size = batch_size
        self.linger_s = linger_s
        self._rows: deque[LoggedExecution] = deque()
        lock = threading.Lock()
        self._has_rows = threading.Condition(lock)  # the thread waits here for work
        self._progress = threading.Condition(lock)  # flush() waits here for the thread
        self._stopping = False
        self._flush_requests = 0  # flush() callers waiting: the writer stops lingering
        self._submitted = self._processed = self._written = self._failed = self._dropped = 0
        self._thread = threading.Thread(target=self._run, name="prompt-execution-log",
                                        daemon=True)
        self._thread.start()

    def submit(self, logged: LoggedExecution) -> bool:
        """Queue the row; False (and a warning) when the queue is full or the writer stopped."""
        with self._has_rows:
            accepted = not self._stopping and len(self._rows) < self.capacity
            if accepted:
                self._rows.append(logged)
                self._submitted += 1
                # Wake the writer only when it waits for a first row or a full batch: a
                # wake-up per row would cost the caller more than the append.
                if len(self._rows) in (1, self.batch_size):
                    self._has_rows.notify()
            else:
                self._dropped += 1
                dropped = self._dropped
        if not accepted:
            log.warning("prompt_execution_log_dropped", execution_id=str(logged.id),
                        dropped_total=dropped, capacity=self.capacity)
        return accepted

    def flush(self, timeout_s: float) -> bool:
        """Wait until the rows submitted before this call are written (or failed); False when
        `timeout_s` passed first."""
        with self._progress:
            target = self._submitted
            self._flush_requests += 1
            self._has_rows.notify()
            try:
                return self._progress.wait_for(lambda: self._processed >= target, timeout_s)
            finally:
                self._flush_requests -= 1

    def stop(self, timeout_s: float) -> bool:
        """Refuse new rows, write the queued ones and end the thread, waiting at most
        `timeout_s`; False (and a warning with the rows left) when time ran out."""
        with self._has_rows:
            self._stopping = True
            self._has_rows.notify()
        self._thread.join(timeout_s)
        if self._thread.is_alive():
            log.warning("prompt_execution_log_flush_timeout", pending=self.stats().pending,
                        timeout_s=timeout_s)
            return False
        return True

    def stats(self) -> WriterStats:
        with self._progress:
            return WriterStats(submitted=self._submitted, written=self._written,
                               failed=self._failed, dropped=self._dropped,
                               pending=self._submitted - self._processed,
                               queued=len(self._rows))

    def _run(self) -> None:
        while True:
            batch = self._next_batch()
            if not batch:
                return  # stopping and drained
            written = self._write(batch)
            with self._progress:
                self._processed += len(batch)
                self._written += written
                self._failed += len(batch) - written
                self._progress.notify_all()

    def _next_batch(self) -> list[LoggedExecution]:
        with self._has_rows:
            while not self._rows and not self._stopping:
                self._has_rows.wait()
            self._has_rows.wait_for(self._batch_ready, self.linger_s)
            count = min(len(self._rows), self.batch_size)
            return [self._rows.popleft() for _ in range(count)]

    def _batch_ready(self) -> bool:
        return (len(self._rows) >= self.batch_size or self._stopping
                or self._flush_requests > 0)

    def _write(self, batch: list[LoggedExecution]) -> int:
        """Rows written: the whole batch in one unit of work, else each row alone."""
        try:
            write_batch(self.db, batch)
            return len(batch)
        except Exception as exc:  # the thread must survive anything a write can raise
            if len(batch) == 1:
                log_write_failure(batch[0], exc)
                return 0
            log.warning("prompt_execution_log_batch_failed", rows=len(batch),
                        error=f"{type(exc).__name__}: {str(exc)[:300]}")
            return sum(write_execution(self.db, logged) for logged in batch)


# One writer per Database (compared by identity), created on the first submitted row.
_writers: dict[Database, ExecutionLogWriter] = {}
_writers_lock = threading.Lock()


def submit(db: Database, logged: LoggedExecution, capacity: int = DEFAULT_CAPACITY) -> bool:
    """Hand the row to the database's writer (started on first use); never blocks."""
    with _writers_lock:
        writer = _writers.get(db)
        if writer is None:
            writer = _writers[db] = ExecutionLogWriter(db, capacity)
        # Submitted under the registry lock: shutdown() cannot stop this writer in between.
        return writer.submit(logged)


def writer_for(db: Database) -> ExecutionLogWriter | None:
    with _writers_lock:
        return _writers.get(db)


def flush(db: Database, timeout_s: float = 5.0) -> bool:
    """Wait until every row submitted so far for `db` is written; True at once without a
    writer (inline mode, or nothing logged yet)."""
    writer = writer_for(db)
    return True if writer is None else writer.flush(timeout_s)


def shutdown(db: Database, timeout_s: float = 5.0) -> bool:
    """Stop the database's writer after writing its queued rows (bounded by `timeout_s`);
    a later row starts a new writer."""
    with _writers_lock:
        writer = _writers.pop(db, None)
    return True if writer is None else writer.stop(timeout_s)


def shutdown_all(timeout_s: float = EXIT_FLUSH_TIMEOUT_S) -> bool:
    """Stop every writer, sharing one deadline between them."""
    with _writers_lock:
        writers = list(_writers.values())
        _writers.clear()
    deadline = time.monotonic() + timeout_s
    return all([writer.stop(max(0.0, deadline - time.monotonic())) for writer in writers])


def _forget_writers_in_child() -> None:
    # A forked child (worker pools) inherits the registry but not the threads: start afresh.
    global _writers_lock
    _writers_lock = threading.Lock()
    _writers.clear()


atexit.register(shutdown_all)
if hasattr(os, "register_at_fork"):
    os.register_at_fork(after_in_child=_forget_writers_in_child)
