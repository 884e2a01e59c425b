"""``PolicyClient.check_many`` (``_many.py``): an explicit batch answers each item exactly as a
one-at-a-time ``check()`` would, in ``evaluations`` calls split at ``max_batch``, with per-item and
per-call failures, one deadline, the breaker, single-flight and stale-if-error."""

from __future__ import annotations

import asyncio
import time
from typing import Any

import msgspec
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from meshauth.client import (
    FULLY_CONSISTENT,
    MINIMIZE_LATENCY,
    REASON_INVALID_REQUEST,
    REASON_UNAVAILABLE,
    BatchConfig,
    BreakerConfig,
    CacheConfig,
    Check,
    Consistency,
    PolicyClient,
    Response,
    State,
    at_least,
)
from tests.client.mock import Clock, MockTransport, verdict

URL = "http://pdp"
DOC = {"type": "Doc", "id": "d1"}


def user(uid: str) -> dict[str, str]:
    return {"type": "User", "id": uid}


def make(transport: Any, **kw: Any) -> PolicyClient:
    return PolicyClient([URL], transport=transport, **kw)


# --- the property: check_many == one check() at a time on a cache-off client ----------------------------


class World:
    """The service's truth: who is granted, whether the policy is inverted, and a subject "bad" whose
    question the service cannot evaluate (an item error in a batch, a 400 alone)."""

    def __init__(self) -> None:
        self.granted = {"a"}
        self.inverted = False
        self.revision = 1
        self.ev = 1

    def answer(self, item: dict[str, Any]) -> dict[str, Any]:
        ctx: dict[str, Any] = {"revision": self.revision, "entities_version": self.ev, "policies": [], "errors": []}
        if item["subject"]["id"] == "bad":
            err = {"status": 400, "message": "subject.id: bad"}
            return {"decision": True, "context": {**ctx, "errors": [err["message"]], "error": err}}
        return {"decision": (item["subject"]["id"] in self.granted) != self.inverted, "context": ctx}

    async def post(self, url: str, body: bytes, headers: Any, *, timeout: float) -> Response:
        doc = msgspec.json.decode(body)
        if not url.endswith("evaluations"):
            if doc["subject"]["id"] == "bad":
                return Response(400, b'{"error": "invalid_request", "error_description": "subject.id: bad"}')
            return Response(200, msgspec.json.encode(self.answer(doc)))
        return Response(200, msgspec.json.encode({"evaluations": [self.answer(i) for i in doc["evaluations"]]}))

    async def aclose(self) -> None:
        return None


SUBJECTS = ["a", "b", "c", "bad"]
LEVELS = ["latency", "fully", "at_now", "at_future"]
Op = tuple[str, Any]
ops = st.lists(
    st.one_of(
        st.tuples(st.just("many"), st.tuples(st.lists(st.sampled_from(SUBJECTS), max_size=9), st.sampled_from(LEVELS))),
        st.tuples(st.sampled_from(["grant", "revoke"]), st.sampled_from(SUBJECTS[:3])),
        st.tuples(st.just("activate"), st.just("")),
    ),
    max_size=25,
)


def level(name: str, world: World) -> Consistency:
    if name == "latency":
        return MINIMIZE_LATENCY
    if name == "fully":
        return FULLY_CONSISTENT
    if name == "at_now":
        return at_least(State(world.revision, world.ev))
    return at_least(State(world.revision + 1, world.ev))  # newer than the service: never answered


def seen(d: Any) -> tuple[bool, str | None]:
    return d.decision, d.error


