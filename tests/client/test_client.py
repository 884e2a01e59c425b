"""PolicyClient's logic against a test transport: batching, single-flight, cache, consistency,
breaker, retries, deadlines and fail-closed answers. (The real service: test_served.py.)"""

from __future__ import annotations

import asyncio
import time
from typing import Any

import msgspec
import pytest

from meshauth.client import (
    FULLY_CONSISTENT,
    REASON_INVALID_REQUEST,
    REASON_UNAVAILABLE,
    BreakerConfig,
    CacheConfig,
    Check,
    PolicyClient,
    Response,
    RetryConfig,
    State,
    TransportError,
    at_least,
)
from tests.client.mock import Clock, MockTransport, one_bad, verdict

URL = "http://pdp"
ALICE = {"type": "User", "id": "alice"}
MALLORY = {"type": "User", "id": "xmallory"}
DOC = {"type": "Doc", "id": "d1"}


def make(transport: MockTransport, **kw: Any) -> PolicyClient:
    return PolicyClient([URL], transport=transport, **kw)


async def test_lone_check_uses_the_single_evaluation_endpoint() -> None:
    """One check with nothing in flight is sent at once as /evaluation, and its answer mapped."""
    t = MockTransport(revision=4)
    async with make(t, store="s1") as c:
        d = await c.check(ALICE, "view", DOC, {"ip": "10.0.0.1"})
    assert (d.decision, d.reasons, d.revision, d.error, d.source) == (True, ("p",), 4, None, "service")
    url, body, _ = t.calls[0]
    assert url == "http://pdp/stores/s1/access/v1/evaluation"
    assert body == {"subject": ALICE, "action": {"name": "view"}, "resource": DOC, "context": {"ip": "10.0.0.1"}}


async def test_concurrent_checks_go_out_as_one_evaluations_call() -> None:
    """Thirty concurrent distinct checks make one evaluations call; each caller gets its own answer."""
    t = MockTransport()
    async with make(t) as c:
        subjects = [{"type": "User", "id": ("x" if i % 3 == 0 else "u") + str(i)} for i in range(30)]
        ds = await c.check_many([Check(s, "view", DOC) for s in subjects])
    assert [d.decision for d in ds] == [i % 3 != 0 for i in range(30)]
    assert len(t.calls) == 1 and t.calls[0][0].endswith("/evaluations")


async def test_batching_off_sends_one_call_per_check() -> None:
    """With batching=None every check is its own /evaluation call."""
    t = MockTransport()
    async with make(t, batching=None, cache=None, singleflight=False) as c:
        await c.check_many([Check({"type": "User", "id": f"u{i}"}, "view", DOC) for i in range(5)])
    assert len(t.calls) == 5 and all(u.endswith("/evaluation") for u, _, _ in t.calls)


async def test_identical_concurrent_checks_share_one_evaluation() -> None:
    """Single-flight: ten identical concurrent checks are evaluated once."""
    t = MockTransport()
    async with make(t, cache=None) as c:
        ds = await c.check_many([Check(ALICE, "view", DOC)] * 10)
    assert all(d.decision for d in ds) and t.checks_sent == 1


async def test_warm_check_is_answered_from_l1() -> None:
    """The second identical check is an L1 hit: no call to the service."""
    t = MockTransport()
    async with make(t) as c:
        await c.check(ALICE, "view", DOC)
        d = await c.check(ALICE, "view", DOC)
    assert d.source == "l1" and d.decision and len(t.calls) == 1


async def test_denies_expire_sooner_than_allows() -> None:
    """deny_ttl is shorter: after it a deny is asked again while an allow is still cached."""
    t = MockTransport()
    wall = Clock(time.time())
    async with make(t, cache=CacheConfig(ttl=10, deny_ttl=1), wall_clock=wall) as c:
        await c.check_many([Check(ALICE, "view", DOC), Check(MALLORY, "view", DOC)])
        wall.now += 2
        a = await c.check(ALICE, "view", DOC)
        m = await c.check(MALLORY, "view", DOC)
    assert (a.source, m.source, m.decision) == ("l1", "service", False)


async def test_fully_consistent_bypasses_the_cache() -> None:
    """FULLY_CONSISTENT always asks the service."""
    t = MockTransport()
    async with make(t) as c:
        await c.check(ALICE, "view", DOC)
        d = await c.check(ALICE, "view", DOC, consistency=FULLY_CONSISTENT)
    assert d.source == "service" and len(t.calls) == 2


