"""Group commit: concurrent callers share a write, each gets its own result or error."""

from __future__ import annotations

import asyncio
import contextvars
import threading
from collections.abc import Sequence

import pytest

from tradeloop.batching import GroupCommit

caller: contextvars.ContextVar[str | None] = contextvars.ContextVar("caller", default=None)


class Recorder:
    """A write that records its batches and can be held until released."""

    def __init__(self, fail_on: str | None = None):
        self.batches: list[list[str]] = []
        self.seen_callers: list[str | None] = []
        self.release = threading.Event()
        self.release.set()
        self.fail_on = fail_on

    def __call__(self, items: Sequence[str]) -> list[str]:
        self.release.wait(5)
        self.batches.append(list(items))
        self.seen_callers.append(caller.get())
        if self.fail_on in items:
            raise ValueError(f"cannot write {self.fail_on}")
        return [item.upper() for item in items]


async def submit_as(group: GroupCommit[str, str], name: str) -> str:
    caller.set(name)
    return await group.submit(name)


def test_a_lone_item_is_written_at_once() -> None:
    write = Recorder()
    assert asyncio.run(GroupCommit(write).submit("a")) == "A"
    assert write.batches == [["a"]]


def test_callers_arriving_during_a_write_share_the_next_one() -> None:
    write = Recorder()
    write.release.clear()  # the first write blocks until everyone has arrived

    async def scenario() -> list[str]:
        group: GroupCommit[str, str] = GroupCommit(write)
        first = asyncio.create_task(submit_as(group, "a"))
        await asyncio.sleep(0.05)  # "a" is being written
        rest = [asyncio.create_task(submit_as(group, name)) for name in "bcde"]
        await asyncio.sleep(0.05)
        write.release.set()
        return await asyncio.gather(first, *rest)

    assert asyncio.run(scenario()) == ["A", "B", "C", "D", "E"]
    assert write.batches == [["a"], ["b", "c", "d", "e"]]
    # The writer serves everyone: no caller's context variables leak into the writes.
    assert write.seen_callers == [None, None]


def test_batches_are_capped_in_arrival_order() -> None:
    write = Recorder()
    write.release.clear()

    async def scenario() -> list[str]:
        group: GroupCommit[str, str] = GroupCommit(write, max_batch=2)
        tasks = [asyncio.create_task(group.submit(name)) for name in "abcde"]
        await asyncio.sleep(0.05)
        write.release.set()
        return await asyncio.gather(*tasks)

    assert asyncio.run(scenario()) == ["A", "B", "C", "D", "E"]
    assert write.batches == [["a", "b"], ["c", "d"], ["e"]]


def test_a_failing_item_fails_alone() -> None:
    write = Recorder(fail_on="c")
    write.release.clear()

    async def scenario() -> list[str | BaseException]:
        group: GroupCommit[str, str] = GroupCommit(write)
        tasks = [asyncio.create_task(group.submit(name)) for name in "abcd"]
        await asyncio.sleep(0.05)
        write.release.set()
        return await asyncio.gather(*tasks, return_exceptions=True)

    results = asyncio.run(scenario())
    assert results[:2] + results[3:] == ["A", "B", "D"]
    assert isinstance(results[2], ValueError) and "cannot write c" in str(results[2])
    # The whole batch failed once, then each item was written on its own.
    assert write.batches[0] == ["a", "b", "c", "d"]
    assert sorted(write.batches[1:]) == [["a"], ["b"], ["c"], ["d"]]


def test_retries_after_a_failed_batch_run_side_by_side() -> None:
    """A batch that failed because the database stayed locked: each retry waits for the lock
    on its own, concurrently, so the last caller does not wait for every other timeout."""
    slow = threading.Event()
    running = threading.Semaphore(0)

    def write(items: Sequence[str]) -> list[str]:
        if len(items) > 1:
            raise TimeoutError("database is locked")
        running.release()
        slow.wait(5)  # every retry holds here until all of them have started
        return [item.upper() for item in items]

    async def scenario() -> list[str]:
        group: GroupCommit[str, str] = GroupCommit(write)
        blocker = asyncio.create_task(group.submit("first"))
        tasks = [asyncio.create_task(group.submit(name)) for name in "abc"]
        await asyncio.sleep(0)
        started = await asyncio.to_thread(lambda: all(running.acquire(timeout=5)
                                                      for _ in range(4)) and [])
        slow.set()
        assert started == []
        return await asyncio.gather(blocker, *tasks)

    assert asyncio.run(scenario()) == ["FIRST", "A", "B", "C"]


def test_a_caller_that_goes_away_does_not_break_the_batch() -> None:
    write = Recorder()
    write.release.clear()

    async def scenario() -> str:
        group: GroupCommit[str, str] = GroupCommit(write)
        gone = asyncio.create_task(group.submit("a"))
        stays = asyncio.create_task(group.submit("b"))
        await asyncio.sleep(0.05)
        gone.cancel()  # the client disconnected while its item was being written
        write.release.set()
        return await stays

    assert asyncio.run(scenario()) == "B"
    assert write.batches == [["a", "b"]]


def test_max_batch_must_be_positive() -> None:
    with pytest.raises(ValueError, match="at least 1"):
        GroupCommit(Recorder(), max_batch=0)


def test_the_retries_of_a_failed_batch_go_to_write_alone() -> None:
    """`write` may hold a connection for one batch at a time; the retries run side by side,
    so they go elsewhere, and a lone item that failed in `write` is retried there too."""
    batched = Recorder(fail_on="b")
    alone = Recorder()
    batched.release.clear()

    async def scenario() -> list[str]:
        group: GroupCommit[str, str] = GroupCommit(batched, write_alone=alone)
        tasks = [asyncio.create_task(group.submit(name)) for name in "ab"]
        await asyncio.sleep(0.05)
        batched.release.set()
        first = await asyncio.gather(*tasks)
        return [*first, await group.submit("b")]

    assert asyncio.run(scenario()) == ["A", "B", "B"]
    assert batched.batches == [["a", "b"], ["b"]]
    assert sorted(alone.batches) == [["a"], ["b"], ["b"]]
