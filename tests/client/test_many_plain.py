"""``check_many`` with the caches and single-flight off (``_many_plain.py``): chunks, failures per
chunk, one deadline, the breaker, the caller's cancellation. (Its answers against one check() at a
time: the property test in test_many.py.)"""

from __future__ import annotations

import asyncio
import time
from typing import Any

import msgspec
import pytest

from meshauth.client import REASON_UNAVAILABLE, BatchConfig, BreakerConfig, Check, PolicyClient, Response, State
from tests.client.mock import Clock, MockTransport, verdict

DOC = {"type": "Doc", "id": "d1"}


def make(transport: MockTransport, **kw: Any) -> PolicyClient:
    return PolicyClient(["http://pdp"], transport=transport, cache=None, singleflight=False, retry=None, **kw)


def user(uid: str) -> dict[str, str]:
    return {"type": "User", "id": uid}


def checks(*names: str) -> list[Check]:
    return [Check(user(n), "view", DOC) for n in names]


async def test_split_at_max_batch_each_item_its_own_answer() -> None:
    t = MockTransport()
    async with make(t, batching=BatchConfig(max_batch=2)) as c:
        ds = await c.check_many(checks("a", "xb", "c", "xd", "e"))
    assert [d.decision for d in ds] == [True, False, True, False, True]
    assert len(t.calls) == 3 and t.checks_sent == 5  # 2 + 2 + 1 (a lone item: the evaluation endpoint)


async def test_a_failed_call_fails_only_its_own_chunk() -> None:
    async def one_chunk_fails(url: str, doc: dict[str, Any]) -> Response:
        items = doc.get("evaluations", [doc])
        if any(e["subject"]["id"] == "u2" for e in items):
            return Response(500, b"{}")
        if "evaluations" not in doc:
            return Response(200, msgspec.json.encode(verdict(doc)))
        return Response(200, msgspec.json.encode({"evaluations": [verdict(e) for e in items]}))

    async with make(MockTransport(one_chunk_fails), batching=BatchConfig(max_batch=2)) as c:
        ds = await c.check_many(checks(*(f"u{i}" for i in range(5))))
    assert [d.error for d in ds] == [None, None, REASON_UNAVAILABLE, REASON_UNAVAILABLE, None]


async def test_one_deadline_for_the_batch() -> None:
    hang = asyncio.Event()

    async def never(url: str, doc: dict[str, Any]) -> Response:
        await hang.wait()
        raise AssertionError("unreachable")

    async with make(MockTransport(never)) as c:
        started = time.monotonic()
        ds = await c.check_many(checks("a", "b"), timeout=0.05)
        took = time.monotonic() - started
    assert [(d.decision, d.error, d.errors) for d in ds] == [(False, REASON_UNAVAILABLE, ("deadline passed",))] * 2
    assert took < 1.0


async def test_the_callers_cancellation_propagates() -> None:
    gate = asyncio.Event()

    async def held(url: str, doc: dict[str, Any]) -> Response:
        await gate.wait()
        return Response(200, msgspec.json.encode({"evaluations": [verdict(e) for e in doc["evaluations"]]}))

    async with make(MockTransport(held)) as c:
        task = asyncio.ensure_future(c.check_many(checks("a", "b"), timeout=5))
        for _ in range(3):
            await asyncio.sleep(0)
        task.cancel()
        with pytest.raises(asyncio.CancelledError):
            await task
        gate.set()
        ds = await c.check_many(checks("a", "b"), timeout=5)
    assert all(d.decision and d.error is None for d in ds)


async def test_open_breaker_denies_without_a_call() -> None:
    t = MockTransport()
    async with make(t, breaker=BreakerConfig(min_calls=3, open_for=5), clock=Clock(0.0)) as c:

        async def broken(url: str, doc: dict[str, Any]) -> Response:
            return Response(503, b"{}")

        t.handler = broken
        for i in range(3):
            await c.check(user(f"f{i}"), "view", DOC)
        assert c.breaker_state == "open"
        sent = len(t.calls)
        ds = await c.check_many(checks("a", "b"))
    assert len(t.calls) == sent
    assert all(d.error == REASON_UNAVAILABLE and "breaker" in d.errors[0] for d in ds)


async def test_an_answer_older_than_the_seen_state_is_unavailable_and_a_newer_one_learned() -> None:
    t = MockTransport(revision=5)
    async with make(t) as c:
        await c.check_many(checks("a", "b"))
        t.revision = 4
        old = await c.check_many(checks("a", "b"))
        t.revision = 7
        new = await c.check_many(checks("a", "b"))
    assert all(d.error == REASON_UNAVAILABLE for d in old)
    assert all(d.decision and d.revision == 7 for d in new) and c.state == State(7)
