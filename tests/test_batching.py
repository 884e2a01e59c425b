"""Batcher: size, idle and time flushes; each caller gets its own result; failures stay where they belong."""

from __future__ import annotations

import asyncio
from collections.abc import Callable, Sequence

import pytest

from meshauth.batching import Batcher, BatchSizeError, DeadlinePassed


class FakeTimer:
    """Records ``call_later`` requests; tests fire them by hand instead of sleeping."""

    def __init__(self) -> None:
        self.calls: list[tuple[float, Callable[[], None], list[bool]]] = []

    def __call__(self, delay: float, fn: Callable[[], None]) -> FakeTimer.Handle:
        cancelled = [False]
        self.calls.append((delay, fn, cancelled))
        return FakeTimer.Handle(cancelled)

    class Handle:
        def __init__(self, cancelled: list[bool]) -> None:
            self._c = cancelled

        def cancel(self) -> None:
            self._c[0] = True

    def fire(self) -> None:
        for _delay, fn, cancelled in self.calls:
            if not cancelled[0]:
                cancelled[0] = True
                fn()


async def settle() -> None:
    """Let scheduled callbacks and new tasks run (a few loop turns, no wall-clock wait)."""
    for _ in range(5):
        await asyncio.sleep(0)


class Recorder:
    def __init__(self) -> None:
        self.batches: list[list[int]] = []
        self.gate: asyncio.Event | None = None

    async def __call__(self, items: list[int]) -> Sequence[int | BaseException]:
        self.batches.append(list(items))
        if self.gate is not None:
            await self.gate.wait()
        return [i * 10 for i in items]


async def test_lone_call_is_flushed_without_waiting() -> None:
    """Idle flush: one call with nothing in flight goes out on the next loop turn, not after max_wait."""
    rec = Recorder()
    timer = FakeTimer()
    b: Batcher[int, int] = Batcher(rec, max_batch=64, max_wait=10.0, call_later=timer)
    assert await b.submit(1) == 10
    assert rec.batches == [[1]]
    assert timer.calls == []


async def test_concurrent_calls_share_one_batch_and_get_their_own_results() -> None:
    """Calls made in the same loop turn go out as one batch; each caller gets its own item's result."""
    rec = Recorder()
    b: Batcher[int, int] = Batcher(rec, max_batch=64, max_wait=10.0)
    results = await asyncio.gather(*(b.submit(i) for i in range(20)))
    assert results == [i * 10 for i in range(20)]
    assert rec.batches == [list(range(20))]


async def test_size_flush_splits_at_max_batch() -> None:
    """A batch never holds more than max_batch items."""
    rec = Recorder()
    b: Batcher[int, int] = Batcher(rec, max_batch=8, max_wait=10.0)
    results = await asyncio.gather(*(b.submit(i) for i in range(20)))
    assert results == [i * 10 for i in range(20)]
    assert [len(x) for x in rec.batches] == [8, 8, 4]


async def test_busy_batcher_waits_max_wait_for_more_items() -> None:
    """Time flush: while a batch is in flight, new items wait for the timer (or the batch's return)."""
    rec = Recorder()
    rec.gate = asyncio.Event()
    timer = FakeTimer()
    b: Batcher[int, int] = Batcher(rec, max_batch=64, max_wait=0.005, call_later=timer)
    first = asyncio.ensure_future(b.submit(1))
    await settle()
    assert rec.batches == [[1]] and b.in_flight == 1
    later = [asyncio.ensure_future(b.submit(i)) for i in (2, 3)]
    await settle()
    assert b.pending == 2 and [d for d, _, _ in timer.calls] == [0.005]
    timer.fire()
    await settle()
    assert rec.batches == [[1], [2, 3]]
    rec.gate.set()
    assert await first == 10
    assert [await f for f in later] == [20, 30]


