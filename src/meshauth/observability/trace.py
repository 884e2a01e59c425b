"""W3C Trace Context: the request being served (:class:`RequestContext`), its ``traceparent``
parsed strictly, and the headers a call made on its behalf carries.

Every served request enters a ``RequestContext`` (``requests.Instrumented`` over HTTP, the gRPC
``Check`` itself); its ids are worked out only when something asks (a log line, a policy call, the
``x-request-id`` echoed on the response). An invalid ``traceparent`` — wrong version, length, case,
all-zero ids, two header lines — is ignored and a new trace started; the raw value is never echoed.

Spans are recorded only when OpenTelemetry export is configured (``otel.configure`` sets
:data:`tracer`). Off, :data:`tracer` is None, nothing of OpenTelemetry is imported, and the ids
still flow: the service's span id is made up here, logged, and sent as the parent of its calls, so
log lines of the gate and of the policy service join on ``trace_id`` and ``span_id`` →
``parent_span_id``.
"""

from __future__ import annotations

import contextvars
import random
import re
from collections.abc import Callable, Mapping, Sequence
from typing import Any, NamedTuple, Protocol

__all__ = [
    "REQUEST_ID_HEADER",
    "TRACEPARENT_HEADER",
    "RequestContext",
    "SpanContext",
    "current",
    "format_traceparent",
    "outgoing",
    "parse_traceparent",
    "request_id",
]

REQUEST_ID_HEADER = "x-request-id"
TRACEPARENT_HEADER = "traceparent"
MAX_REQUEST_ID = 128
# Longer than any traceparent of a version this code could read with room for future fields;
# anything past it is not parsed at all.
MAX_TRACEPARENT = 512
_REQUEST_ID = re.compile(r"[A-Za-z0-9._:/+=-]{1,128}")
# version-trace_id-parent_id-flags, lowercase hex only (W3C Trace Context §3.2.2). A later version
# may append fields after a "-"; version 00 may not.
_TRACEPARENT = re.compile(r"([0-9a-f]{2})-([0-9a-f]{32})-([0-9a-f]{16})-([0-9a-f]{2})(-.*)?", re.ASCII | re.DOTALL)
# Ids are unique, not secret: Python's generator (as the OpenTelemetry SDK's own id generator),
# not a system call per request (os.urandom measured slower on the loaded machine).
_bits = random.getrandbits
_ZERO_TRACE = "0" * 32
_ZERO_SPAN = "0" * 16

# A header's values, one per header line (none: an empty list).
HeaderValues = Callable[[str], list[str]]


class Tracer(Protocol):
    """What ``otel.Tracer`` offers (spans are the SDK's, ``Any`` here: no OpenTelemetry type leaks)."""

    provider: Any

    def server(self, context: RequestContext, name: str, attributes: Mapping[str, Any]) -> Any: ...

    def client(
        self, contexts: Sequence[RequestContext | None], name: str, attributes: Mapping[str, Any]
    ) -> tuple[dict[str, str], Any]: ...

    def internal(self, context: RequestContext | None, name: str, attributes: Mapping[str, Any]) -> Any: ...

    def end(self, span: Any, error: str | None = None, attributes: Mapping[str, Any] | None = None) -> None: ...


# Set by ``otel.configure`` in a worker that exports spans; None: no spans, no OpenTelemetry import.
tracer: Tracer | None = None


class SpanContext(NamedTuple):
    trace_id: str  # 32 lowercase hex digits, not all zero
    span_id: str  # 16 lowercase hex digits, not all zero
    sampled: bool


def parse_traceparent(value: str | None) -> SpanContext | None:
    """A valid ``traceparent`` value's context, else None (never an exception)."""
    if value is None or len(value) > MAX_TRACEPARENT:
        return None
    value = value.strip(" \t")  # optional whitespace around a field value (RFC 9110 §5.5)
    found = _TRACEPARENT.fullmatch(value)
    if found is None:
        return None
    version, trace_id, span_id, flags, rest = found.groups()
    if version == "ff" or trace_id == _ZERO_TRACE or span_id == _ZERO_SPAN:
        return None
    if version == "00" and rest is not None:
        return None
    # Only the sampled bit is understood; other flags are not passed on (§3.2.2.5).
    return SpanContext(trace_id, span_id, bool(int(flags, 16) & 1))


def format_traceparent(context: SpanContext) -> str:
    return f"00-{context.trace_id}-{context.span_id}-{'01' if context.sampled else '00'}"


def request_id(raw: str | None) -> str:
    """``raw`` if it is a usable id (≤ 128 of ``A-Za-z0-9._:/+=-``), else a new random one."""
    if raw is not None and _REQUEST_ID.fullmatch(raw):
        return raw
    return f"{_bits(96):024x}"


def _only(values: list[str]) -> str | None:
    # Two lines of a single-valued header are ambiguous: neither is used.
    return values[0] if len(values) == 1 else None