async def run(operations: list[Op], max_batch: int) -> None:
    world = World()
    frozen = {"wall_clock": lambda: 1e12, "timeout": 10}  # nothing expires; a loaded machine is no deny
    batching = BatchConfig(max_batch=max_batch)
    async with (
        make(world, batching=batching, **frozen) as cached,
        make(world, batching=batching, cache=None, **frozen) as uncached,
        make(world, batching=batching, cache=None, singleflight=False, **frozen) as plain,  # _many_plain.py
        make(world, batching=None, cache=None, singleflight=False, **frozen) as oracle,
    ):
        for op, arg in operations:
            if op == "many":
                subjects, name = arg
                checks = [Check(user(s), "view", DOC) for s in subjects]
                want = [
                    seen(await oracle.check(user(s), "view", DOC, consistency=level(name, world))) for s in subjects
                ]
                for client in (cached, uncached, plain):
                    got = await client.check_many(checks, consistency=level(name, world))
                    assert [seen(d) for d in got] == want, (client is cached, client is plain, subjects, name)
                continue
            if op == "activate":
                world.inverted = not world.inverted
                world.revision += 1
            else:
                (world.granted.add if op == "grant" else world.granted.discard)(arg)
                world.ev += 1
            for client in (cached, uncached, plain, oracle):
                client.advance(State(world.revision, world.ev))  # the announcement has arrived


@settings(max_examples=120, deadline=None)
@given(ops, st.sampled_from([1, 2, 64]))
def test_check_many_answers_as_one_check_at_a_time_without_caches(operations: list[Op], max_batch: int) -> None:
    """Whatever the changes, consistency levels, duplicates and invalid items, every item of a batch
    gets what a cache-off client's own check() gets (a deny for a bad question, unavailable for a
    state the service has not reached)."""
    asyncio.run(run(operations, max_batch))


# --- how a batch travels ---------------------------------------------------------------------------------


async def test_batch_is_split_at_max_batch() -> None:
    """130 misses with max_batch 64 make three calls: 64, 64 and 2 items."""
    t = MockTransport()
    async with make(t, batching=BatchConfig(max_batch=64)) as c:
        ds = await c.check_many([Check(user(f"u{i}"), "view", DOC) for i in range(130)])
    assert all(d.decision and d.source == "service" for d in ds)
    assert sorted(len(doc["evaluations"]) for _, doc, _ in t.calls) == [2, 64, 64]


async def test_cached_items_are_answered_and_only_misses_are_sent() -> None:
    """Items L1 holds are answered from it; the call carries only the others, once each."""
    t = MockTransport()
    async with make(t) as c:
        await c.check(user("a"), "view", DOC)
        ds = await c.check_many([Check(user(s), "view", DOC) for s in ("a", "b", "b", "xc")])
    assert [(d.decision, d.source) for d in ds] == [
        (True, "l1"),
        (True, "service"),
        (True, "service"),
        (False, "service"),
    ]
    assert [e["subject"]["id"] for e in t.calls[-1][1]["evaluations"]] == ["b", "xc"]


async def test_a_failed_call_fails_only_its_own_chunk() -> None:
    """With max_batch 2, the call carrying u2 answers 500: u2 and u3 are denied unavailable, the rest allowed."""

    async def one_chunk_fails(url: str, doc: dict[str, Any]) -> Response:
        items = doc["evaluations"]
        if any(e["subject"]["id"] == "u2" for e in items):
            return Response(500, b"{}")
        return Response(200, msgspec.json.encode({"evaluations": [verdict(e) for e in items]}))

    async with make(MockTransport(one_chunk_fails), batching=BatchConfig(max_batch=2), retry=None) as c:
        ds = await c.check_many([Check(user(f"u{i}"), "view", DOC) for i in range(6)])
    assert [d.error for d in ds] == [None, None, REASON_UNAVAILABLE, REASON_UNAVAILABLE, None, None]
    assert not any(d.decision for d in ds[2:4])


