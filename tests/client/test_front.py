"""The L1 hit path (``_front.py``): ``PolicyClient.question`` and ``cached`` — a question prepared once
answers from L1 exactly what ``check`` would, is counted once, and never answers another question."""

from __future__ import annotations

import asyncio
import hashlib
import json
from typing import Any

import msgspec
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from meshauth.client import CacheConfig, PolicyClient, Question, Response, State
from meshauth.client._metrics import CACHE, CHECKS
from tests.client.mock import MockTransport

ALICE = {"type": "User", "id": "alice"}
DOC = {"type": "Doc", "id": "d1"}


def oracle(item: dict[str, Any]) -> bool:
    """A policy that depends on every part of a question (subject, action, resource, context)."""
    canonical = json.dumps(item, sort_keys=True, separators=(",", ":")).encode()
    return hashlib.sha256(canonical).digest()[0] % 2 == 0


class Oracle:
    """The policy service answering :func:`oracle`, at revision 1."""

    def __init__(self) -> None:
        self.asked = 0

    async def post(self, url: str, body: bytes, headers: Any, *, timeout: float) -> Response:
        doc = msgspec.json.decode(body)
        items = doc["evaluations"] if url.endswith("evaluations") else [doc]
        self.asked += len(items)
        ctx = {"revision": 1, "entities_version": 1, "policies": [], "errors": []}
        out = [{"decision": oracle({**i, "context": i.get("context") or {}}), "context": ctx} for i in items]
        return Response(200, msgspec.json.encode({"evaluations": out} if url.endswith("evaluations") else out[0]))

    async def aclose(self) -> None:
        return None


async def test_cached_answers_what_check_stored_and_nothing_before() -> None:
    """Before any answer L1 is empty (None: ask check); after check, cached gives check's decision."""
    t = MockTransport()
    async with PolicyClient(["http://pdp"], transport=t) as c:
        q = c.question(ALICE, "view", DOC, {"ip": "10.0.0.1"})
        assert c.cached(q) is None
        d = await c.check(ALICE, "view", DOC, {"ip": "10.0.0.1"})
        hit = c.cached(q)
        assert hit is not None and (hit.decision, hit.revision, hit.source) == (d.decision, d.revision, "l1")
        assert hit == await c.check(ALICE, "view", DOC, {"ip": "10.0.0.1"})  # check's own L1 hit
        assert c.cached(c.question(ALICE, "view", DOC, {"ip": "10.0.0.2"})) is None  # another context
        assert c.cached(c.question(ALICE, "edit", DOC, {"ip": "10.0.0.1"})) is None  # another action
    assert len(t.calls) == 1


async def test_a_hit_is_counted_once_and_a_miss_not_at_all() -> None:
    """cached counts an L1 hit and its outcome (as check does); a miss is left to the check that follows."""
    async with PolicyClient(["http://pdp"], transport=MockTransport()) as c:
        await c.check(ALICE, "edit", DOC)  # the client learns the store's state: L1 is looked up from now on
        q = c.question(ALICE, "view", DOC)
        before = (CACHE.value("l1", "hit"), CACHE.value("l1", "miss"), CHECKS.value("allow", "l1"))
        assert c.cached(q) is None
        assert (CACHE.value("l1", "hit"), CACHE.value("l1", "miss")) == before[:2]
        await c.check(ALICE, "view", DOC)
        assert c.cached(q) is not None
        after = (CACHE.value("l1", "hit"), CACHE.value("l1", "miss"), CHECKS.value("allow", "l1"))
    assert (after[0] - before[0], after[1] - before[1], after[2] - before[2]) == (1, 1, 1)


async def test_a_newer_state_retires_what_cached_answers() -> None:
    """After the client learns of a newer state, the decision stored at the older one no longer answers."""
    async with PolicyClient(["http://pdp"], transport=MockTransport(revision=1)) as c:
        q = c.question(ALICE, "view", DOC)
        await c.check(ALICE, "view", DOC)
        assert c.cached(q) is not None
        c.advance(State(2, None))
        assert c.cached(q) is None


async def test_cache_off_never_answers() -> None:
    async with PolicyClient(["http://pdp"], transport=MockTransport(), cache=None) as c:
        await c.check(ALICE, "view", DOC)
        assert c.cached(c.question(ALICE, "view", DOC)) is None


