"""Group commit: requests that arrive while a batch is being written share the next one.

A durable write per request costs a transaction (and on PostgreSQL a WAL flush) each; under
concurrent load the callers waiting behind a running transaction are written together in
the next one, so the cost per request falls as load rises while a lone request still goes
out at once (no timer, no added latency). Each caller gets its own result only after the
shared transaction committed.
"""

from __future__ import annotations

import asyncio
import contextvars
from collections.abc import Callable, Sequence
from typing import Generic, TypeVar

import anyio.to_thread

Item = TypeVar("Item")
Result = TypeVar("Result")

DEFAULT_MAX_BATCH = 128


class GroupCommit(Generic[Item, Result]):
    """Feeds items, in arrival order, to `write` (blocking; run in a worker thread).

    `write(items)` does one unit of work and returns one result per item; batches go to it
    one at a time. When it raises, each item is retried in a write of its own, so a request
    that breaks the transaction fails alone instead of taking its neighbours with it. The
    retries go to `write_alone` (default: `write`) side by side: one after the other, a
    database that stays locked would make the last caller wait for every other retry's
    timeout in turn. So `write` may keep state for one caller at a time (a pinned
    connection); `write_alone` must not.
    """

    def __init__(self, write: Callable[[Sequence[Item]], Sequence[Result]], *,
                 write_alone: Callable[[Sequence[Item]], Sequence[Result]] | None = None,
                 max_batch: int = DEFAULT_MAX_BATCH):
        if max_batch < 1:
            raise ValueError("max_batch must be at least 1")
        self._write = write
        self._write_alone = write_alone or write
        self.max_batch = max_batch
        self._waiting: list[tuple[Item, asyncio.Future[Result]]] = []
        self._writing = False
        self._loop: asyncio.AbstractEventLoop | None = None
        self._writer: asyncio.Task[None] | None = None  # held: the loop keeps weak refs only

    async def submit(self, item: Item) -> Result:
        """Queue `item`; returns its result once the batch holding it has committed."""
        loop = asyncio.get_running_loop()
        if loop is not self._loop:
            # A new event loop (a restarted server, a new test client): nothing of the old
            # one's state can be awaited from here.
            self._loop, self._waiting, self._writing = loop, [], False
        future: asyncio.Future[Result] = loop.create_future()
        self._waiting.append((item, future))
        if not self._writing:
            self._writing = True
            # An empty context: the writer serves every caller, so it must not carry the
            # first caller's context variables (its correlation id) into everyone's logs.
            self._writer = loop.create_task(self._write_all(), context=contextvars.Context())
        return await future

    async def _write_all(self) -> None:
        batch: list[tuple[Item, asyncio.Future[Result]]] = []
        try:
            while self._waiting:
                batch = self._waiting[:self.max_batch]
                del self._waiting[:self.max_batch]
                await self._write_batch(batch)
                batch = []
        except BaseException as exc:  # cancelled at shutdown: no caller may wait forever
            for _, future in [*batch, *self._waiting]:
                _settle(future, exception=exc)
            self._waiting = []
            raise
        finally:
            self._writing = False

    async def _write_batch(self, batch: list[tuple[Item, asyncio.Future[Result]]], *,
                           retry: bool = False) -> None:
        write = self._write_alone if retry else self._write
        try:
            results = await anyio.to_thread.run_sync(write, [item for item, _ in batch])
        except Exception as exc:
            # A lone item is retried only where the retry would run differently.
            if retry or (len(batch) == 1 and write is self._write_alone):
                _settle(batch[0][1], exception=exc)
                return
            await asyncio.gather(*(self._write_batch([entry], retry=True) for entry in batch))
            return
        if len(results) != len(batch):
            error = RuntimeError(f"write returned {len(results)} results for {len(batch)} items")
            for _, future in batch:
                _settle(future, exception=error)
            return
        for (_, future), result in zip(batch, results, strict=True):
            _settle(future, result=result)


def _settle(future: asyncio.Future[Result], *, result: Result | None = None,
            exception: BaseException | None = None) -> None:
    # A caller that went away (client disconnected) cancelled its future; its item was
    # still written, there is just nobody left to tell.
    if future.done():
        return
    if isinstance(exception, asyncio.CancelledError):
        future.cancel()
    elif exception is not None:
        future.set_exception(exception)
    else:
        future.set_result(result)  # type: ignore[arg-type]
