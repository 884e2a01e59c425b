"""The miss path (``_asking.py``): a batched miss led inline with single-flight on, its joiners, and
``check_question`` (a prepared question asked without a second validation and encoding)."""

from __future__ import annotations

import asyncio
import copy
import pickle
from typing import Any

import msgspec
import pytest

from meshauth import wire
from meshauth.client import REASON_UNAVAILABLE, PolicyClient, Question, Response, TransportError
from tests.client.mock import MockTransport, verdict

URL = "http://pdp"
ALICE = {"type": "User", "id": "alice"}
DOC = {"type": "Doc", "id": "d1"}


def make(transport: MockTransport, **kw: Any) -> PolicyClient:
    return PolicyClient([URL], transport=transport, **kw)


class Held:
    """A service whose first call waits for ``release`` (or forever); later calls answer at once."""

    def __init__(self, *, fail_first: bool = False) -> None:
        self.release = asyncio.Event()
        self.calls = 0
        self.fail_first = fail_first

    async def __call__(self, url: str, doc: dict[str, Any]) -> Response:
        self.calls += 1
        if self.calls == 1:
            await self.release.wait()
            if self.fail_first:
                raise TransportError("connection reset")
        return Response(200, msgspec.json.encode(verdict(doc)))


async def turns(n: int = 5) -> None:
    for _ in range(n):
        await asyncio.sleep(0)


async def test_identical_concurrent_checks_are_asked_once_and_each_gets_the_answer() -> None:
    t = MockTransport()
    async with make(t, cache=None) as c:
        ds = await asyncio.gather(*(c.check(ALICE, "view", DOC) for _ in range(8)))
    assert all(d.decision and d.error is None for d in ds)
    assert t.checks_sent == 1


async def test_a_leader_past_its_deadline_denies_and_its_joiner_asks_again() -> None:
    """The leader's deadline passes (a deny for it alone); a joiner with time left starts over and
    gets the service's answer from a call of its own."""
    held = Held()
    t = MockTransport(held)
    async with make(t, cache=None) as c:
        leader = asyncio.ensure_future(c.check(ALICE, "view", DOC, timeout=0.05))
        await turns()
        joiner = asyncio.ensure_future(c.check(ALICE, "view", DOC, timeout=5))
        d = await leader
        assert (d.decision, d.error) == (False, REASON_UNAVAILABLE)
        assert d.errors == ("deadline passed",)
        j = await joiner
        held.release.set()
    assert j.decision and j.error is None
    assert held.calls == 2


async def test_a_cancelled_leaders_joiner_asks_again_and_the_leader_gets_the_cancellation() -> None:
    held = Held()
    async with make(MockTransport(held), cache=None) as c:
        leader = asyncio.ensure_future(c.check(ALICE, "view", DOC, timeout=5))
        await turns()
        joiner = asyncio.ensure_future(c.check(ALICE, "view", DOC, timeout=5))
        await turns()
        leader.cancel()
        with pytest.raises(asyncio.CancelledError):
            await leader
        j = await joiner
        held.release.set()
    assert j.decision and j.error is None


async def test_a_failed_call_denies_the_leader_and_every_joiner() -> None:
    held = Held(fail_first=True)
    async with make(MockTransport(held), cache=None, retry=None) as c:
        tasks = [asyncio.ensure_future(c.check(ALICE, "view", DOC, timeout=5)) for _ in range(3)]
        await turns()
        held.release.set()
        ds = await asyncio.gather(*tasks)
    assert [(d.decision, d.error) for d in ds] == [(False, REASON_UNAVAILABLE)] * 3
    assert held.calls == 1


async def test_check_question_answers_as_check_and_fills_l1() -> None:
    t = MockTransport()
    async with make(t) as c:
        q = c.question(ALICE, "view", DOC, {"ip": "10.0.0.1"})
        assert c.cached(q) is None
        d = await c.check_question(q)
        assert d.decision and d.source == "service"
        again = await c.check(ALICE, "view", DOC, {"ip": "10.0.0.1"})
        assert again.source == "l1" and c.cached(q) is not None
    sent = t.calls[0][1]
    assert (sent["subject"], sent["resource"], sent["context"]) == (ALICE, DOC, {"ip": "10.0.0.1"})


async def test_check_question_asks_what_was_asked_when_the_question_was_made() -> None:
    """The caller's context changed after ``question()`` reaches neither the key nor the call."""
    t = MockTransport()
    context: dict[str, Any] = {"scope": ["read"]}
    async with make(t, cache=None) as c:
        q = c.question(ALICE, "view", DOC, context)
        context["scope"].append("admin")
        context["extra"] = 1
        await c.check_question(q)
        assert q == c.question(ALICE, "view", DOC, {"scope": ["read"]})
    assert t.calls[0][1]["context"] == {"scope": ["read"]}


async def test_check_question_refuses_a_question_of_another_store_or_made_by_hand() -> None:
    t = MockTransport()
    async with make(t) as c, PolicyClient([URL], store="other", transport=t) as other:
        foreign = other.question(ALICE, "view", DOC)
        with pytest.raises(ValueError, match="store"):
            await c.check_question(foreign)
        with pytest.raises(ValueError, match="store"):
            await c.check_question(Question(c.question(ALICE, "view", DOC).key))
        with pytest.raises(ValueError, match="store"):
            await c.check_question("not a question")  # type: ignore[arg-type]
        # Another question's parts under this key: refused, or b's answer would land in L1 under a's key.
        a = c.question(ALICE, "view", DOC)
        b_parts = ("default", wire.Subject("User", "alice"), "delete", wire.Resource("Doc", "d1"), None)
        with pytest.raises(ValueError, match="store"):
            await c.check_question(Question(a.key, b_parts))
        copied = copy.deepcopy(a)
        assert copied == a and pickle.loads(pickle.dumps(a)) == a
        with pytest.raises(ValueError, match="store"):
            await c.check_question(copied)  # a copy is looked up, not asked
        with pytest.raises(AttributeError):
            del a.key
        with pytest.raises(ValueError, match="timeout"):
            await c.check_question(c.question(ALICE, "view", DOC), timeout=-1)
    assert t.calls == []


def test_a_question_is_immutable_and_equal_by_its_key() -> None:
    c = PolicyClient([URL], transport=MockTransport())
    one, two = c.question(ALICE, "view", DOC, {"a": 1}), c.question(ALICE, "view", DOC, {"a": 1})
    assert one == two and hash(one) == hash(two) and len({one, two}) == 1
    assert one != c.question(ALICE, "edit", DOC, {"a": 1})
    with pytest.raises(AttributeError):
        one.key = b"other"
