"""The policy client's calls carry the trace of the request they are made for (``_call.Caller.flush``)."""

from __future__ import annotations

import asyncio
from typing import Any

from meshauth.client import Check, PolicyClient
from meshauth.observability import trace
from meshauth.observability.trace import RequestContext, asgi_values
from tests.client.mock import MockTransport

URL = "http://pdp"
DOC = {"type": "Doc", "id": "d1"}


def request(trace_id: str, request_id: str) -> RequestContext:
    headers = [(b"traceparent", f"00-{trace_id}-00f067aa0ba902b7-01".encode()), (b"x-request-id", request_id.encode())]
    return RequestContext(asgi_values(headers))


async def check_as(client: PolicyClient, ctx: RequestContext | None, user: str) -> bool:
    token = trace.current.set(ctx)
    try:
        return (await client.check({"type": "User", "id": user}, "view", DOC)).decision
    finally:
        trace.current.reset(token)


def client(t: MockTransport, **kw: Any) -> PolicyClient:
    return PolicyClient([URL], transport=t, cache=None, singleflight=False, warming=None, **kw)


async def test_a_check_made_for_a_request_carries_its_trace_and_request_id() -> None:
    t = MockTransport()
    ctx = request("1" * 32, "req-1")
    async with client(t) as c:
        assert await check_as(c, ctx, "alice")
    headers = t.calls[0][2]
    assert headers["traceparent"] == f"00-{'1' * 32}-{ctx.span.span_id}-01"
    assert headers["x-request-id"] == "req-1"
    assert headers["content-type"] == "application/json"


async def test_a_batch_carries_the_first_callers_trace() -> None:
    """Three requests' checks in one ``evaluations`` call: the call carries the trace of the check
    that opened the batch (with export on, its span links the others: test_otel.py)."""
    t = MockTransport()
    contexts = [request(str(n) * 32, f"req-{n}") for n in (1, 2, 3)]
    async with client(t) as c:
        # The first check goes out alone (nothing in flight); the next two wait and share a batch.
        first = asyncio.create_task(check_as(c, contexts[0], "u0"))
        await asyncio.sleep(0)
        rest = [asyncio.create_task(check_as(c, ctx, f"u{n}")) for n, ctx in enumerate(contexts[1:], 1)]
        assert all(await asyncio.gather(first, *rest))
    assert [u.rsplit("/", 1)[1] for u, _, _ in t.calls] == ["evaluation", "evaluations"]
    assert t.calls[0][2]["traceparent"].split("-")[1] == "1" * 32
    assert t.calls[1][2]["traceparent"].split("-")[1] == "2" * 32
    assert t.calls[1][2]["x-request-id"] == "req-2"


async def test_a_check_outside_any_request_carries_no_trace() -> None:
    t = MockTransport()
    async with client(t) as c:
        await c.check_many([Check({"type": "User", "id": "a"}, "view", DOC)])
    assert "traceparent" not in t.calls[0][2] and "x-request-id" not in t.calls[0][2]


async def test_the_client_never_forwards_an_invalid_traceparent() -> None:
    """A hostile header on the incoming request is not echoed: the call starts a new trace."""
    t = MockTransport()
    hostile = "00-" + "a" * 32 + "-" + "b" * 16 + "-01\r\nx-evil: 1"
    ctx = RequestContext(asgi_values([(b"traceparent", hostile.encode())]))
    async with client(t) as c:
        await check_as(c, ctx, "alice")
    sent = t.calls[0][2]["traceparent"]
    assert "evil" not in sent and "a" * 32 not in sent
    assert trace.parse_traceparent(sent) == ctx.span