async def test_invalid_argument_raises_naming_the_item_and_sends_nothing() -> None:
    """A malformed item is the caller's bug: check_many raises naming checks[i], before any call."""
    t = MockTransport()
    async with make(t) as c:
        with pytest.raises(ValueError, match=r"checks\[1\]: action"):
            await c.check_many([Check(user("a"), "view", DOC), Check(user("b"), "", DOC)])
        with pytest.raises(TypeError, match=r"checks\[0\] must be a Check"):
            await c.check_many([(user("a"), "view", DOC)])  # type: ignore[list-item]
        # One its canonical key cannot encode (an integer past 64 bits): a ValueError naming it too.
        with pytest.raises(ValueError, match=r"checks\[1\]: the check cannot be encoded"):
            await c.check_many([Check(user("a"), "view", DOC), Check(user("b"), "view", DOC, {"n": 10**40})])
    assert t.calls == []


async def test_empty_batch_answers_nothing_without_a_call() -> None:
    t = MockTransport()
    async with make(t) as c:
        assert await c.check_many([]) == []
    assert t.calls == []


async def test_one_deadline_for_the_batch() -> None:
    """A service that never answers: at the batch's deadline every miss is denied unavailable, a cached
    item still answered from L1."""
    hang = asyncio.Event()

    async def never(url: str, doc: dict[str, Any]) -> Response:
        if doc.get("subject", {}).get("id") == "a":
            return Response(200, msgspec.json.encode(verdict(doc)))
        await hang.wait()
        raise AssertionError("unreachable")

    async with make(MockTransport(never), retry=None) as c:
        await c.check(user("a"), "view", DOC)
        started = time.monotonic()
        ds = await c.check_many([Check(user(s), "view", DOC) for s in ("a", "b", "c")], timeout=0.05)
        took = time.monotonic() - started
    assert [(d.decision, d.error, d.source) for d in ds] == [
        (True, None, "l1"),
        (False, REASON_UNAVAILABLE, "none"),
        (False, REASON_UNAVAILABLE, "none"),
    ]
    assert took < 1.0


async def test_open_breaker_denies_misses_without_a_call() -> None:
    """With the breaker open, misses are denied at once ("circuit breaker open"); L1 still answers."""
    clock = Clock(0.0)
    t = MockTransport()
    async with make(t, breaker=BreakerConfig(min_calls=3, open_for=5), retry=None, clock=clock) as c:
        await c.check(user("a"), "view", DOC)

        async def broken(url: str, doc: dict[str, Any]) -> Response:
            return Response(503, b"{}")

        t.handler = broken
        for i in range(3):
            await c.check(user(f"f{i}"), "view", DOC)
        assert c.breaker_state == "open"
        sent = len(t.calls)
        ds = await c.check_many([Check(user(s), "view", DOC) for s in ("a", "b")])
    assert len(t.calls) == sent
    assert (ds[0].decision, ds[0].source) == (True, "l1")
    assert (ds[1].decision, ds[1].error) == (False, REASON_UNAVAILABLE) and "breaker" in ds[1].errors[0]


async def test_stale_if_error_answers_each_item_from_its_own_entry() -> None:
    """A failed batch falls back per item: an expired entry where there is one, else a deny."""
    wall = Clock(time.time())
    t = MockTransport()
    cfg = CacheConfig(ttl=1, deny_ttl=1, stale_if_error=30)
    async with make(t, cache=cfg, wall_clock=wall, retry=None) as c:
        await c.check(user("a"), "view", DOC)
        wall.now += 2

        async def down(url: str, doc: dict[str, Any]) -> Response:
            return Response(503, b"{}")

        t.handler = down
        ds = await c.check_many([Check(user(s), "view", DOC) for s in ("a", "b")])
    assert [(d.decision, d.source) for d in ds] == [(True, "stale"), (False, "none")]


async def test_an_item_older_than_the_seen_state_is_unavailable() -> None:
    """An answer from a state older than one the client has seen is refused, never returned or cached."""
    t = MockTransport(revision=3)
    async with make(t) as c:
        c.advance(State(5))
        (d,) = await c.check_many([Check(user("a"), "view", DOC)])
        assert (d.decision, d.error) == (False, REASON_UNAVAILABLE)
        t.revision = 5
        (d,) = await c.check_many([Check(user("a"), "view", DOC)])
    assert (d.decision, d.source, d.revision) == (True, "service", 5)


