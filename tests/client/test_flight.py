"""Flights (``_flight.py``): the client's single-flight without a task per miss — the same sharing as
``meshauth.singleflight``, the leader's work in the leader's own task, and a cancelled leader's
joiners starting over instead of failing."""

from __future__ import annotations

import asyncio

import pytest

from meshauth.client._flight import Flights


async def test_concurrent_calls_for_one_key_run_once_in_the_leaders_task() -> None:
    flights: Flights[str, int] = Flights()
    runs: list[asyncio.Task[object] | None] = []
    gate = asyncio.Event()

    async def work() -> int:
        runs.append(asyncio.current_task())
        await gate.wait()
        return 7

    tasks = [asyncio.ensure_future(flights.do("k", work)) for _ in range(50)]
    await asyncio.sleep(0)
    assert "k" in flights and len(flights) == 1
    gate.set()
    assert await asyncio.gather(*tasks) == [7] * 50
    assert runs == [tasks[0]] and flights.joins == 49 and len(flights) == 0


async def test_different_keys_and_later_calls_run_again() -> None:
    flights: Flights[str, str] = Flights()
    runs = 0

    async def work_for(k: str) -> str:
        nonlocal runs
        runs += 1
        await asyncio.sleep(0)
        return k

    assert list(
        await asyncio.gather(flights.do("a", lambda: work_for("a")), flights.do("b", lambda: work_for("b")))
    ) == [
        "a",
        "b",
    ]
    assert await flights.do("a", lambda: work_for("a")) == "a"
    assert (runs, flights.joins, len(flights)) == (3, 0, 0)


async def test_a_failure_reaches_every_joiner_and_is_never_unretrieved() -> None:
    flights: Flights[str, int] = Flights()

    async def work() -> int:
        await asyncio.sleep(0)
        raise ConnectionError("down")

    results = await asyncio.gather(*(flights.do("k", work) for _ in range(3)), return_exceptions=True)
    assert all(isinstance(r, ConnectionError) for r in results)
    with pytest.raises(ConnectionError):  # alone: nobody joined, and nothing is logged as unretrieved
        await flights.do("k", work)


async def test_a_cancelled_joiner_cancels_nothing() -> None:
    flights: Flights[str, int] = Flights()
    gate = asyncio.Event()

    async def work() -> int:
        await gate.wait()
        return 1

    leader = asyncio.ensure_future(flights.do("k", work))
    joiner = asyncio.ensure_future(flights.do("k", work))
    await asyncio.sleep(0)
    joiner.cancel()
    with pytest.raises(asyncio.CancelledError):
        await joiner
    gate.set()
    assert await leader == 1


async def test_a_cancelled_leaders_joiners_start_over_and_get_an_answer() -> None:
    """The leader runs out of time: its work stops, one joiner leads a fresh call, every joiner is
    answered by it (not failed with the leader)."""
    flights: Flights[str, int] = Flights()
    started = 0
    gate = asyncio.Event()

    async def work() -> int:
        nonlocal started
        started += 1
        await gate.wait()
        return started

    leader = asyncio.ensure_future(flights.do("k", work))
    joiners = [asyncio.ensure_future(flights.do("k", work)) for _ in range(3)]
    await asyncio.sleep(0)
    leader.cancel()
    with pytest.raises(asyncio.CancelledError):
        await leader
    await asyncio.sleep(0)
    gate.set()
    assert await asyncio.gather(*joiners) == [2, 2, 2]
    assert started == 2 and len(flights) == 0
