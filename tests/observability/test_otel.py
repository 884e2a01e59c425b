"""OpenTelemetry export (``otel``): when it is on, which spans are made, their parents and links —
recorded by the SDK's in-memory exporter behind the same ``BatchSpanProcessor`` the services use."""

from __future__ import annotations

import asyncio
import importlib.util
from collections.abc import Iterator
from typing import Any

import pytest
from opentelemetry.sdk.trace import ReadableSpan
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
from opentelemetry.trace import SpanKind, StatusCode
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import PlainTextResponse
from starlette.routing import Route

from meshauth.client import PolicyClient
from meshauth.observability import otel, trace
from meshauth.observability.requests import Instrumented
from tests.client.mock import MockTransport

TRACE = "4bf92f3577b34da6a3ce929d0e0e4736"
PARENT = "00f067aa0ba902b7"
DOC = {"type": "Doc", "id": "d1"}


@pytest.fixture
def exported() -> Iterator[InMemorySpanExporter]:
    memory = InMemorySpanExporter()
    assert otel.configure("meshauth-test", env={}, exporter=memory)
    try:
        yield memory
    finally:
        otel.shutdown()
    assert trace.tracer is None


def spans(memory: InMemorySpanExporter) -> dict[str, ReadableSpan]:
    assert trace.tracer is not None
    trace.tracer.provider.force_flush()
    return {s.name: s for s in memory.get_finished_spans()}


def test_export_is_on_only_when_an_otlp_endpoint_is_set() -> None:
    assert not otel.enabled_by({})
    assert otel.enabled_by({"OTEL_EXPORTER_OTLP_ENDPOINT": "http://collector:4318"})
    assert otel.enabled_by({"OTEL_EXPORTER_OTLP_TRACES_ENDPOINT": "http://collector:4318/v1/traces"})
    assert not otel.enabled_by({"OTEL_EXPORTER_OTLP_ENDPOINT": "  "})
    assert not otel.enabled_by({"OTEL_EXPORTER_OTLP_ENDPOINT": "http://c:4318", "OTEL_SDK_DISABLED": "TRUE"})
    assert not otel.enabled_by({"OTEL_EXPORTER_OTLP_ENDPOINT": "http://c:4318", "OTEL_TRACES_EXPORTER": "none"})


def test_a_missing_extra_stops_serve_with_a_clear_message(monkeypatch: pytest.MonkeyPatch) -> None:
    """Export asked for but the SDK absent: one RuntimeError naming the extra; not asked: nothing checked."""
    monkeypatch.setattr(importlib.util, "find_spec", lambda name: None)
    with pytest.raises(RuntimeError, match=r"meshauth\[otel\]"):
        otel.require({"OTEL_EXPORTER_OTLP_ENDPOINT": "http://c:4318"})
    otel.require({})


def test_an_exporter_that_does_not_import_stops_serve_with_the_fix(monkeypatch: pytest.MonkeyPatch) -> None:
    """Found, not only present: xds-protos's old copy of opentelemetry-proto's files (installed last)
    made every worker crash importing the exporter; serve now stops once, naming the reinstall."""

    def clashing(name: str) -> object:
        raise ImportError("cannot import name 'InstrumentationScope' from 'opentelemetry.proto.common.v1.common_pb2'")

    monkeypatch.setattr(importlib, "import_module", clashing)
    with pytest.raises(RuntimeError, match=r"InstrumentationScope.*--force-reinstall --no-deps opentelemetry-proto"):
        otel.require({"OTEL_EXPORTER_OTLP_ENDPOINT": "http://c:4318"})


def test_the_installed_exporter_imports() -> None:
    """What `make install` leaves (the dev extra holds otel) exports: the exporter and the OTLP protos
    it needs import — the fresh-clone failure above, checked on the real install."""
    otel.require({"OTEL_EXPORTER_OTLP_ENDPOINT": "http://c:4318"})


def app(client: PolicyClient) -> Instrumented:
    async def page(_request: Request) -> PlainTextResponse:
        d = await client.check({"type": "User", "id": "alice"}, "view", DOC)
        with trace.span("inner", step=1):
            pass
        return PlainTextResponse("yes" if d.decision else "no")

    return Instrumented(Starlette(routes=[Route("/page/{id}", page)]))


