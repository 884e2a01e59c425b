"""Coalescing's gathering under hostile conditions (issue 11, stop 22): callers that stop waiting,
an evaluation that never returns normally, full batches, batches behind one in flight. Nobody is left
waiting and nobody gets another request's answer."""

from __future__ import annotations

import asyncio
from typing import Any

import pytest

from meshauth import wire
from meshauth.policy.coalescer import Activity, Coalescer
from tests.policy.test_coalescer import _Evaluator, _query


class _Meltdown(BaseException):
    """Not an ``Exception``: what the gathering must pass on to every member as it is."""


class _Gated(_Evaluator):
    """Waits for ``release`` before answering (an entity load awaiting SQL)."""

    def __init__(self) -> None:
        super().__init__()
        self.release = asyncio.Event()

    async def decide(self, state: Any, items: list[Any], snapshot: Any) -> list[wire.Decision]:
        await self.release.wait()
        return await super().decide(state, items, snapshot)


async def test_a_full_batch_goes_and_the_rest_form_the_next() -> None:
    fake = _Evaluator()
    coalescer = Coalescer(fake, max_batch=2, max_wait=10.0)  # type: ignore[arg-type]
    state = object()
    results = await asyncio.gather(*(coalescer.decide(state, _query("yes"), None) for _ in range(5)))  # type: ignore[arg-type]
    assert [r.decision for r in results] == [True] * 5
    assert sorted(fake.calls) == [1, 2, 2]


async def test_the_first_caller_cancelled_while_its_batch_is_evaluated_leaves_the_others_answered() -> None:
    """The request whose arrival started the batch stops waiting (its client went away) while the batch
    awaits an entity load: the batch goes on in its own task and the others are answered."""
    fake = _Gated()
    coalescer = Coalescer(fake, max_batch=64, max_wait=10.0)  # type: ignore[arg-type]
    state = object()
    first = asyncio.ensure_future(coalescer.decide(state, _query("yes"), None))  # type: ignore[arg-type]
    await asyncio.sleep(0)
    follower = asyncio.ensure_future(coalescer.decide(state, _query("no"), None))  # type: ignore[arg-type]
    for _ in range(3):
        await asyncio.sleep(0)
    assert coalescer.batches == 1 and not follower.done()
    first.cancel()
    await asyncio.sleep(0)
    fake.release.set()
    assert (await asyncio.wait_for(follower, timeout=5)).decision is False
    assert first.cancelled()
    await coalescer.aclose()


async def test_a_caller_that_stops_waiting_leaves_the_others_answered() -> None:
    """A caller whose client went away (its task cancelled) is skipped when answers are handed out."""
    fake = _Gated()
    coalescer = Coalescer(fake, max_batch=64, max_wait=10.0)  # type: ignore[arg-type]
    state = object()
    tasks = [asyncio.ensure_future(coalescer.decide(state, _query(r), None)) for r in ("yes", "no", "yes")]  # type: ignore[arg-type]
    for _ in range(3):
        await asyncio.sleep(0)
    tasks[1].cancel()
    fake.release.set()
    first, second, third = await asyncio.gather(*tasks, return_exceptions=True)
    assert isinstance(second, asyncio.CancelledError)
    assert first.decision is True and third.decision is True  # type: ignore[union-attr]
    assert fake.calls == [3]


async def test_a_batch_behind_one_in_flight_goes_when_that_one_is_answered() -> None:
    """Requests that arrive while a batch is being evaluated gather (up to ``max_wait``) and go as one
    batch as soon as the first is answered."""
    fake = _Gated()
    coalescer = Coalescer(fake, max_batch=64, max_wait=60.0)  # type: ignore[arg-type]
    state = object()
    first = asyncio.ensure_future(coalescer.decide(state, _query("yes"), None))  # type: ignore[arg-type]
    for _ in range(3):
        await asyncio.sleep(0)
    behind = [asyncio.ensure_future(coalescer.decide(state, _query("no"), None)) for _ in range(4)]  # type: ignore[arg-type]
    for _ in range(3):
        await asyncio.sleep(0)
    assert coalescer.batches == 1  # not the 60 s timer: they wait for the batch in flight
    fake.release.set()
    answers = await asyncio.wait_for(asyncio.gather(first, *behind), timeout=5)
    assert [a.decision for a in answers] == [True] + [False] * 4
    assert fake.calls == [1, 4]


async def test_a_batch_that_raises_something_fatal_fails_every_member() -> None:
    """Anything but an ordinary exception out of the evaluation (a ``BaseException`` that is not
    cancellation) reaches every member of the batch: nobody waits forever, nobody gets a made-up answer."""

    class _Fatal(_Evaluator):
        async def decide(self, state: Any, items: list[Any], snapshot: Any) -> list[wire.Decision]:
            raise _Meltdown

    coalescer = Coalescer(_Fatal(), max_batch=64, max_wait=10.0)  # type: ignore[arg-type]
    state = object()
    tasks = [asyncio.ensure_future(coalescer.decide(state, _query("yes"), None)) for _ in range(3)]  # type: ignore[arg-type]
    done, _ = await asyncio.wait(tasks, timeout=5)
    assert len(done) == 3
    assert all(isinstance(t.exception(), _Meltdown) for t in tasks)


def test_bad_limits_are_refused() -> None:
    for max_batch, max_wait in ((0, 0.001), (1, -1.0), (1, float("nan"))):
        with pytest.raises(ValueError, match="max_"):
            Coalescer(_Evaluator(), max_batch=max_batch, max_wait=max_wait, activity=Activity())  # type: ignore[arg-type]
