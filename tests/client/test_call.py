"""One check's question fails only that check (``_call.Caller``): oversized, large, unwritable checks
and calls refused as a whole, against a real policy server; the halving's bound on a test transport."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Iterator
from contextlib import asynccontextmanager
from typing import Any

import msgspec
import pytest

from meshauth.client import REASON_INVALID_REQUEST, Decision, H1Transport, PolicyClient, Response
from meshauth.client._call import LARGE_CHECK
from tests.client.mock import MockTransport, verdict
from tests.client.served import DECISION_TOKEN, Recording, policy_server, push

POLICY = '@id("reads") permit(principal, action == Action::"read", resource);'
OK = {"subject": {"type": "User", "id": "alice"}, "action": "read", "resource": {"type": "Doc", "id": "d1"}}


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    with policy_server(tmp_path_factory.mktemp("pdp")) as (url, _proc):
        push(url, POLICY)
        yield url


@pytest.fixture(scope="module")
def two_at_a_time(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """A service that takes at most two checks per ``evaluations`` call (400 for more)."""
    with policy_server(tmp_path_factory.mktemp("pdp2"), MESHAUTH_POLICY_MAX_EVALUATIONS="2") as (url, _proc):
        push(url, POLICY)
        yield url


def nested(depth: int) -> dict[str, Any]:
    out: dict[str, Any] = {}
    cur = out
    for _ in range(depth):
        cur["a"] = {}
        cur = cur["a"]
    return out


def check(i: int, **change: Any) -> dict[str, Any]:
    return {**OK, "resource": {"type": "Doc", "id": f"d{i}"}, **change}


@asynccontextmanager
async def client(url: str, transport: Recording, *, cached: bool = False) -> AsyncIterator[PolicyClient]:
    # No cache or single-flight unless asked: the checks' arguments are then encoded only when their batch is.
    off: dict[str, Any] = {} if cached else {"cache": None, "singleflight": False}
    try:
        async with PolicyClient([url], token=DECISION_TOKEN, timeout=10, transport=transport, **off) as c:
            yield c
    finally:
        await transport.aclose()  # given, not owned: the client leaves it open


def allowed(d: Decision) -> bool:
    return d.decision and d.error is None and d.reasons == ("reads",)


def refused_alone(d: Decision, words: str) -> bool:
    """A deny with ``invalid_request`` whose error says ``words``."""
    return not d.decision and d.error == REASON_INVALID_REQUEST and words in d.errors[0]


async def test_an_oversized_check_is_answered_without_a_call_and_alone(server: str) -> None:
    """A check over the service's body limit (2 MB of context) batched with two others: it alone is
    invalid_request, and no call carries more than the limit (before: a 413 denied all three)."""
    t = Recording(H1Transport())
    async with client(server, t) as c:
        got = await asyncio.gather(
            c.check(**check(1)), c.check(**check(2, context={"blob": "x" * 2_000_000})), c.check(**check(3))
        )
    assert allowed(got[0]) and allowed(got[2])
    assert refused_alone(got[1], "the service takes at most 1048576")
    assert t.calls and all(size <= 1_048_576 for _, size in t.calls)


async def test_a_large_check_is_asked_in_a_call_of_its_own(server: str) -> None:
    """A 300 kB check among three small ones (the batch past a quarter of the request limit): one call
    for it alone, one for the rest; all answered."""
    t = Recording(H1Transport())
    async with client(server, t) as c:
        got = await asyncio.gather(
            c.check(**check(1)),
            c.check(**check(2)),
            c.check(**check(3, context={"blob": "x" * 300_000})),
            c.check(**check(4)),
        )
    assert all(allowed(d) for d in got)
    large = [call for call in t.calls if call[1] > LARGE_CHECK]
    assert [endpoint for endpoint, _ in large] == ["evaluation"]
    assert sorted(t.endpoints) == ["evaluation", "evaluations"]


async def test_many_mid_sized_checks_are_packed_into_calls_under_the_threshold(server: str) -> None:
    """Forty 15 kB checks (each under the size asked alone, 600 kB together, past a quarter of the
    limit): packed into calls that are themselves never taken apart again — every check answered."""
    t = Recording(H1Transport())
    async with client(server, t) as c:
        got = await asyncio.gather(*(c.check(**check(i, context={"blob": "x" * 15_000})) for i in range(40)))
    assert all(allowed(d) for d in got)
    assert len(t.calls) >= 2 and all(size <= 1_048_576 // 4 for _, size in t.calls)


async def test_a_batch_refused_as_a_whole_is_asked_in_halves(two_at_a_time: str) -> None:
    """Five checks against a service that takes two at a time: its 400 names no check, so the client
    asks again in halves and every check gets its decision (before: five invalid_request)."""
    t = Recording(H1Transport())
    async with client(two_at_a_time, t) as c:
        got = await asyncio.gather(*(c.check(**check(i)) for i in range(5)))
        denied = await asyncio.gather(*(c.check(**check(i, action="write")) for i in range(5)))
    assert all(allowed(d) for d in got)
    assert all(not d.decision and d.error is None for d in denied)
    # 5 → 400; 2 (ok) + 3 → 400; 1 + 2 (ok); per five checks at most 2·5 − 1 calls.
    assert 3 <= len(t.calls) <= 2 * (5 + 5) - 2


@pytest.mark.parametrize(
    ("bad", "uncached"),
    [
        ({"context": {"n": 10**40}}, "failed to build request"),  # JSON writes it: the service answers it
        ({"resource": {"type": "Doc", "id": "\ud800"}}, "cannot be encoded"),  # no UTF-8 for it: answered here
        ({"context": "nested"}, None),  # past the recursion limit: refused when the check is made
    ],
    ids=["integer past 64 bits", "lone surrogate", "nested too deeply"],
)
async def test_an_unwritable_check_fails_alone(server: str, bad: dict[str, Any], uncached: str | None) -> None:
    """A check an encoder cannot write fails its own caller and no other: a cached client encodes it
    when the check is made (its canonical key) and raises ValueError, as for any bad argument (before:
    OverflowError, RecursionError); a client without cache or single-flight encodes it only with its
    batch, and denies it alone (before: the encoder's exception failed the whole batch)."""
    if bad.get("context") == "nested":
        bad = {"context": nested(2000)}

    async def asked(c: PolicyClient) -> Decision | ValueError:
        try:
            return await c.check(**check(2, **bad))
        except ValueError as exc:
            return exc

    for cached in (False, True):
        async with client(server, Recording(H1Transport()), cached=cached) as c:
            first, got, last = await asyncio.gather(c.check(**check(1)), asked(c), c.check(**check(3)))
        assert allowed(first) and allowed(last)
        if cached or uncached is None:
            assert isinstance(got, ValueError) and "cannot be encoded" in str(got)
        else:
            assert isinstance(got, Decision) and not got.decision and uncached in got.errors[0]


async def test_halving_asks_at_most_twice_the_checks() -> None:
    """One malformed check among eight, refused as a whole by the service whenever a call carries it:
    7 calls (8, 4+4, 2+2, 1+1), the seven others allowed, the malformed one invalid_request."""

    async def refuses_bad(url: str, doc: dict[str, Any]) -> Response:
        items = doc["evaluations"] if url.endswith("evaluations") else [doc]
        if any(i["subject"]["id"] == "bad" for i in items):
            return Response(400, b'{"error": "invalid_request", "error_description": "subject.id: bad"}')
        if url.endswith("evaluations"):
            return Response(200, msgspec.json.encode({"evaluations": [verdict(i) for i in items]}))
        return Response(200, msgspec.json.encode(verdict(items[0])))

    t = MockTransport(refuses_bad)
    async with PolicyClient(["http://pdp"], transport=t, cache=None, singleflight=False, timeout=5) as c:
        ids = [f"u{i}" for i in range(7)]
        ids.insert(5, "bad")
        got = await asyncio.gather(
            *(c.check({"type": "User", "id": i}, "read", {"type": "Doc", "id": "d"}) for i in ids)
        )
    assert len(t.calls) == 7
    for i, d in zip(ids, got, strict=True):
        if i == "bad":
            assert d.error == REASON_INVALID_REQUEST and d.errors == ("subject.id: bad",)
        else:
            assert d.decision and d.error is None