async def test_item_errors_are_not_cached() -> None:
    """A bad item is an invalid_request deny, asked again next time (never kept)."""
    world = World()
    async with make(world) as c:
        first = await c.check_many([Check(user("bad"), "view", DOC), Check(user("a"), "view", DOC)])
        again = await c.check_many([Check(user("bad"), "view", DOC), Check(user("a"), "view", DOC)])
    assert [d.error for d in first] == [REASON_INVALID_REQUEST, None]
    assert [(d.error, d.source) for d in again] == [(REASON_INVALID_REQUEST, "service"), (None, "l1")]


# --- single-flight with concurrent checks -----------------------------------------------------------------


class Gated(MockTransport):
    """Holds every call until ``go`` is set; ``arrived`` is set by the first call."""

    def __init__(self) -> None:
        super().__init__()
        self.go = asyncio.Event()
        self.arrived = asyncio.Event()
        self.handler = self._gated

    async def _gated(self, url: str, doc: dict[str, Any]) -> Response:
        self.arrived.set()
        await self.go.wait()
        return await self.policy(url, doc)


async def test_a_concurrent_check_joins_the_batch() -> None:
    """A check() for a question a batch is asking joins it: one evaluation for both."""
    t = Gated()
    async with make(t, cache=None) as c:
        many = asyncio.ensure_future(c.check_many([Check(user("a"), "view", DOC), Check(user("b"), "view", DOC)]))
        await t.arrived.wait()
        one = asyncio.ensure_future(c.check(user("a"), "view", DOC))
        await asyncio.sleep(0)  # let it reach single-flight (no timing: one loop turn)
        t.go.set()
        ds, d = await many, await one
    assert [x.decision for x in ds] == [True, True] and d.decision
    assert t.checks_sent == 2


async def test_a_batch_joins_a_check_in_flight() -> None:
    """An item a check() is already asking is not asked again by the batch."""
    t = Gated()
    async with make(t, cache=None) as c:
        one = asyncio.ensure_future(c.check(user("a"), "view", DOC))
        await t.arrived.wait()
        many = asyncio.ensure_future(c.check_many([Check(user("a"), "view", DOC), Check(user("b"), "view", DOC)]))
        await asyncio.sleep(0)
        t.go.set()
        d, ds = await one, await many
    assert d.decision and [x.decision for x in ds] == [True, True]
    assert t.checks_sent == 2


async def test_a_cancelled_batch_leaves_its_joiners_the_answer() -> None:
    """Cancelling a batch (its caller went away) does not answer the checks that joined it: the
    batch's call goes on for them, as a cancelled check()'s does (before: each was denied,
    policy_unavailable, for another caller's cancellation)."""
    t = Gated()
    async with make(t, cache=None, retry=None) as c:
        many = asyncio.ensure_future(c.check_many([Check(user("a"), "view", DOC)]))
        await t.arrived.wait()
        one = asyncio.ensure_future(c.check(user("a"), "view", DOC))
        await asyncio.sleep(0)
        many.cancel()
        with pytest.raises(asyncio.CancelledError):
            await many
        t.go.set()
        d = await asyncio.wait_for(one, 5)
    assert (d.decision, d.error) == (True, None)
    assert t.checks_sent == 1


async def test_a_failed_batch_call_leaves_no_joiner_waiting() -> None:
    """The batch's call failing fails its joiners closed (each its own deny), never leaves them waiting."""
    t = Gated()

    async def broken(url: str, doc: dict[str, Any]) -> Response:
        t.arrived.set()
        await t.go.wait()
        return Response(503, b"{}")

    t.handler = broken
    async with make(t, cache=None, retry=None) as c:
        many = asyncio.ensure_future(c.check_many([Check(user("a"), "view", DOC)]))
        await t.arrived.wait()
        one = asyncio.ensure_future(c.check(user("a"), "view", DOC))
        await asyncio.sleep(0)
        t.go.set()
        (m,) = await asyncio.wait_for(many, 5)
        d = await asyncio.wait_for(one, 5)
    assert (m.decision, m.error) == (d.decision, d.error) == (False, REASON_UNAVAILABLE)


