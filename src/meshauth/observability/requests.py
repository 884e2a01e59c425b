"""Every served request timed by route template, given its request context (ids for logs and calls,
``trace.RequestContext``) and its ``x-request-id`` echoed: one wrapper for ASGI and RSGI.

``serve`` wraps each worker's app in ``Instrumented``. The label is the route template the path
matched (``routes.RouteLabels``), the method (a closed set) and the status class; under RSGI the
status is read off the response call through a small proxy of granian's protocol object. The echoed
``x-request-id`` is the sanitised one the logs carry (the caller's if it is a sane token, else new).
With span export on (``otel``), each request but scrapes and health checks is a SERVER span.
"""

from __future__ import annotations

import time
from collections.abc import MutableMapping
from typing import Any

from meshauth.observability import trace
from meshauth.observability.metrics import IntHistogram
from meshauth.observability.routes import RouteLabels, templates_of

REQUEST_SECONDS = IntHistogram(
    "meshauth_http_request_duration_seconds",
    "HTTP requests served, by route template, method and status class (2xx, 4xx, 5xx…), in seconds.",
    ["endpoint", "method", "status"],
)
_METHODS = {m: m for m in ("GET", "POST", "PUT", "PATCH", "DELETE", "HEAD", "OPTIONS")}
_CLASSES = {n: f"{n}xx" for n in range(1, 6)}
_UNTRACED = frozenset({"/metrics", "/healthz", "/readyz"})
_REQUEST_ID = trace.REQUEST_ID_HEADER.encode()


def _status_class(status: int) -> str:
    return _CLASSES.get(status // 100, "other")


class _Recording:
    """granian's RSGI HTTP protocol, timing the request when it is answered (before the answer goes out,
    so a scrape that follows the response sees it)."""

    __slots__ = ("_context", "_instrumented", "_method", "_path", "_protocol", "_start", "observed", "span")

    def __init__(
        self, protocol: Any, instrumented: Instrumented, path: str, method: str, context: trace.RequestContext
    ) -> None:
        self._protocol = protocol
        self._context = context
        self.span: Any = None
        self._instrumented = instrumented
        self._path = path
        self._method = method
        self._start = time.perf_counter()
        self.observed = False

    def observe(self, status: int) -> None:
        if not self.observed:
            self.observed = True
            self._instrumented.observe(self._start, self._path, self._method, status, self.span)

    def _headers(self, headers: Any) -> list[tuple[str, str]]:
        return [*headers, (trace.REQUEST_ID_HEADER, self._context.request_id)]

    def __call__(self) -> Any:
        return self._protocol()

    def __aiter__(self) -> Any:
        return self._protocol.__aiter__()

    def __getattr__(self, name: str) -> Any:
        return getattr(self._protocol, name)

    def response_empty(self, status: int, headers: Any) -> None:
        self.observe(status)
        self._protocol.response_empty(status, self._headers(headers))

    def response_str(self, status: int, headers: Any, body: str) -> None:
        self.observe(status)
        self._protocol.response_str(status, self._headers(headers), body)

    def response_bytes(self, status: int, headers: Any, body: bytes) -> None:
        self.observe(status)
        self._protocol.response_bytes(status, self._headers(headers), body)

    def response_file(self, status: int, headers: Any, file: str) -> None:
        self.observe(status)
        self._protocol.response_file(status, self._headers(headers), file)

    def response_stream(self, status: int, headers: Any) -> Any:
        self.observe(status)  # streamed: timed to the start of the response
        return self._protocol.response_stream(status, self._headers(headers))


class Instrumented:
    """Wraps an ASGI and/or RSGI app; ``prefixes`` are paths the app routes whole (``/ext_authz``)."""

    def __init__(self, app: Any, *, prefixes: tuple[str, ...] = ()) -> None:
        self.app = app
        self.labels = RouteLabels(templates_of(app), prefixes=prefixes)
        self.state = getattr(app, "state", None)

    # --- ASGI ----------------------------------------------------------------------------------

    async def __call__(self, scope: MutableMapping[str, Any], receive: Any, send: Any) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        start = time.perf_counter()
        status = 500
        observed = False
        context = trace.RequestContext(trace.asgi_values(scope["headers"]))
        span = self.start_span(context, scope["path"], scope["method"]) if trace.tracer is not None else None

        async def recording(message: MutableMapping[str, Any]) -> None:
            nonlocal status, observed
            if message["type"] == "http.response.start":
                status = message["status"]
                message["headers"] = [*message.get("headers", ()), (_REQUEST_ID, context.request_id.encode())]
            elif message["type"] == "http.response.body" and not message.get("more_body", False) and not observed:
                # Counted before the last body goes out: a scrape that follows the response sees it.
                observed = True
                self.observe(start, scope["path"], scope["method"], status, span)
            await send(message)

        token = trace.current.set(context)
        try:
            await self.app(scope, receive, recording)
        finally:
            trace.current.reset(token)
            if not observed:
                self.observe(start, scope["path"], scope["method"], status, span)

    def observe(self, start: float, path: str, method: str, status: int, span: Any = None) -> None:
        label = self.labels(path)
        REQUEST_SECONDS.observe(
            time.perf_counter() - start, label, _METHODS.get(method, "other"), _status_class(status)
        )
        if span is not None and trace.tracer is not None:
            trace.tracer.end(span, f"HTTP {status}" if status >= 500 else None, {"http.response.status_code": status})

    def start_span(self, context: trace.RequestContext, path: str, method: str) -> Any:
        """A SERVER span for the request (export on), named by method and route template."""
        label = self.labels(path)
        if label in _UNTRACED or trace.tracer is None:
            return None
        method = _METHODS.get(method, "other")
        return trace.tracer.server(context, f"{method} {label}", {"http.request.method": method, "http.route": label})

    # --- RSGI ----------------------------------------------------------------------------------

    def __rsgi_init__(self, loop: Any) -> None:
        init = getattr(self.app, "__rsgi_init__", None)
        if init is not None:
            init(loop)

    def __rsgi_del__(self, loop: Any) -> None:
        done = getattr(self.app, "__rsgi_del__", None)
        if done is not None:
            done(loop)

    async def __rsgi__(self, scope: Any, protocol: Any) -> None:
        if scope.proto != "http":
            await self.app.__rsgi__(scope, protocol)
            return
        context = trace.RequestContext(_rsgi_values(scope.headers))
        recording = _Recording(protocol, self, scope.path, scope.method, context)
        if trace.tracer is not None:
            recording.span = self.start_span(context, scope.path, scope.method)
        token = trace.current.set(context)
        try:
            await self.app.__rsgi__(scope, recording)
        finally:
            trace.current.reset(token)
            if not recording.observed:
                recording.observe(500)


def _rsgi_values(headers: Any) -> trace.HeaderValues:
    """granian's header map, every line of a name (its ``get`` gives only one; names are lower-case)."""

    def values(name: str) -> list[str]:
        if name not in headers:
            return []
        return [value for key, value in headers.items() if key == name]

    return values
