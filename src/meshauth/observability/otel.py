"""OpenTelemetry export, only when configured: the ``otel`` extra (opentelemetry-sdk and the OTLP/HTTP
exporter) is imported by :func:`configure` in a worker whose environment asks for it, and never
otherwise (``trace.tracer`` stays None and nothing here runs).

On when ``OTEL_EXPORTER_OTLP_TRACES_ENDPOINT`` or ``OTEL_EXPORTER_OTLP_ENDPOINT`` is set, unless
``OTEL_SDK_DISABLED=true`` or ``OTEL_TRACES_EXPORTER=none`` (OpenTelemetry's own variables; the SDK
reads the rest of them itself: ``OTEL_SERVICE_NAME``, ``OTEL_RESOURCE_ATTRIBUTES``,
``OTEL_TRACES_SAMPLER``, ``OTEL_BSP_*``, ``OTEL_EXPORTER_OTLP_HEADERS``, timeouts). Spans go through
the SDK's ``BatchSpanProcessor`` (a thread; export never runs on the event loop).

No instrumentation library is installed: they cost ~50 µs per request even with a no-op provider
(FIELD-NOTES). The few spans are made here, with parents passed explicitly (no OpenTelemetry
context attached to the event loop's tasks): a SERVER span per served request or ``Check``, a CLIENT
span per policy call (parent: the first caller in the batch, links: the others), an INTERNAL span
for the policy service's evaluation.
"""

from __future__ import annotations

import importlib.util
import os
from collections.abc import Mapping, Sequence
from typing import Any

from meshauth.observability import trace

__all__ = ["Tracer", "configure", "enabled_by", "require", "shutdown"]

_MISSING = (
    "OTEL_EXPORTER_OTLP_ENDPOINT is set but OpenTelemetry is not installed: pip install 'meshauth[otel]' (or unset it)"
)
# xds-protos (the Envoy protos of the gRPC ext_authz port) ships an old copy of opentelemetry-proto's
# files (opentelemetry/proto/..., without InstrumentationScope); whichever package pip installs last
# owns them. Seen in a fresh `make install`: every worker crashed importing the exporter.
_CLASH = (
    "OTEL_EXPORTER_OTLP_ENDPOINT is set but the OpenTelemetry exporter does not import ({error}). If it"
    " names opentelemetry.proto: xds-protos overwrote opentelemetry-proto's files; reinstall them with"
    " pip install --force-reinstall --no-deps opentelemetry-proto"
)
_ENDPOINTS = ("OTEL_EXPORTER_OTLP_TRACES_ENDPOINT", "OTEL_EXPORTER_OTLP_ENDPOINT")


def enabled_by(env: Mapping[str, str]) -> bool:
    """Whether ``env`` asks for span export (see the module docstring)."""
    if env.get("OTEL_SDK_DISABLED", "").strip().lower() == "true":
        return False
    if env.get("OTEL_TRACES_EXPORTER", "otlp").strip().lower() == "none":
        return False
    return any(env.get(name, "").strip() for name in _ENDPOINTS)