async def test_a_cancelled_batch_with_its_deadline_passed_denies_its_joiner() -> None:
    """A joiner of a batch that ran out of time is answered closed, within its own wait."""
    t = Gated()
    async with make(t, cache=None, retry=None) as c:
        many = asyncio.ensure_future(c.check_many([Check(user("a"), "view", DOC)], timeout=0.05))
        await t.arrived.wait()
        one = asyncio.ensure_future(c.check(user("a"), "view", DOC))
        ds = await asyncio.wait_for(many, 5)
        d = await asyncio.wait_for(one, 5)
    assert (ds[0].decision, ds[0].error) == (False, REASON_UNAVAILABLE)
    assert d.decision is False


async def test_a_batch_whose_joined_check_is_cancelled_asks_itself() -> None:
    """The check() a batch item joined is cancelled (its caller gave up): the batch asks that item
    itself and answers it from the service, not with a deny."""
    t = Gated()
    async with make(t, cache=None, retry=None) as c:
        one = asyncio.ensure_future(c.check(user("a"), "view", DOC))
        await t.arrived.wait()
        many = asyncio.ensure_future(c.check_many([Check(user("a"), "view", DOC), Check(user("b"), "view", DOC)]))
        await asyncio.sleep(0)
        one.cancel()
        with pytest.raises(asyncio.CancelledError):
            await one
        t.go.set()
        ds = await asyncio.wait_for(many, 5)
    assert [(x.decision, x.error) for x in ds] == [(True, None), (True, None)]


async def test_every_item_shape_is_sent_as_check_sends_it() -> None:
    """Items in the common shape and every other accepted shape (structs, properties, a context)
    reach the service exactly as one check() at a time sends them."""
    from meshauth.wire import Resource, Subject

    shapes = [
        Check(user("a"), "view", DOC),
        Check(Subject("User", "b"), "view", Resource("Doc", "d2")),
        Check({"type": "User", "id": "c", "properties": {"dept": "x"}}, "view", DOC),
        Check(user("d"), "view", DOC, {"ip": "10.0.0.1"}),
    ]
    batch, one = MockTransport(), MockTransport()
    async with make(batch, cache=None) as many, make(one, cache=None, batching=None) as single:
        await many.check_many(shapes)
        for c in shapes:
            await single.check(c.subject, c.action, c.resource, c.context)
    sent = batch.calls[0][1]
    # The one action all items share goes once, as the batch's default (AuthZEN 1.0 §7.1).
    assert sent["action"] == {"name": "view"}
    defaults = {k: v for k, v in sent.items() if k != "evaluations"}
    assert [{**defaults, **item} for item in sent["evaluations"]] == [doc for _, doc, _ in one.calls]


async def test_items_with_different_actions_each_carry_their_own() -> None:
    """No default action when the items' actions differ: each item says its own."""
    t = MockTransport()
    async with make(t, cache=None) as c:
        await c.check_many([Check(user("a"), "view", DOC), Check(user("a"), "edit", DOC)])
    sent = t.calls[0][1]
    assert "action" not in sent
    assert [item["action"] for item in sent["evaluations"]] == [{"name": "view"}, {"name": "edit"}]


