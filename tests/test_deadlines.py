"""Body-read deadlines: one sweep timer per loop, the contract of ``asyncio.timeout``."""

from __future__ import annotations

import asyncio
import time

import pytest

from meshauth.deadlines import BodyDeadline


async def test_a_read_that_finishes_in_time_is_untouched() -> None:
    """A read done before its deadline returns its value, and nothing fires later."""
    with BodyDeadline(0.2):
        await asyncio.sleep(0.01)
    # Waiting past the deadline is what is tested: no stray cancellation arrives once the block is left.
    await asyncio.sleep(0.4)


async def test_a_read_past_its_deadline_raises_timeout_error() -> None:
    """A read still waiting at its deadline ends with TimeoutError, within one sweep interval."""

    async def reference() -> float:
        # A plain timer of the same length in the same loop: on a loaded machine the loop itself can
        # run seconds late (2.5 s seen for this 0.4 s deadline), and then both are late alike.
        started = time.monotonic()
        await asyncio.sleep(0.4)
        return time.monotonic() - started

    late = asyncio.create_task(reference())
    start = time.monotonic()
    with pytest.raises(TimeoutError), BodyDeadline(0.4):
        await asyncio.Event().wait()
    elapsed = time.monotonic() - start
    assert 0.35 < elapsed < await late + 0.6, elapsed  # the sweep runs every 0.1 s here
    assert asyncio.current_task().cancelling() == 0  # type: ignore[union-attr]


async def test_an_outside_cancellation_stays_a_cancellation() -> None:
    """Cancelling the task for another reason is not turned into a timeout."""

    started = asyncio.Event()

    async def read() -> None:
        with BodyDeadline(10):
            started.set()
            await asyncio.Event().wait()

    task = asyncio.create_task(read())
    await started.wait()
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task


async def test_many_reads_each_meet_their_own_deadline() -> None:
    """Concurrent reads with different deadlines: the slow ones time out, the fast ones finish."""

    async def read(timeout: float, takes: float) -> str:
        try:
            with BodyDeadline(timeout):
                await asyncio.sleep(takes)
        except TimeoutError:
            return "timeout"
        return "done"

    # The fast reads' deadline leaves them room on a loaded machine: with 0.3 s, a loop stalled past it
    # found their 0.05 s sleeps and the sweep due together, and the sweep ran first.
    results = await asyncio.gather(*(read(2.0, 0.05) for _ in range(50)), *(read(0.3, 5) for _ in range(50)))
    assert results == ["done"] * 50 + ["timeout"] * 50
