"""Hotness and warming: on start from L2's hottest questions, and before a new state takes traffic."""

from __future__ import annotations

import asyncio
from typing import Any

from redis.asyncio import Redis

from meshauth.client import BatchConfig, PolicyClient, Response, State, WarmConfig, announce
from meshauth.client._hot import MAX_KEY_BYTES, HotKeys
from meshauth.client._keys import request_key
from meshauth.client._request import from_key
from meshauth.wire import Resource, Subject
from tests.client.mock import MockTransport, verdict

DOC = {"type": "Doc", "id": "d"}
EVERY = WarmConfig(sample_every=1, flush_every=0.01)


def user(i: int) -> dict[str, str]:
    return {"type": "User", "id": f"u{i}"}


async def until(condition: Any, seconds: float = 5.0) -> None:
    loop = asyncio.get_running_loop()
    deadline = loop.time() + seconds
    while not condition():
        assert loop.time() < deadline, "condition never held"
        await asyncio.sleep(0.002)


def test_hot_keys_rank_by_sampled_counts_and_stay_bounded() -> None:
    """Every n-th check is counted; the table keeps at most hot_keys × 4 questions, hottest kept."""
    hot = HotKeys(WarmConfig(hot_keys=4, sample_every=2))
    for _ in range(100):
        hot.seen(b"a")
        hot.seen(b"a")
        hot.seen(b"b")
        hot.seen(b"a")
    assert hot.hottest(1) == [b"a"]
    for i in range(1000):
        hot.add(f"cold{i}".encode(), 1)
    assert len(hot) <= 16
    assert hot.hottest(1) == [b"a"]
    hot.seen(b"x" * (MAX_KEY_BYTES + 1))
    hot.seen(b"x" * (MAX_KEY_BYTES + 1))
    assert b"x" * (MAX_KEY_BYTES + 1) not in hot.hottest(100)


def test_a_request_key_decodes_back_to_its_question_and_garbage_to_none() -> None:
    """Warming asks hot questions again from their keys; a key from another store or garbage is None."""
    s, r = Subject("User", "alice", {"n": 1}), Resource("Doc", "d1")
    rkey = request_key("default", s, "view", r, {"ip": "10.0.0.1"})
    p = from_key("default", rkey, 1.0)
    assert p is not None and (p.subject, p.action, p.resource, p.context) == (s, "view", r, {"ip": "10.0.0.1"})
    assert from_key("other", rkey, 1.0) is None
    assert from_key("default", b"\xc1garbage", 1.0) is None
    assert from_key("default", request_key("default", Subject("", "x"), "view", r, None), 1.0) is None


async def test_an_announced_state_is_adopted_with_the_hot_set_already_warm() -> None:
    """Before the client moves to an announced state, its hot questions are asked at it (one batch):
    right after the move they are L1 hits at the new revision — no cache cliff."""
    t = MockTransport(revision=1)
    async with PolicyClient(["http://pdp"], transport=t, warming=EVERY) as client:
        for i in range(5):
            await client.check(user(i), "view", DOC)
        calls = len(t.calls)
        t.revision = 2
        client.announced(State(2))
        await until(lambda: client.state == State(2))
        ds = [await client.check(user(i), "view", DOC) for i in range(5)]
    assert [(d.source, d.revision) for d in ds] == [("l1", 2)] * 5
    assert len(t.calls) == calls + 1 and t.calls[-1][0].endswith("/evaluations")


async def test_an_answer_from_an_older_state_is_not_warmed() -> None:
    """A service still at the old revision (a lagging replica): nothing is kept for the new state, and
    the client still moves to it."""
    t = MockTransport(revision=1)
    async with PolicyClient(["http://pdp"], transport=t, warming=EVERY) as client:
        await client.check(user(0), "view", DOC)
        client.announced(State(2))
        await until(lambda: client.state == State(2))
        t.revision = 2
        d = await client.check(user(0), "view", DOC)
    assert (d.source, d.revision) == ("service", 2)


async def test_a_slow_service_delays_the_move_by_the_budget_at_most() -> None:
    """Warming gives up at its budget; the client moves to the announced state anyway."""
    release = asyncio.Event()

    async def slow(url: str, doc: dict[str, Any]) -> Response:
        if release.is_set():
            return await MockTransport(revision=2).policy(url, doc)
        await release.wait()
        raise AssertionError("unreachable")

    first = MockTransport(revision=1)
    async with PolicyClient(["http://pdp"], transport=first, warming=EVERY) as client:
        await client.check(user(0), "view", DOC)
        first.handler = slow
        client.announced(State(2))
        await until(lambda: client.state == State(2), seconds=1.0)
        release.set()


async def test_start_warms_l1_from_l2_hottest_questions(redis: Redis) -> None:
    """A new process reads the fleet's hottest questions and the announced state, and fills L1 from L2:
    its first checks of them are L1 hits, with no call to the service."""
    first_t = MockTransport(revision=3)
    await announce(redis, "default", State(3, 4))
    async with PolicyClient(["http://pdp"], transport=first_t, redis=redis, warming=EVERY) as first:
        assert first.state == State(3, 4)
        for i in range(6):
            await first.check(user(i), "view", DOC)
        await until_async(lambda: redis.zcard(b"meshauth:decision:hot:default"), 6)
    second_t = MockTransport(revision=3)
    async with PolicyClient(["http://pdp"], transport=second_t, redis=redis, warming=EVERY) as second:
        assert await second.warm() == 6
        ds = [await second.check(user(i), "view", DOC) for i in range(6)]
    assert [d.source for d in ds] == ["l1"] * 6 and second_t.calls == []
    assert [d.decision for d in ds] == [verdict({"subject": user(i)})["decision"] for i in range(6)]


