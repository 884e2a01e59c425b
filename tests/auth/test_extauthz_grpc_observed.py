"""What the gRPC gate records: its latency histogram, and the request context it enters from the
checked request's headers (``extauthz_grpc._header_values``)."""

from __future__ import annotations

import grpc
from envoy.service.auth.v3 import external_auth_pb2, external_auth_pb2_grpc

from meshauth.auth.extauthz_grpc import CHECK_METHOD, _header_values
from meshauth.auth.metrics import GRPC_REQUEST_SECONDS
from meshauth.observability.trace import RequestContext, SpanContext
from tests.auth.conftest import Harness
from tests.auth.test_extauthz import check_request, grpc_auth, raw_check_request

__all__ = ["grpc_auth"]  # the fixture, used here

TRACE = "4bf92f3577b34da6a3ce929d0e0e4736"
TRACEPARENT = f"00-{TRACE}-00f067aa0ba902b7-01"


def _count(status: str) -> int:
    series = GRPC_REQUEST_SECONDS.series.get((CHECK_METHOD, status))
    return 0 if series is None else sum(series.buckets)


async def test_checks_are_timed_by_method_and_status_class(grpc_auth: tuple[Harness, str]) -> None:
    """``meshauth_grpc_request_duration_seconds{method,status}``: an allow is 2xx, a refusal 4xx."""
    h, target = grpc_auth
    await h.add_client()
    token = (await h.token(scope="read"))["access_token"]
    before = _count("2xx"), _count("4xx")
    async with grpc.aio.insecure_channel(target) as channel:
        stub = external_auth_pb2_grpc.AuthorizationStub(channel)
        await stub.Check(check_request({"authorization": f"Bearer {token}"}))
        await stub.Check(check_request({}))
        await stub.Check(check_request({"authorization": "Bearer nope"}))
    assert (_count("2xx") - before[0], _count("4xx") - before[1]) == (1, 2)


def _context(request: external_auth_pb2.CheckRequest) -> RequestContext:
    return RequestContext(_header_values(request.attributes.request.http))


def test_the_context_continues_the_checked_requests_trace() -> None:
    ctx = _context(check_request({"traceparent": TRACEPARENT, "x-request-id": "r-9"}))
    assert ctx.parent == SpanContext(TRACE, "00f067aa0ba902b7", True)
    assert ctx.request_id == "r-9"


def test_raw_header_lines_are_read_and_two_traceparents_ignored() -> None:
    """With ``encode_raw_headers`` each line is its own entry: two traceparent lines are ambiguous."""
    assert _context(raw_check_request([("traceparent", TRACEPARENT.encode())])).parent is not None
    two = [("traceparent", TRACEPARENT.encode()), ("Traceparent", f"00-{'1' * 32}-00f067aa0ba902b7-01".encode())]
    assert _context(raw_check_request(two)).parent is None
    assert _context(raw_check_request([("traceparent", b"00-\xff" + TRACEPARENT.encode()[4:])])).parent is None


def test_joined_traceparents_in_the_header_map_are_ignored() -> None:
    """Envoy's ``headers`` map joins repeated lines with a comma, which no traceparent matches."""
    assert _context(check_request({"traceparent": f"{TRACEPARENT},{TRACEPARENT}"})).parent is None


def test_envoys_request_id_stands_in_for_a_missing_header() -> None:
    request = check_request({})
    request.attributes.request.http.id = "envoy-id-1"
    assert _context(request).request_id == "envoy-id-1"
    request.attributes.request.http.id = "bad id\n"
    assert len(_context(request).request_id) == 24