async def call(asgi: Instrumented, path: str, headers: list[tuple[bytes, bytes]]) -> dict[str, Any]:
    sent: list[dict[str, Any]] = []

    async def receive() -> dict[str, Any]:
        return {"type": "http.request", "body": b"", "more_body": False}

    async def send(message: Any) -> None:
        sent.append(dict(message))

    scope = {"type": "http", "method": "GET", "path": path, "raw_path": path.encode(), "headers": headers}
    scope |= {"query_string": b"", "http_version": "1.1", "scheme": "http", "server": ("t", 80), "root_path": ""}
    await asgi(scope, receive, send)
    return sent[0]


async def test_a_request_is_a_server_span_and_its_policy_call_a_client_span_under_it(
    exported: InMemorySpanExporter,
) -> None:
    t = MockTransport()
    async with PolicyClient(["http://pdp"], transport=t, cache=None, warming=None) as client:
        start = await call(
            app(client), "/page/7", [(b"traceparent", f"00-{TRACE}-{PARENT}-01".encode()), (b"x-request-id", b"r-1")]
        )
    assert (b"x-request-id", b"r-1") in start["headers"]
    found = spans(exported)
    server, client_span, inner = found["GET /page/{id}"], found["policy evaluation"], found["inner"]
    assert server.kind == SpanKind.SERVER and client_span.kind == SpanKind.CLIENT
    assert server.context.trace_id == client_span.context.trace_id == inner.context.trace_id == int(TRACE, 16)
    assert server.parent is not None and server.parent.span_id == int(PARENT, 16) and server.parent.is_remote
    assert client_span.parent is not None and client_span.parent.span_id == server.context.span_id
    assert inner.parent is not None and inner.parent.span_id == server.context.span_id
    assert server.attributes is not None and server.attributes["http.response.status_code"] == 200
    # What went to the policy service names the client span as its parent.
    assert t.calls[0][2]["traceparent"] == f"00-{TRACE}-{client_span.context.span_id:016x}-01"
    assert t.calls[0][2]["x-request-id"] == "r-1"


async def test_an_invalid_traceparent_starts_a_new_root_trace(exported: InMemorySpanExporter) -> None:
    t = MockTransport()
    async with PolicyClient(["http://pdp"], transport=t, cache=None, warming=None) as client:
        await call(app(client), "/page/1", [(b"traceparent", f"00-{TRACE.upper()}-{PARENT}-01".encode())])
    server = spans(exported)["GET /page/{id}"]
    assert server.parent is None and server.context.trace_id != int(TRACE, 16)


async def test_a_batch_span_has_the_first_caller_as_parent_and_links_the_others(
    exported: InMemorySpanExporter,
) -> None:
    assert trace.tracer is not None
    contexts = []
    for n in (1, 2, 3):
        ctx = trace.RequestContext(trace.asgi_values([(b"traceparent", f"00-{str(n) * 32}-{PARENT}-01".encode())]))
        trace.tracer.end(trace.tracer.server(ctx, f"request {n}", {}))
        contexts.append(ctx)
    headers, span = trace.call_started(contexts, "policy evaluations", 3)
    trace.call_ended(span, "Unavailable: timed out")
    batch = spans(exported)["policy evaluations"]
    assert batch.parent is not None and batch.parent.span_id == int(contexts[0].span.span_id, 16)
    assert batch.context.trace_id == int("1" * 32, 16)
    assert [(link.context.trace_id, link.context.span_id) for link in batch.links] == [
        (int(c.span.trace_id, 16), int(c.span.span_id, 16)) for c in contexts[1:]
    ]
    assert batch.status.status_code == StatusCode.ERROR
    assert batch.attributes is not None and batch.attributes["meshauth.checks"] == 3
    assert headers["traceparent"].split("-")[2] == f"{batch.context.span_id:016x}"


async def test_an_unsampled_caller_is_not_recorded_but_still_propagated(exported: InMemorySpanExporter) -> None:
    """The SDK's default sampler follows the parent: flags 00 records nothing, the ids still flow."""
    t = MockTransport()
    async with PolicyClient(["http://pdp"], transport=t, cache=None, warming=None) as client:
        await call(app(client), "/page/1", [(b"traceparent", f"00-{TRACE}-{PARENT}-00".encode())])
    await asyncio.sleep(0)
    assert spans(exported) == {}
    sent = trace.parse_traceparent(t.calls[0][2]["traceparent"])
    assert sent is not None and sent.trace_id == TRACE and not sent.sampled