async def until_async(read: Any, want: int, seconds: float = 5.0) -> None:
    loop = asyncio.get_running_loop()
    deadline = loop.time() + seconds
    while await read() < want:
        assert loop.time() < deadline, "never reached"
        await asyncio.sleep(0.005)


async def test_without_redis_warming_on_start_finds_nothing() -> None:
    """No Redis: warm() answers 0 and the client works as without warming."""
    async with PolicyClient(["http://pdp"], transport=MockTransport(), warming=EVERY) as client:
        assert await client.warm() == 0
        assert (await client.check(user(1), "view", DOC)).decision


async def test_an_entity_only_change_is_adopted_at_once_without_asking_the_hot_set() -> None:
    """Warming is for new policy revisions; a new entities_version is adopted on announcement, with no
    call (re-asking the hot set on every entity write would multiply the service's load)."""
    t = MockTransport(revision=1)
    async with PolicyClient(["http://pdp"], transport=t, warming=EVERY) as client:
        for i in range(5):
            await client.check(user(i), "view", DOC)
        calls = len(t.calls)
        client.announced(State(1, 9))
        assert client.state == State(1, 9)
    assert len(t.calls) == calls


async def test_a_batch_answered_within_the_budget_is_kept_when_another_is_not() -> None:
    """Warming keeps each batch as it is answered: a slow batch past the budget loses only itself."""
    first = MockTransport(revision=1)
    async with PolicyClient(
        ["http://pdp"],
        transport=first,
        warming=WarmConfig(sample_every=1, budget=0.2),
        batching=BatchConfig(max_batch=2),
    ) as client:
        # Distinct hotness (u0 hottest): warming asks hottest first, so u0+u1 are one batch, u2+u3 the other.
        for i in range(4):
            for _ in range(4 - i):
                await client.check(user(i), "view", DOC)
        slow_ids = {"u2", "u3"}

        async def some_slow(url: str, doc: dict[str, Any]) -> Response:
            items = doc["evaluations"] if url.endswith("evaluations") else [doc]
            if any(i["subject"]["id"] in slow_ids for i in items):
                await asyncio.Event().wait()
            return await MockTransport(revision=2).policy(url, doc)

        first.handler = some_slow
        client.announced(State(2))
        await until(lambda: client.state == State(2), seconds=2.0)
        warmed = len(first.calls)
        slow_ids.clear()  # the service answers everything now: only what warming kept is an L1 hit
        ds = [await client.check(user(i), "view", DOC, timeout=1) for i in range(4)]
    assert [(d.source, d.revision) for d in ds] == [("l1", 2), ("l1", 2), ("service", 2), ("service", 2)]
    assert len(first.calls) == warmed + 2


async def test_a_hot_set_score_that_is_no_count_is_skipped_on_start(redis: Redis) -> None:
    """Members of the shared hot set whose score is infinite (``ZADD +inf`` by anyone sharing the
    Redis) are skipped; the rest still warm L1. ``int(inf)`` raised OverflowError out of ``warm()``,
    so every new process failed to start its client (``async with`` raised) while it was there."""
    rkey = request_key("default", Subject("User", "u1"), "view", Resource("Doc", "d"), None)
    await announce(redis, "default", State(3, 4))
    async with PolicyClient(["http://pdp"], transport=MockTransport(revision=3), redis=redis) as first:
        await first.check(user(1), "view", DOC)
    await until_async(lambda: redis.dbsize(), 3)  # the state hash, the stream, the L2 fill
    hot = b"meshauth:decision:hot:default"
    await redis.zadd(hot, {rkey: 5, b"inf": float("inf"), b"-inf": float("-inf")})
    t = MockTransport(revision=3)
    async with PolicyClient(["http://pdp"], transport=t, redis=redis) as second:
        assert await second.warm() == 1
        d = await second.check(user(1), "view", DOC)
    assert (d.decision, d.source, t.calls) == (True, "l1", [])


async def test_a_check_after_close_starts_nothing_that_outlives_the_client(redis: Redis) -> None:
    """A check that reaches the client after ``aclose`` began (traffic still arriving at a shutdown,
    a joiner starting over) is answered, but starts nothing: it restarted the hotness pusher — a task
    pushing to Redis every ``flush_every`` for as long as the loop ran — and reopened L2's own
    connection, which nobody closed any more (an unclosed socket)."""
    c = PolicyClient(["http://pdp"], transport=MockTransport(), redis=redis, warming=EVERY)
    async with c:
        c.advance(State(1))
        await c.check(user(1), "view", DOC)
    before = asyncio.all_tasks()
    d = await c.check(user(2), "view", DOC)
    await asyncio.sleep(0.05)  # past WRITE_DELAY: the fill's write, if any, has run
    assert (d.decision, d.error) == (True, None)
    assert not [t for t in asyncio.all_tasks() - before if not t.done()]
    assert c._warmer is not None and c._warmer._pusher is None
    assert c._stored is not None and c._stored.l2 is not None and c._stored.l2._raw is not None
    assert c._stored.l2._raw._proto is None