class Tracer:
    """Our few spans over an SDK tracer. ``span`` arguments and results are SDK spans (Any here, so
    that the rest of meshauth never names an OpenTelemetry type)."""

    def __init__(self, provider: Any) -> None:
        from opentelemetry import trace as api
        from opentelemetry.trace import NonRecordingSpan, SpanKind, StatusCode

        self.provider = provider
        self._api = api
        self._tracer = provider.get_tracer("meshauth")
        self._kinds = SpanKind
        self._status = StatusCode
        self._remote = NonRecordingSpan

    def _context(self, parent: trace.SpanContext | None) -> Any:
        if parent is None:
            return None
        api = self._api
        remote = api.SpanContext(
            int(parent.trace_id, 16),
            int(parent.span_id, 16),
            is_remote=True,
            trace_flags=api.TraceFlags(api.TraceFlags.SAMPLED if parent.sampled else api.TraceFlags.DEFAULT),
        )
        return api.set_span_in_context(self._remote(remote))

    @staticmethod
    def _ours(span: Any) -> trace.SpanContext:
        c = span.get_span_context()
        return trace.SpanContext(f"{c.trace_id:032x}", f"{c.span_id:016x}", c.trace_flags.sampled)

    def server(self, context: trace.RequestContext, name: str, attributes: Mapping[str, Any]) -> Any:
        """A SERVER span for a request, child of the caller's ``traceparent``; ``context`` takes its ids."""
        span = self._tracer.start_span(
            name, self._context(context.parent), kind=self._kinds.SERVER, attributes=dict(attributes)
        )
        context.span = self._ours(span)
        context.otel_span = span
        return span

    def client(
        self, contexts: Sequence[trace.RequestContext | None], name: str, attributes: Mapping[str, Any]
    ) -> tuple[dict[str, str], Any]:
        """The headers of one call carrying checks of ``contexts``' requests, and its CLIENT span."""
        first = next((c for c in contexts if c is not None), None)
        links = []
        seen = set()
        for c in contexts:
            if c is not None and c is not first and c.span.span_id not in seen:
                seen.add(c.span.span_id)
                links.append(self._api.Link(self._span_context(c)))
        if first is None:
            parent = None
        elif first.otel_span is not None:
            parent = self._api.set_span_in_context(first.otel_span)
        else:  # a request with no span of ours (entered outside a served request)
            parent = self._context(first.span)
        span = self._tracer.start_span(name, parent, kind=self._kinds.CLIENT, attributes=dict(attributes), links=links)
        headers = {trace.TRACEPARENT_HEADER: trace.format_traceparent(self._ours(span))}
        if first is not None:
            headers[trace.REQUEST_ID_HEADER] = first.request_id
        return headers, span

    def _span_context(self, context: trace.RequestContext) -> Any:
        if context.otel_span is not None:
            return context.otel_span.get_span_context()
        return self._api.get_current_span(self._context(context.span)).get_span_context()

    def internal(self, context: trace.RequestContext | None, name: str, attributes: Mapping[str, Any]) -> Any:
        parent = None if context is None else context.otel_span
        ctx = self._api.set_span_in_context(parent) if parent is not None else None
        return self._tracer.start_span(name, ctx, kind=self._kinds.INTERNAL, attributes=dict(attributes))

    def end(self, span: Any, error: str | None = None, attributes: Mapping[str, Any] | None = None) -> None:
        if attributes:
            span.set_attributes(dict(attributes))
        if error is not None:
            span.set_status(self._status.ERROR, error[:256])
        span.end()


def require(env: Mapping[str, str] | None = None) -> None:
    """Before the workers start: if ``env`` asks for export, the SDK and exporter must be installed and
    import, so a missing extra or a broken install stops ``serve`` once with a clear message instead of
    failing in every worker (granian respawns them until it gives up)."""
    if enabled_by(os.environ if env is None else env):
        for name in ("opentelemetry.sdk.trace", "opentelemetry.exporter.otlp.proto.http.trace_exporter"):
            try:
                found = importlib.util.find_spec(name) is not None
            except ModuleNotFoundError:
                found = False
            if not found:
                raise RuntimeError(_MISSING)
        try:  # found is not enough: its files may be another package's (_CLASH); once, before the fork
            importlib.import_module("opentelemetry.exporter.otlp.proto.http.trace_exporter")
        except ImportError as exc:
            raise RuntimeError(_CLASH.format(error=exc)) from None


def configure(service_name: str, env: Mapping[str, str] | None = None, exporter: Any = None) -> bool:
    """Start exporting when ``env`` (default ``os.environ``) asks for it, or to ``exporter`` (tests):
    sets ``trace.tracer``. Returns whether spans are now recorded. Raises ``RuntimeError`` naming the
    extra when export is asked for and the SDK is not installed (an operator who set the endpoint
    expects traces: starting silently without them would hide the mistake)."""
    env = os.environ if env is None else env
    if exporter is None and not enabled_by(env):
        return False
    try:
        from opentelemetry.sdk.resources import SERVICE_NAME, Resource
        from opentelemetry.sdk.trace import TracerProvider
        from opentelemetry.sdk.trace.export import BatchSpanProcessor
    except ImportError as exc:
        raise RuntimeError(_MISSING) from exc
    if exporter is None:
        from opentelemetry.exporter.otlp.proto.http.trace_exporter import OTLPSpanExporter

        exporter = OTLPSpanExporter()
    # OTEL_SERVICE_NAME and OTEL_RESOURCE_ATTRIBUTES (read by Resource.create) win over this default.
    resource = Resource.create({SERVICE_NAME: service_name}) if "OTEL_SERVICE_NAME" not in env else Resource.create()
    provider = TracerProvider(resource=resource)
    provider.add_span_processor(BatchSpanProcessor(exporter))
    trace.tracer = Tracer(provider)
    return True


def shutdown() -> None:
    """Export what is queued and stop (also done at interpreter exit by the SDK)."""
    tracer, trace.tracer = trace.tracer, None
    if tracer is not None:
        tracer.provider.shutdown()
