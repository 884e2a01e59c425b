"""W3C Trace Context: strict ``traceparent`` parsing, the request context's ids, a call's headers."""

from __future__ import annotations

import subprocess
import sys

import pytest

from meshauth.observability import trace
from meshauth.observability.trace import (
    RequestContext,
    SpanContext,
    asgi_values,
    format_traceparent,
    parse_traceparent,
    request_id,
)

TRACE = "4bf92f3577b34da6a3ce929d0e0e4736"
SPAN = "00f067aa0ba902b7"
TRACEPARENT = f"00-{TRACE}-{SPAN}-01"


def context(*headers: tuple[bytes, bytes]) -> RequestContext:
    return RequestContext(asgi_values(list(headers)))


def test_a_valid_traceparent_gives_its_ids_and_sampled_flag() -> None:
    assert parse_traceparent(TRACEPARENT) == SpanContext(TRACE, SPAN, True)
    assert parse_traceparent(f"00-{TRACE}-{SPAN}-00") == SpanContext(TRACE, SPAN, False)
    assert parse_traceparent(f" {TRACEPARENT}\t") == SpanContext(TRACE, SPAN, True)


def test_unknown_flags_are_not_passed_on() -> None:
    """Only the sampled bit is understood; what is sent on is 00 or 01."""
    parsed = parse_traceparent(f"00-{TRACE}-{SPAN}-ff")
    assert parsed is not None
    assert format_traceparent(parsed) == f"00-{TRACE}-{SPAN}-01"


def test_a_later_version_is_read_by_its_first_four_fields() -> None:
    """W3C §4.3: a higher version may add fields after a dash; its 55 first characters are read."""
    assert parse_traceparent(f"01-{TRACE}-{SPAN}-01-whatever") == SpanContext(TRACE, SPAN, True)
    assert parse_traceparent(f"cc-{TRACE}-{SPAN}-00") == SpanContext(TRACE, SPAN, False)
    assert parse_traceparent(f"01-{TRACE}-{SPAN}-01x") is None


@pytest.mark.parametrize(
    "raw",
    [
        None,
        "",
        "garbage",
        f"00-{'0' * 32}-{SPAN}-01",  # all-zero trace id
        f"00-{TRACE}-{'0' * 16}-01",  # all-zero parent id
        f"ff-{TRACE}-{SPAN}-01",  # forbidden version
        f"00-{TRACE.upper()}-{SPAN}-01",  # upper case
        f"0A-{TRACE}-{SPAN}-01",
        f"00-{TRACE}-{SPAN}-0A",
        f"00-{TRACE}-{SPAN}-01-extra",  # version 00 has exactly four fields
        f"00-{TRACE}0-{SPAN}-01",  # long trace id
        f"00-{TRACE[:-1]}-{SPAN}-01",  # short trace id
        f"00-{TRACE}-{SPAN}0-01",
        f"00-{TRACE}-{SPAN}-1",
        f"0-{TRACE}-{SPAN}-01",
        f"00_{TRACE}_{SPAN}_01",
        TRACEPARENT + "x" * 10_000,  # overlong
        f"01-{TRACE}-{SPAN}-01-" + "x" * 600,  # a later version, but over the length read
        TRACEPARENT + "\x00",
        TRACEPARENT + "\n",
        f"00-{TRACE[:-1]}é-{SPAN}-01",  # non-ASCII
        f"00-{TRACE[:-1]}\u0661-{SPAN}-01",  # a non-ASCII digit (ARABIC-INDIC ONE)
        f"00-{TRACE}-{SPAN}-01".encode().decode("latin-1").replace("4", "\xff", 1),  # a non-UTF-8 byte
        f"{TRACEPARENT},{TRACEPARENT}",  # two values joined (HTTP field combination)
    ],
)
def test_invalid_traceparents_are_ignored(raw: str | None) -> None:
    assert parse_traceparent(raw) is None


def test_a_sane_request_id_is_kept() -> None:
    assert request_id("abc-123_x.y:z") == "abc-123_x.y:z"
    assert request_id("a" * 128) == "a" * 128