async def test_items_queued_behind_a_batch_go_out_when_it_returns() -> None:
    """When the in-flight batch returns, queued items are flushed at once rather than after the timer."""
    rec = Recorder()
    rec.gate = asyncio.Event()
    timer = FakeTimer()
    b: Batcher[int, int] = Batcher(rec, max_batch=64, max_wait=60.0, call_later=timer)
    first = asyncio.ensure_future(b.submit(1))
    await settle()
    second = asyncio.ensure_future(b.submit(2))
    await settle()
    rec.gate.set()
    assert (await first, await second) == (10, 20)
    assert rec.batches == [[1], [2]]


async def test_with_a_linger_items_queued_behind_a_batch_wait_for_more_then_go_together() -> None:
    """linger: when the batch in flight returns, the items queued behind it wait (the timer is moved
    to the first one's linger end, the max_wait timer dropped); items coming meanwhile join them."""
    rec = Recorder()
    rec.gate = asyncio.Event()
    timer = FakeTimer()
    b: Batcher[int, int] = Batcher(rec, max_batch=64, max_wait=60.0, linger=30.0, call_later=timer)
    first = asyncio.ensure_future(b.submit(1))
    await settle()
    second = asyncio.ensure_future(b.submit(2))
    await settle()
    rec.gate.set()
    assert await first == 10
    await settle()
    assert rec.batches == [[1]] and b.pending == 1
    live = [(d, c) for d, _, c in timer.calls if not c[0]]
    assert len(live) == 1 and 0 < live[0][0] <= 30.0  # the linger's end, not max_wait's
    third = asyncio.ensure_future(b.submit(3))
    await settle()
    assert rec.batches == [[1]]
    timer.fire()
    assert (await second, await third) == (20, 30)
    assert rec.batches == [[1], [2, 3]]


async def test_a_linger_never_holds_a_full_batch_or_a_lone_call() -> None:
    """max_batch items go at once while lingering; with nothing in flight a call waits for nothing."""
    rec = Recorder()
    rec.gate = asyncio.Event()
    timer = FakeTimer()
    b: Batcher[int, int] = Batcher(rec, max_batch=3, max_wait=60.0, linger=30.0, call_later=timer)
    first = asyncio.ensure_future(b.submit(0))
    await settle()
    queued = [asyncio.ensure_future(b.submit(i)) for i in (1, 2)]
    await settle()
    rec.gate.set()
    await first
    await settle()
    assert rec.batches == [[0]]  # 1 and 2 linger
    queued.append(asyncio.ensure_future(b.submit(3)))
    await settle()
    assert rec.batches == [[0], [1, 2, 3]]  # full: out at once
    assert [await f for f in queued] == [10, 20, 30]
    assert await b.submit(4) == 40  # idle: no timer involved
    assert rec.batches[-1] == [4]


@pytest.mark.parametrize("linger", [-1.0, float("nan"), 0.5])
def test_a_bad_linger_is_refused(linger: float) -> None:
    """linger must be within 0..max_wait."""

    async def flush(items: list[int]) -> Sequence[int | BaseException]:
        return items

    with pytest.raises(ValueError, match="linger"):
        Batcher(flush, max_batch=8, max_wait=0.1, linger=linger)


async def test_failed_item_fails_only_its_caller() -> None:
    """An exception in one result slot reaches that caller; the others get their values."""

    async def flush(items: list[int]) -> Sequence[int | BaseException]:
        return [ValueError(f"bad {i}") if i == 2 else i for i in items]

    b: Batcher[int, int] = Batcher(flush)
    results = await asyncio.gather(*(b.submit(i) for i in range(4)), return_exceptions=True)
    assert results[:2] == [0, 1] and results[3] == 3
    assert isinstance(results[2], ValueError) and str(results[2]) == "bad 2"


async def test_flush_exception_fails_every_caller() -> None:
    """When flush raises, every caller of that batch gets the exception (fail closed)."""

    async def flush(items: list[int]) -> Sequence[int | BaseException]:
        raise ConnectionError("down")

    b: Batcher[int, int] = Batcher(flush)
    results = await asyncio.gather(*(b.submit(i) for i in range(5)), return_exceptions=True)
    assert all(isinstance(r, ConnectionError) for r in results)


