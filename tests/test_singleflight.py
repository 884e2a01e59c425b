"""SingleFlight: identical in-flight calls share one execution."""

from __future__ import annotations

import asyncio

import pytest

from meshauth.singleflight import SingleFlight


async def test_concurrent_calls_for_one_key_run_once() -> None:
    """Fifty concurrent callers of one key cause one execution and all get its result."""
    sf: SingleFlight[str, int] = SingleFlight()
    runs = 0
    gate = asyncio.Event()

    async def work() -> int:
        nonlocal runs
        runs += 1
        await gate.wait()
        return 7

    tasks = [asyncio.ensure_future(sf.do("k", work)) for _ in range(50)]
    await asyncio.sleep(0)
    gate.set()
    assert await asyncio.gather(*tasks) == [7] * 50
    assert runs == 1 and sf.joins == 49 and len(sf) == 0


async def test_different_keys_run_separately() -> None:
    """Distinct keys do not share."""
    sf: SingleFlight[str, str] = SingleFlight()

    async def work_for(k: str) -> str:
        await asyncio.sleep(0)
        return k

    results = await asyncio.gather(sf.do("a", lambda: work_for("a")), sf.do("b", lambda: work_for("b")))
    assert list(results) == ["a", "b"]
    assert sf.joins == 0


async def test_exception_reaches_every_joiner() -> None:
    """A failure is shared too: every joined caller sees it."""
    sf: SingleFlight[str, int] = SingleFlight()

    async def work() -> int:
        await asyncio.sleep(0)
        raise ConnectionError("down")

    results = await asyncio.gather(*(sf.do("k", work) for _ in range(3)), return_exceptions=True)
    assert all(isinstance(r, ConnectionError) for r in results)


async def test_cancelled_caller_does_not_cancel_the_shared_work() -> None:
    """One caller giving up leaves the execution running for the others."""
    sf: SingleFlight[str, int] = SingleFlight()
    gate = asyncio.Event()

    async def work() -> int:
        await gate.wait()
        return 1

    a = asyncio.ensure_future(sf.do("k", work))
    b = asyncio.ensure_future(sf.do("k", work))
    await asyncio.sleep(0)
    a.cancel()
    with pytest.raises(asyncio.CancelledError):
        await a
    gate.set()
    assert await b == 1


async def test_key_is_forgotten_after_completion() -> None:
    """After the work finishes, the next call runs it again (single-flight is not a cache)."""
    sf: SingleFlight[str, int] = SingleFlight()
    runs = 0

    async def work() -> int:
        nonlocal runs
        runs += 1
        return runs

    assert await sf.do("k", work) == 1
    assert await sf.do("k", work) == 2