def test_a_missing_or_hostile_request_id_is_replaced() -> None:
    """Absent, too long, NUL, newline (log injection), non-ASCII: a fresh random id instead."""
    for raw in (None, "", "a" * 129, "a\x00b", "a\nb", "a b", "é", '{"x":1}', "a,b"):
        made = request_id(raw)
        assert made != raw
        assert len(made) == 24
        assert all(c in "0123456789abcdef" for c in made)
    assert request_id(None) != request_id(None)


def test_the_request_continues_a_valid_trace_with_a_span_of_its_own() -> None:
    ctx = context((b"traceparent", TRACEPARENT.encode()), (b"x-request-id", b"req-1"))
    assert ctx.parent == SpanContext(TRACE, SPAN, True)
    assert ctx.span.trace_id == TRACE and ctx.span.sampled
    assert ctx.span.span_id not in (SPAN, "0" * 16) and len(ctx.span.span_id) == 16
    assert ctx.span is ctx.span  # worked out once
    assert ctx.request_id == "req-1"


def test_two_traceparent_lines_start_a_new_trace() -> None:
    """A single-valued header sent twice is ambiguous: neither is used."""
    ctx = context((b"traceparent", TRACEPARENT.encode()), (b"traceparent", f"00-{'1' * 32}-{SPAN}-01".encode()))
    assert ctx.parent is None
    assert ctx.span.trace_id not in (TRACE, "1" * 32)
    assert not ctx.span.sampled


def test_two_request_id_lines_give_a_new_id() -> None:
    ctx = context((b"x-request-id", b"one"), (b"x-request-id", b"two"))
    assert ctx.request_id not in ("one", "two")


def test_non_utf8_bytes_in_headers_are_ignored_not_raised() -> None:
    ctx = context((b"traceparent", b"00-\xff\xfe" + TRACEPARENT.encode()[5:]), (b"x-request-id", b"\xff\x00"))
    assert ctx.parent is None
    assert len(ctx.request_id) == 24
    assert len(ctx.span.trace_id) == 32


def test_a_call_carries_the_requests_trace_with_its_span_as_parent() -> None:
    """Export off: the call's traceparent names this service's span for the request (which its log
    lines carry as span_id), so the callee's parent_span_id joins the two services' lines."""
    ctx = context((b"traceparent", TRACEPARENT.encode()), (b"x-request-id", b"req-1"))
    headers, span = trace.call_started([ctx], "policy evaluation", 1)
    assert span is None
    assert headers == {"traceparent": f"00-{TRACE}-{ctx.span.span_id}-01", "x-request-id": "req-1"}


def test_a_batch_carries_the_first_callers_trace() -> None:
    first = context((b"traceparent", TRACEPARENT.encode()))
    other = context((b"traceparent", f"00-{'1' * 32}-{SPAN}-00".encode()))
    headers, _ = trace.call_started([None, first, other], "policy evaluations", 3)
    assert headers["traceparent"] == f"00-{TRACE}-{first.span.span_id}-01"


def test_a_call_outside_any_request_carries_no_trace() -> None:
    assert trace.call_started([None, None], "policy evaluations", 2) == ({}, None)


def test_export_off_spans_do_nothing() -> None:
    assert trace.tracer is None
    with trace.span("x", a=1):
        pass


def test_with_export_off_nothing_of_opentelemetry_is_imported() -> None:
    """The services, the client and the server setup load no tracing SDK or exporter, and a worker
    whose environment does not ask for export sets no tracer. (redis-py 8 imports
    ``opentelemetry.sdk.metrics`` — and through it the tracing API — at import when the SDK is
    installed, for its own metrics, which stay off unless initialised: an import, no per-command cost.)"""
    code = (
        "import sys, os\n"
        "for k in [k for k in os.environ if k.startswith('OTEL_')]: del os.environ[k]\n"
        "import meshauth.granian_server, meshauth.auth.app, meshauth.policy.app, meshauth.client\n"
        "from meshauth.observability import otel, trace\n"
        "assert otel.configure('x') is False and trace.tracer is None\n"
        "print(sorted(m for m in sys.modules if m.startswith(('opentelemetry.sdk.trace', 'opentelemetry.exporter'))))\n"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True, timeout=60)
    assert out.stdout.strip() == "[]"