async def test_a_question_for_another_store_never_hits() -> None:
    """The store is part of the key: a question made by a client of store "b" misses in store "a"."""
    a = PolicyClient(["http://pdp"], transport=MockTransport(), store="a")
    b = PolicyClient(["http://pdp"], transport=MockTransport(), store="b")
    async with a, b:
        await a.check(ALICE, "view", DOC)
        assert a.cached(a.question(ALICE, "view", DOC)) is not None
        assert a.cached(b.question(ALICE, "view", DOC)) is None


@pytest.mark.parametrize(
    ("args", "error"),
    [
        ((ALICE, "", DOC, None), ValueError),
        ((ALICE, "view", {"type": "Doc", "id": ""}, None), ValueError),
        (({"type": "User"}, "view", DOC, None), ValueError),
        ((ALICE, "view", DOC, ["not", "a", "mapping"]), TypeError),
        ((42, "view", DOC, None), TypeError),
    ],
)
def test_question_validates_as_check_does(args: tuple[Any, ...], error: type[Exception]) -> None:
    c = PolicyClient(["http://pdp"], transport=MockTransport())
    with pytest.raises(error):
        c.question(*args)


def test_equal_questions_share_a_key_whatever_the_order_of_their_properties() -> None:
    c = PolicyClient(["http://pdp"], transport=MockTransport())
    one = c.question(ALICE, "view", DOC, {"a": 1, "b": [1, 2]})
    two = c.question(ALICE, "view", DOC, {"b": [1, 2], "a": 1})
    assert one == two and isinstance(one, Question)


text = st.sampled_from(["a", "b", "a:b", "a|b", "a/b", "", "\x00", "é", "%2F", "..", "a b", "1"])
entity = st.fixed_dictionaries({"type": st.sampled_from(["User", "Client", "User:x"]), "id": text.filter(bool)})
context = st.one_of(
    st.none(),
    st.dictionaries(st.sampled_from(["scope", "client_id", "ip", "a:b"]), st.one_of(text, st.lists(text, max_size=3))),
)
questions = st.tuples(entity, st.sampled_from(["read", "write", "read:write"]), entity, context)


def _item(q: tuple[Any, ...]) -> dict[str, Any]:
    subject, action, resource, ctx = q
    return {"subject": subject, "action": {"name": action}, "resource": resource, "context": ctx or {}}


# Near misses: a question and others that differ from it in one part only (where a careless key collides).
near_misses = st.tuples(questions, st.lists(st.tuples(st.integers(0, 3), questions), max_size=10)).map(
    lambda drawn: [drawn[0], *(tuple(o[i] if i == part else drawn[0][i] for i in range(4)) for part, o in drawn[1])]
)


@settings(max_examples=100, deadline=None)
@given(st.one_of(near_misses, st.lists(questions, min_size=1, max_size=12)))
def test_a_decision_never_answers_another_question(asked: list[tuple[Any, ...]]) -> None:
    """Property: questions asked in any order (hostile ids and properties: delimiters, NUL, encodings;
    near misses differing in one part), each then looked up with ``cached`` — whatever L1 answers is
    the oracle's decision for that very question; two questions share a key only if they are the same."""

    async def run() -> None:
        world = Oracle()
        async with PolicyClient(["http://pdp"], transport=world, wall_clock=lambda: 1e12, timeout=10) as c:
            keys: dict[bytes, str] = {}
            for q in asked:
                d = await c.check(*q)
                assert d.error is None and d.decision == oracle(_item(q))
                same = json.dumps(_item(q), sort_keys=True)
                assert keys.setdefault(c.question(*q).key, same) == same
                for other in asked:
                    hit = c.cached(c.question(*other))
                    assert hit is None or hit.decision == oracle(_item(other))

    asyncio.run(run())


async def test_l1_size_bound_holds_for_prepared_questions() -> None:
    """cached fills nothing: L1 is filled only by checks, within its bound."""
    async with PolicyClient(["http://pdp"], transport=MockTransport(), cache=CacheConfig(l1_size=4)) as c:
        for i in range(10):
            doc = {"type": "Doc", "id": f"d{i}"}
            await c.check(ALICE, "view", doc)
        hits = [c.cached(c.question(ALICE, "view", {"type": "Doc", "id": f"d{i}"})) for i in range(10)]
    assert 1 <= sum(h is not None for h in hits) <= 4