def new_span_id() -> str:
    return f"{_bits(64) or 1:016x}"


def new_trace_id() -> str:
    return f"{_bits(128) or 1:032x}"


class RequestContext:
    """The request being served: its id, the caller's span (``parent``) and this service's span."""

    __slots__ = ("_parent", "_request_id", "_span", "_values", "otel_span")

    def __init__(self, values: HeaderValues) -> None:
        self._values = values
        self._request_id: str | None = None
        self._parent: SpanContext | bool | None = False  # False: not parsed yet
        self._span: SpanContext | None = None
        self.otel_span: Any = None  # the recording span while OpenTelemetry export is on

    @property
    def request_id(self) -> str:
        if self._request_id is None:
            self._request_id = request_id(_only(self._values(REQUEST_ID_HEADER)))
        return self._request_id

    @property
    def parent(self) -> SpanContext | None:
        """The caller's span from a valid ``traceparent``, or None (a new trace)."""
        if self._parent is False:
            self._parent = parse_traceparent(_only(self._values(TRACEPARENT_HEADER)))
        assert self._parent is not True
        return self._parent

    @property
    def span(self) -> SpanContext:
        """This service's span for the request: the recording span's when export is on, else ids
        made up here (the caller's trace, or a new one)."""
        if self._span is None:
            parent = self.parent
            if parent is None:
                self._span = SpanContext(new_trace_id(), new_span_id(), False)
            else:
                self._span = SpanContext(parent.trace_id, new_span_id(), parent.sampled)
        return self._span

    @span.setter
    def span(self, value: SpanContext) -> None:
        self._span = value

    def log_ids(self) -> dict[str, str]:
        span = self.span
        ids = {"request_id": self.request_id, "trace_id": span.trace_id, "span_id": span.span_id}
        parent = self.parent
        if parent is not None:
            ids["parent_span_id"] = parent.span_id
        return ids


current: contextvars.ContextVar[RequestContext | None] = contextvars.ContextVar("meshauth_request", default=None)


_ENCODED = {REQUEST_ID_HEADER: REQUEST_ID_HEADER.encode(), TRACEPARENT_HEADER: TRACEPARENT_HEADER.encode()}


def asgi_values(headers: Sequence[tuple[bytes, bytes]]) -> HeaderValues:
    """A header reader over an ASGI scope's raw headers (names are lower-case: the ASGI spec; values
    read as Latin-1, so bytes that are not UTF-8 come through as characters no id accepts). Every
    response asks for ``x-request-id``: one comparison per header line, no per-line lower-casing."""

    def values(name: str) -> list[str]:
        wanted = _ENCODED.get(name) or name.encode()
        found = []
        for key, value in headers:  # a loop: half a comprehension's cost on 3.11 (no frame)
            if key == wanted:
                found.append(value.decode("latin-1"))
        return found

    return values


def outgoing(context: RequestContext | None) -> dict[str, str]:
    """``traceparent`` and ``x-request-id`` for a call made on behalf of ``context`` with no span of
    its own (export off): the parent is this service's span for the request."""
    if context is None:
        return {}
    return {TRACEPARENT_HEADER: format_traceparent(context.span), REQUEST_ID_HEADER: context.request_id}


def call_started(contexts: Sequence[RequestContext | None], name: str, count: int) -> tuple[dict[str, str], Any]:
    """The headers of a policy call carrying checks of ``contexts``' requests, and its span (None when
    export is off). A batch carries one ``traceparent``: the first caller's trace (whose check the
    call answers first); with export on, the call's span links every other caller's span."""
    if tracer is None:
        return outgoing(next((c for c in contexts if c is not None), None)), None
    return tracer.client(contexts, name, {"meshauth.checks": count})


def call_ended(span: Any, error: str | None = None) -> None:
    if span is not None and tracer is not None:
        tracer.end(span, error)


class _NoSpan:
    """What :func:`span` gives when export is off: a ``with`` block that does nothing."""

    __slots__ = ()

    def __enter__(self) -> None:
        return None

    def __exit__(self, *exc: object) -> None:
        return None


_NO_SPAN = _NoSpan()


class _Span:
    __slots__ = ("_span",)

    def __init__(self, span: Any) -> None:
        self._span = span

    def __enter__(self) -> None:
        return None

    def __exit__(self, kind: type[BaseException] | None, exc: BaseException | None, _tb: object) -> None:
        if tracer is not None:
            tracer.end(self._span, None if kind is None else f"{kind.__name__}: {exc}")


def span(name: str, **attributes: Any) -> _Span | _NoSpan:
    """An INTERNAL span around a ``with`` block, child of the current request's span; off: nothing."""
    if tracer is None:
        return _NO_SPAN
    return _Span(tracer.internal(current.get(), name, attributes))