async def test_newer_state_makes_older_entries_unreachable() -> None:
    """After advance() to a newer revision, an entry made at the old one no longer answers."""
    t = MockTransport(revision=1)
    async with make(t) as c:
        await c.check(ALICE, "view", DOC)
        t.revision = 2
        c.advance(State(2))
        d = await c.check(ALICE, "view", DOC)
        again = await c.check(ALICE, "view", DOC)
    assert (d.source, d.revision, again.source, again.revision) == ("service", 2, "l1", 2)


async def test_at_least_a_newer_state_is_not_answered_from_cache() -> None:
    """at_least(state) skips entries made at an older state."""
    t = MockTransport(revision=1)
    async with make(t) as c:
        await c.check(ALICE, "view", DOC)
        t.revision = 3
        d = await c.check(ALICE, "view", DOC, consistency=at_least(State(3)))
    assert (d.source, d.revision) == ("service", 3)


async def test_answer_older_than_a_seen_state_is_refused() -> None:
    """Having seen revision 5, an answer made at revision 4 (a lagging replica) is a deny, unavailable."""
    t = MockTransport(revision=5)
    async with make(t, cache=None) as c:
        await c.check(ALICE, "view", DOC)
        t.revision = 4
        d = await c.check(ALICE, "view", DOC)
    assert (d.decision, d.error) == (False, REASON_UNAVAILABLE) and c.state == State(5)


async def test_transport_failure_denies_as_unavailable() -> None:
    """A transport error is a deny with reason policy_unavailable, never an allow."""

    async def broken(url: str, body: dict[str, Any]) -> Response:
        raise TransportError("connection refused")

    async with make(MockTransport(broken), retry=None) as c:
        d = await c.check(ALICE, "view", DOC)
    assert (d.decision, d.reasons, d.error, d.source) == (False, (REASON_UNAVAILABLE,), REASON_UNAVAILABLE, "none")


@pytest.mark.parametrize(
    "body",
    [
        b"not json",
        b'{"decision": "yes", "context": {"revision": 1}}',
        b'{"decision": true}',
        b"[]",
        b'{"evaluations": [{"decision": true, "context": {"revision": 1}}]}',
    ],
)
async def test_garbage_answers_deny(body: bytes) -> None:
    """Bodies that do not decode to exactly the decision asked for are denies (fail closed)."""

    async def garbage(url: str, doc: dict[str, Any]) -> Response:
        return Response(200, body)

    async with make(MockTransport(garbage), retry=None) as c:
        d = await c.check(ALICE, "view", DOC)
    assert (d.decision, d.error) == (False, REASON_UNAVAILABLE)


async def test_batch_answer_with_wrong_count_denies_every_caller() -> None:
    """An evaluations answer with fewer decisions than checks fails the whole batch closed."""

    async def short(url: str, doc: dict[str, Any]) -> Response:
        items = doc.get("evaluations", [doc])
        return Response(200, msgspec.json.encode({"evaluations": [verdict(e) for e in items[:-1]]}))

    async with make(MockTransport(short), retry=None) as c:
        ds = await c.check_many([Check({"type": "User", "id": f"u{i}"}, "view", DOC) for i in range(4)])
    assert all((d.decision, d.error) == (False, REASON_UNAVAILABLE) for d in ds)


async def test_failed_item_fails_only_its_caller() -> None:
    """A batch item the service could not evaluate is an invalid_request deny for that caller alone."""

    async with make(MockTransport(one_bad)) as c:
        ds = await c.check_many([Check({"type": "User", "id": i}, "view", DOC) for i in ("a", "bad", "c")])
    assert [d.decision for d in ds] == [True, False, True]
    assert ds[1].error == REASON_INVALID_REQUEST and ds[0].error is None


async def test_refused_call_is_unavailable_not_a_breaker_failure() -> None:
    """A 401 (wrong token) denies as unavailable but does not count against the service's health."""

    async def refused(url: str, doc: dict[str, Any]) -> Response:
        return Response(401, b'{"error": "invalid_token", "error_description": "nope"}')

    async with make(MockTransport(refused), breaker=BreakerConfig(min_calls=2)) as c:
        ds = [await c.check({"type": "User", "id": f"u{i}"}, "view", DOC) for i in range(5)]
    assert all(d.error == REASON_UNAVAILABLE and "nope" in d.errors[0] for d in ds)
    assert c.breaker_state == "closed"


async def test_token_is_sent_as_bearer() -> None:
    """The configured token travels as Authorization: Bearer."""
    t = MockTransport()
    async with make(t, token="s3cret-token-value") as c:
        await c.check(ALICE, "view", DOC)
    assert t.calls[0][2]["authorization"] == "Bearer s3cret-token-value"