async def test_more_checks_than_the_service_takes_are_refused() -> None:
    """Over MAX_MANY checks (list or generator) raise before anything is asked: the synchronous
    pass over 20,000 items held the event loop ~155 ms."""
    from meshauth.client._many import MAX_MANY

    t = MockTransport()
    async with make(t, cache=None, timeout=30.0) as c:  # 16 calls: no deadline on a busy machine
        many = [Check(user(f"u{i}"), "view", DOC) for i in range(MAX_MANY + 1)]
        with pytest.raises(ValueError, match="at most 1024 checks"):
            await c.check_many(many)
        with pytest.raises(ValueError, match="at most 1024 checks"):
            await c.check_many(iter(many))  # type: ignore[arg-type]
        assert t.calls == []
        ds = await c.check_many(many[:MAX_MANY])  # the limit itself is fine
    assert len(ds) == MAX_MANY
    assert [d.error for d in ds if d.error is not None] == []
    assert all(d.decision for d in ds)


async def test_any_iterable_of_checks_is_accepted() -> None:
    """A generator of checks is answered like a list (as when check_many gathered check() calls)."""
    async with make(MockTransport()) as c:
        ds = await c.check_many(Check(user(f"u{i}"), "view", DOC) for i in range(3))  # type: ignore[arg-type]
    assert [d.decision for d in ds] == [True, True, True]


class PerSubject(MockTransport):
    """Holds each subject's call until its own gate opens (``sent[id]`` is set once it is held)."""

    def __init__(self) -> None:
        super().__init__()
        self.gates: dict[str, asyncio.Event] = {}
        self.sent: dict[str, asyncio.Event] = {}
        self.handler = self._gated

    def gate(self, uid: str) -> asyncio.Event:
        self.sent.setdefault(uid, asyncio.Event())
        return self.gates.setdefault(uid, asyncio.Event())

    async def _gated(self, url: str, doc: dict[str, Any]) -> Response:
        items = doc["evaluations"] if url.endswith("evaluations") else [doc]
        for item in items:
            uid = item["subject"]["id"]
            gate = self.gate(uid)
            self.sent[uid].set()
            await gate.wait()
        return await self.policy(url, doc)


async def test_a_joined_check_that_finishes_first_is_still_answered() -> None:
    """An item that joined a check() in flight is answered with that check's decision even when the
    check finishes (and its flight is forgotten) while the batch's own call is still out. Before:
    the batch joined the key only after its own call returned, found nothing in flight, started
    ``_never`` and denied the item ("joined a flight that was not in flight")."""
    t = PerSubject()
    async with make(t, cache=None, batching=None) as c:
        ga, gb = t.gate("a"), t.gate("b")
        one = asyncio.ensure_future(c.check(user("a"), "view", DOC))
        await t.sent["a"].wait()
        many = asyncio.ensure_future(c.check_many([Check(user("a"), "view", DOC), Check(user("b"), "view", DOC)]))
        await t.sent["b"].wait()  # the batch asks b; a joined the check in flight
        ga.set()
        assert (await one).decision
        gb.set()
        ds = await asyncio.wait_for(many, 5)
    assert [(d.decision, d.error) for d in ds] == [(True, None), (True, None)]
    assert t.checks_sent == 2


async def test_every_joined_flight_answers_whatever_order_they_finish_in() -> None:
    """Two items joining two checks in flight: the second check finishes first."""
    t = PerSubject()
    async with make(t, cache=None, batching=None) as c:
        ga, gb = t.gate("a"), t.gate("b")
        one = asyncio.ensure_future(c.check(user("a"), "view", DOC))
        two = asyncio.ensure_future(c.check(user("b"), "view", DOC))
        await t.sent["a"].wait()
        await t.sent["b"].wait()
        many = asyncio.ensure_future(c.check_many([Check(user("a"), "view", DOC), Check(user("b"), "view", DOC)]))
        await asyncio.sleep(0)  # one loop turn: the batch joins both (no timing)
        gb.set()
        assert (await two).decision
        ga.set()
        assert (await one).decision
        ds = await asyncio.wait_for(many, 5)
    assert [(d.decision, d.error) for d in ds] == [(True, None), (True, None)]
    assert t.checks_sent == 2