async def test_wrong_result_count_fails_every_caller() -> None:
    """A flush that answers too few results fails the whole batch instead of mis-assigning answers."""

    async def flush(items: list[int]) -> Sequence[int | BaseException]:
        return items[:-1]

    b: Batcher[int, int] = Batcher(flush)
    results = await asyncio.gather(*(b.submit(i) for i in range(3)), return_exceptions=True)
    assert all(isinstance(r, BatchSizeError) for r in results)


async def test_cancelled_caller_leaves_the_others_untouched() -> None:
    """A caller that stops waiting does not disturb the batch or the other callers."""
    rec = Recorder()
    rec.gate = asyncio.Event()
    b: Batcher[int, int] = Batcher(rec)
    a = asyncio.ensure_future(b.submit(1))
    c = asyncio.ensure_future(b.submit(2))
    await settle()
    a.cancel()
    rec.gate.set()
    assert await c == 20
    assert a.cancelled()


@pytest.mark.parametrize(("max_batch", "max_wait"), [(0, 0.001), (1, -1.0), (1, float("nan"))])
def test_bad_settings_are_refused(max_batch: int, max_wait: float) -> None:
    """max_batch below 1 or a negative/NaN max_wait is a ValueError at construction."""

    async def flush(items: list[int]) -> Sequence[int | BaseException]:
        return items

    with pytest.raises(ValueError, match="must"):
        Batcher(flush, max_batch=max_batch, max_wait=max_wait)


async def test_enqueue_fails_an_item_at_its_deadline_and_leaves_the_others_their_results() -> None:
    """``enqueue`` with a deadline: the item whose deadline passes while its batch is out fails with
    DeadlinePassed then; an item with a later deadline in the same batch gets its result."""
    rec = Recorder()
    rec.gate = asyncio.Event()
    b: Batcher[int, int] = Batcher(rec, max_batch=64, max_wait=10.0)
    loop = asyncio.get_running_loop()
    short = b.enqueue(1, loop.time() + 0.02)
    long = b.enqueue(2, loop.time() + 30.0)
    plain = b.enqueue(3)
    with pytest.raises(DeadlinePassed):
        await short
    assert not long.done() and not plain.done()
    rec.gate.set()
    assert (await long, await plain) == (20, 30)
    assert rec.batches == [[1, 2, 3]]


async def test_enqueue_deadline_runs_while_the_item_waits_for_its_batch() -> None:
    """A deadline shorter than the time trigger: the item fails at its deadline while still pending
    (behind a batch in flight), not when its batch goes out."""
    rec = Recorder()
    rec.gate = asyncio.Event()
    timer = FakeTimer()
    b: Batcher[int, int] = Batcher(rec, max_batch=64, max_wait=10.0, call_later=timer)
    first = b.enqueue(1)
    await settle()  # in flight, held
    loop = asyncio.get_running_loop()
    started = loop.time()
    queued = b.enqueue(2, started + 0.02)
    with pytest.raises(DeadlinePassed):
        await queued
    assert b.pending == 1 and loop.time() - started < 5.0
    rec.gate.set()
    assert await first == 10


async def test_enqueue_earlier_deadline_after_a_later_one_still_fires_first() -> None:
    """The batch's one timer follows the earliest deadline, whatever the order items came in."""
    rec = Recorder()
    rec.gate = asyncio.Event()
    b: Batcher[int, int] = Batcher(rec, max_batch=64, max_wait=10.0)
    loop = asyncio.get_running_loop()
    late = b.enqueue(1, loop.time() + 30.0)
    early = b.enqueue(2, loop.time() + 0.02)
    with pytest.raises(DeadlinePassed):
        await early
    assert not late.done()
    rec.gate.set()
    assert await late == 10


async def test_submit_still_awaits_its_own_result() -> None:
    rec = Recorder()
    b: Batcher[int, int] = Batcher(rec)
    assert await asyncio.gather(b.submit(4), b.submit(5)) == [40, 50]