async def test_slow_service_is_denied_within_the_deadline() -> None:
    """A service that never answers yields a deny once the caller's timeout is spent, not later."""

    async def hang(url: str, doc: dict[str, Any]) -> Response:
        await asyncio.Event().wait()
        raise AssertionError

    async with make(MockTransport(hang)) as c:
        started = time.perf_counter()
        d = await c.check(ALICE, "view", DOC, timeout=0.05)
        took = time.perf_counter() - started
    assert (d.decision, d.error) == (False, REASON_UNAVAILABLE) and took < 0.5


async def test_breaker_opens_and_then_fails_fast() -> None:
    """After min_calls failures the breaker opens; further checks are denied without a call."""
    calls = 0

    async def broken(url: str, doc: dict[str, Any]) -> Response:
        nonlocal calls
        calls += 1
        return Response(503, b"")

    clock = Clock(100.0)
    async with make(
        MockTransport(broken), breaker=BreakerConfig(min_calls=3, open_for=5), retry=None, clock=clock
    ) as c:
        for i in range(3):
            await c.check({"type": "User", "id": f"u{i}"}, "view", DOC)
        assert c.breaker_state == "open"
        d = await c.check(ALICE, "view", DOC)
        assert calls == 3 and d.error == REASON_UNAVAILABLE
        assert "breaker" in d.errors[0]


async def test_breaker_closes_after_successful_probes() -> None:
    """Once open_for has passed, successful probes close the breaker and decisions resume."""
    healthy = False
    t = MockTransport()

    async def flaky(url: str, doc: dict[str, Any]) -> Response:
        if not healthy:
            return Response(500, b"")
        return await t.policy(url, doc)

    clock = Clock(100.0)
    async with make(
        MockTransport(flaky), breaker=BreakerConfig(min_calls=2, open_for=1, probes=2), retry=None, clock=clock
    ) as c:
        for i in range(2):
            await c.check({"type": "User", "id": f"u{i}"}, "view", DOC)
        assert c.breaker_state == "open"
        healthy = True
        clock.now += 1
        ds = [await c.check({"type": "User", "id": f"v{i}"}, "view", DOC) for i in range(2)]
    assert all(d.decision for d in ds) and c.breaker_state == "closed"


async def test_retry_only_within_the_budget() -> None:
    """A 503 is retried while the budget holds a retry; when it is spent, the check is denied."""
    attempts: list[str] = []

    async def once_failing(url: str, doc: dict[str, Any]) -> Response:
        attempts.append(doc["subject"]["id"])
        if attempts.count(doc["subject"]["id"]) == 1:
            return Response(503, b"")
        return Response(200, msgspec.json.encode(verdict(doc)))

    # ratio 0.5, cap 1: the first call earns half a retry (none yet), the second a whole one.
    async with make(
        MockTransport(once_failing), retry=RetryConfig(ratio=0.5, max_balance=1.0), breaker=None, cache=None
    ) as c:
        first = await c.check({"type": "User", "id": "a"}, "view", DOC)
        second = await c.check({"type": "User", "id": "b"}, "view", DOC)
        third = await c.check({"type": "User", "id": "c"}, "view", DOC)
    assert (first.error, second.decision, third.error) == (REASON_UNAVAILABLE, True, REASON_UNAVAILABLE)
    assert attempts == ["a", "b", "b", "c"]


async def test_no_retry_after_the_deadline() -> None:
    """A failure that arrives after the deadline is not retried, whatever the budget holds."""
    attempts = 0

    async def slow_fail(url: str, doc: dict[str, Any]) -> Response:
        nonlocal attempts
        attempts += 1
        await asyncio.sleep(0.06)  # the slow service under test: it fails after the check's 0.05 s deadline
        return Response(503, b"")

    retry = RetryConfig(ratio=1.0, max_balance=10.0, initial_balance=10.0)
    async with make(MockTransport(slow_fail), retry=retry, breaker=None) as c:
        d = await c.check(ALICE, "view", DOC, timeout=0.05)
    assert d.error == REASON_UNAVAILABLE and attempts == 1


async def test_stale_if_error_answers_from_an_expired_entry() -> None:
    """With stale_if_error on, a failure is answered by a recently expired decision for the same question."""
    healthy = True
    t = MockTransport()

    async def flaky(url: str, doc: dict[str, Any]) -> Response:
        if not healthy:
            raise TransportError("down")
        return await t.policy(url, doc)

    wall = Clock(time.time())
    cfg = CacheConfig(ttl=1, deny_ttl=1, stale_if_error=30)
    async with make(MockTransport(flaky), cache=cfg, retry=None, wall_clock=wall) as c:
        await c.check(ALICE, "view", DOC)
        healthy = False
        wall.now += 5
        d = await c.check(ALICE, "view", DOC)
        other = await c.check({"type": "User", "id": "never-seen"}, "view", DOC)
    assert (d.decision, d.source) == (True, "stale")
    assert (other.decision, other.error) == (False, REASON_UNAVAILABLE)


