"""The optional HTTP/2 transport (curl_cffi, h2c prior knowledge) against a real policy server
serving h2c (MESHAUTH_HTTP_MODE=auto): same decisions as over HTTP/1.1, and failures fail closed."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from meshauth.client import REASON_UNAVAILABLE, Check, PolicyClient
from meshauth.client._transport_curl import CurlTransport
from tests.client.served import DECISION_TOKEN, policy_server, push
from tests.client.test_transport_h1 import answering, scripted

POLICY = """
@id("view-all") permit(principal, action == Action::"view", resource);
@id("no-mallory") forbid(principal == User::"mallory", action, resource);
"""


@pytest.fixture(scope="module")
def h2c_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    with policy_server(tmp_path_factory.mktemp("pdp"), MESHAUTH_HTTP_MODE="auto") as (url, _proc):
        push(url, POLICY)
        yield url


@pytest.mark.parametrize("http", ["h2c", "http1"])
async def test_decisions_over_curl_equal_those_over_aiohttp(h2c_server: str, http: str) -> None:
    """Single and batched checks (64 concurrent: streams of one h2 connection) answer as the default transport."""
    checks = [
        Check({"type": "User", "id": "mallory" if i % 5 == 0 else f"u{i}"}, "view", {"type": "Doc", "id": "d"})
        for i in range(64)
    ]
    transport = CurlTransport(http=http)  # type: ignore[arg-type]
    async with (
        PolicyClient([h2c_server], token=DECISION_TOKEN, transport=transport, cache=None, timeout=5) as over_curl,
        PolicyClient([h2c_server], token=DECISION_TOKEN, cache=None, timeout=5) as over_aiohttp,
    ):
        got = await over_curl.check_many(checks)
        want = await over_aiohttp.check_many(checks)
        one = await over_curl.check({"type": "User", "id": "alice"}, "view", {"type": "Doc", "id": "d"})
    await transport.aclose()
    assert [(d.decision, d.reasons, d.error) for d in got] == [(d.decision, d.reasons, d.error) for d in want]
    assert one.decision and one.error is None


async def test_a_refused_connection_is_a_deny() -> None:
    """Nothing listening: policy_unavailable, never an exception or an allow."""
    transport = CurlTransport()
    async with PolicyClient(["http://127.0.0.1:9"], transport=transport, timeout=1) as client:
        d = await client.check({"type": "User", "id": "a"}, "view", {"type": "Doc", "id": "d"})
    await transport.aclose()
    assert (d.decision, d.error) == (False, REASON_UNAVAILABLE)


async def test_a_redirect_is_a_deny_never_a_decision_from_elsewhere() -> None:
    """As the other transports (``test_transport_h1.py``): a 307 is no decision. curl_cffi followed
    it by default, so the allow of whatever server the Location named was taken as the service's."""
    allow = b'{"decision": true, "context": {"revision": 1, "entities_version": 1}}'
    answer = b"HTTP/1.1 200 OK\r\nContent-Length: %d\r\n\r\n%s" % (len(allow), allow)
    async with scripted(answering(answer, answer)) as (elsewhere, asked):
        moved = b"HTTP/1.1 307 Moved\r\nLocation: %s\r\nContent-Length: 0\r\n\r\n" % elsewhere.encode()
        transport = CurlTransport(http="http1")
        async with (
            scripted(answering(moved, moved)) as (url, _),
            PolicyClient([url.rsplit("/", 1)[0]], transport=transport, timeout=1, cache=None, batching=None) as c,
        ):
            d = await c.check({"type": "User", "id": "a"}, "view", {"type": "Doc", "id": "d"})
        await transport.aclose()
    assert (d.decision, d.error, asked[0]) == (False, REASON_UNAVAILABLE, 0)
