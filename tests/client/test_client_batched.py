"""PolicyClient.check's batched path without single-flight (no coroutine and no timer per check:
the batcher keeps the deadlines): each caller its own answer, its own deadline, its own failure."""

from __future__ import annotations

import asyncio
import time
from typing import Any

import msgspec
import pytest

from meshauth.client import REASON_INVALID_REQUEST, REASON_UNAVAILABLE, PolicyClient, Response, State, at_least
from tests.client.mock import MockTransport, one_bad, verdict

URL = "http://pdp"
DOC = {"type": "Doc", "id": "d1"}


def make(transport: MockTransport, **kw: Any) -> PolicyClient:
    return PolicyClient([URL], transport=transport, singleflight=False, **kw)


def user(name: str) -> dict[str, str]:
    return {"type": "User", "id": name}


async def test_concurrent_checks_share_a_call_and_each_gets_its_own_answer() -> None:
    t = MockTransport()
    async with make(t, cache=None) as c:
        names = [("x" if i % 2 else "u") + str(i) for i in range(20)]
        ds = await asyncio.gather(*(c.check(user(n), "view", DOC) for n in names))
    assert [d.decision for d in ds] == [i % 2 == 0 for i in range(20)]
    assert len(t.calls) == 1 and t.checks_sent == 20


async def test_one_failed_item_fails_only_its_caller() -> None:
    async with make(MockTransport(one_bad), cache=None) as c:
        ds = await asyncio.gather(*(c.check(user(n), "view", DOC) for n in ("a", "bad", "c")))
    assert [d.decision for d in ds] == [True, False, True]
    assert ds[1].error == REASON_INVALID_REQUEST and ds[0].error is None and ds[2].error is None


async def test_each_check_is_denied_at_its_own_deadline() -> None:
    """A held batch: the check with the short timeout is denied at it; the other in the same batch
    gets the service's answer when it comes."""
    gate = asyncio.Event()

    async def held(url: str, doc: dict[str, Any]) -> Response:
        await gate.wait()
        return Response(200, msgspec.json.encode({"evaluations": [verdict(e) for e in doc["evaluations"]]}))

    async with make(MockTransport(held), cache=None) as c:
        slow = asyncio.ensure_future(c.check(user("a"), "view", DOC, timeout=30))
        started = time.perf_counter()
        quick = await c.check(user("b"), "view", DOC, timeout=0.05)
        took = time.perf_counter() - started
        assert not slow.done()
        gate.set()
        answered = await slow
    assert (quick.decision, quick.error, quick.errors) == (False, REASON_UNAVAILABLE, ("deadline passed",))
    assert took < 0.5
    assert answered.decision and answered.error is None


async def test_a_caller_cancelling_its_check_gets_the_cancellation_not_a_deny() -> None:
    gate = asyncio.Event()

    async def held(url: str, doc: dict[str, Any]) -> Response:
        await gate.wait()
        return Response(200, msgspec.json.encode(verdict(doc)))

    async with make(MockTransport(held), cache=None) as c:
        task = asyncio.ensure_future(c.check(user("a"), "view", DOC, timeout=5))
        for _ in range(3):
            await asyncio.sleep(0)
        task.cancel()
        with pytest.raises(asyncio.CancelledError):
            await task
        gate.set()
        d = await c.check(user("b"), "view", DOC, timeout=5)
    assert d.decision and d.error is None


async def test_an_answer_from_an_older_state_is_refused_and_a_newer_one_learned() -> None:
    t = MockTransport(revision=5)
    async with make(t, cache=None) as c:
        await c.check(user("a"), "view", DOC)
        t.revision = 4
        old = await c.check(user("a"), "view", DOC)
        t.revision = 6
        new = await c.check(user("a"), "view", DOC, consistency=at_least(State(5)))
    assert (old.decision, old.error) == (False, REASON_UNAVAILABLE)
    assert new.decision and new.revision == 6 and c.state == State(6)


async def test_answers_are_cached_under_the_state_they_were_asked_at() -> None:
    """With the cache on (single-flight off), a batched answer fills L1: the same check hits it."""
    t = MockTransport(revision=2)
    async with make(t) as c:
        first = await c.check(user("a"), "view", DOC)
        again = await c.check(user("a"), "view", DOC)
    assert (first.source, again.source) == ("service", "l1") and t.checks_sent == 1