async def test_stale_if_error_is_off_by_default() -> None:
    """By default a failure after expiry is a deny, not the old allow."""
    healthy = True
    t = MockTransport()

    async def flaky(url: str, doc: dict[str, Any]) -> Response:
        if not healthy:
            raise TransportError("down")
        return await t.policy(url, doc)

    wall = Clock(time.time())
    async with make(MockTransport(flaky), retry=None, wall_clock=wall) as c:
        await c.check(ALICE, "view", DOC)
        healthy = False
        wall.now += 60
        d = await c.check(ALICE, "view", DOC)
    assert (d.decision, d.error) == (False, REASON_UNAVAILABLE)


async def test_bad_arguments_are_refused_at_the_edge() -> None:
    """A subject without an id, an empty action or a non-mapping context is a ValueError/TypeError."""
    async with make(MockTransport()) as c:
        with pytest.raises(ValueError, match="subject"):
            await c.check({"type": "User"}, "view", DOC)
        with pytest.raises(ValueError, match="action"):
            await c.check(ALICE, "", DOC)
        with pytest.raises(TypeError, match="context"):
            await c.check(ALICE, "view", DOC, ["x"])  # type: ignore[arg-type]


async def test_retry_goes_to_another_endpoint() -> None:
    """With two URLs, a check whose first attempt fails on one is retried on the other."""
    t = MockTransport()

    async def one_down(url: str, doc: dict[str, Any]) -> Response:
        if url.startswith("http://down"):
            raise TransportError("refused")
        return await t.policy(url, doc)

    mock = MockTransport(one_down)
    retry = RetryConfig(initial_balance=10.0)
    c = PolicyClient(["http://down", "http://up"], transport=mock, cache=None, breaker=None, retry=retry)
    async with c:
        ds = [await c.check({"type": "User", "id": f"u{i}"}, "view", DOC) for i in range(8)]
    assert all(d.decision for d in ds)
    urls = [u.split("/stores")[0] for u, _, _ in mock.calls]
    for i, u in enumerate(urls):
        if u == "http://down":
            assert urls[i + 1] == "http://up"


async def test_a_caller_cancelling_its_check_gets_the_cancellation_not_a_deny() -> None:
    """Only the check's own deadline turns into a deny; the caller's cancellation propagates, and a
    check after it (same task) is not hit by a stale cancellation."""
    gate = asyncio.Event()

    async def held(url: str, doc: dict[str, Any]) -> Response:
        await gate.wait()
        return Response(200, msgspec.json.encode(verdict(doc)))

    async with make(MockTransport(held), batching=None, cache=None) as c:
        task = asyncio.ensure_future(c.check({"type": "User", "id": "a"}, "view", DOC, timeout=5))
        await asyncio.sleep(0)
        await asyncio.sleep(0)
        task.cancel()
        with pytest.raises(asyncio.CancelledError):
            await task
        gate.set()
        d = await c.check({"type": "User", "id": "b"}, "view", DOC, timeout=5)
    assert d.decision and d.error is None


@pytest.mark.parametrize(
    "state",
    [
        {"revision": 2**64},
        {"revision": 2**63},
        {"revision": -2},
        {"revision": 1, "entities_version": 2**64},
        {"revision": 1, "entities_version": -1},
    ],
)
async def test_an_answer_from_an_impossible_state_is_garbage_and_stalls_nothing(state: dict[str, int]) -> None:
    """A revision or entities version no store can have (past SQL BIGINT, negative) is a garbage
    answer: denied as unavailable, and not learned. Learned, it stalled the client for good — every
    later answer of the service was "older than one already seen", and one past 2**64 made every
    later batch fail to build its L2 keys."""
    bad = True

    async def once(url: str, doc: dict[str, Any]) -> Response:
        if bad:
            return Response(200, msgspec.json.encode({"decision": True, "context": {**state, "policies": ["p"]}}))
        return await t.policy(url, doc)

    t = MockTransport(once)
    async with make(t, retry=None) as c:
        d = await c.check(ALICE, "view", DOC)
        assert (d.decision, d.error) == (False, REASON_UNAVAILABLE)
        assert c.state is None
        bad = False
        d = await c.check(ALICE, "view", DOC)
    assert (d.decision, d.error, d.revision) == (True, None, 1)
