"""Serving Starlette apps under granian's RSGI interface, beside a native fast path.

An app object that speaks RSGI answers its hot paths natively (``protocol.response_bytes`` and
friends, headers read lazily) and hands every other request to its ASGI app through ``forward``,
which buffers the request body (bounded) and the response. Lifespan: granian calls
``__rsgi_init__(loop)`` before serving and ``__rsgi_del__(loop)`` after, with the loop not running,
so the ASGI lifespan is entered and left with ``run_until_complete``.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import MutableMapping
from typing import Any

import msgspec
from granian.rsgi import ProtocolClosed  # type: ignore[attr-defined]  # re-exported there, not in __all__
from starlette.applications import Starlette

from meshauth.deadlines import BodyDeadline
from meshauth.http import ApiError, body_read_timeout, body_timed_out, check_length, client_went_away, too_large

ERROR_HEADERS = [("content-type", "application/json"), ("cache-control", "no-store")]


class Lifespan:
    """The ASGI app's lifespan, entered and left from granian's RSGI init/del hooks."""

    def __init__(self, app: Starlette) -> None:
        self._app = app
        self._cm: contextlib.AbstractAsyncContextManager[Any] | None = None

    def start(self, loop: asyncio.AbstractEventLoop) -> None:
        self._cm = self._app.router.lifespan_context(self._app)
        loop.run_until_complete(self._cm.__aenter__())

    def stop(self, loop: asyncio.AbstractEventLoop) -> None:
        if self._cm is not None:
            loop.run_until_complete(self._cm.__aexit__(None, None, None))
            self._cm = None


def error_bytes(exc: ApiError) -> bytes:
    encoded: bytes = msgspec.json.encode({"error": exc.error, "error_description": exc.description})
    return encoded


async def read_body(scope: Any, protocol: Any, limit: int) -> bytes:
    """The request body, or ApiError 400/413 once it is, or claims to be, over ``limit`` bytes; 408
    after the body timeout; 400 (counted, see ``meshauth.http``) when the client leaves mid-body."""
    declared = scope.headers.get("content-length")
    check_length(declared, limit)
    try:
        with BodyDeadline(body_read_timeout()):
            if declared is not None:
                body: bytes = await protocol()
                if len(body) > limit:
                    raise too_large(limit)
                return body
            chunks: list[bytes] = []
            size = 0
            async for chunk in protocol:
                size += len(chunk)
                if size > limit:
                    raise too_large(limit)
                chunks.append(chunk)
            return b"".join(chunks)
    except ProtocolClosed:  # granian: the client closed the connection before the body was complete
        raise client_went_away() from None
    except TimeoutError:
        raise body_timed_out() from None


def respond_error(protocol: Any, exc: ApiError) -> None:
    protocol.response_bytes(exc.status, [*ERROR_HEADERS, *exc.headers.items()], error_bytes(exc))


async def forward(app: Any, scope: Any, protocol: Any, *, max_body: int) -> None:
    """Run one RSGI request through an ASGI app, buffering both ways."""
    if scope.proto != "http":
        return  # no websockets in meshauth
    try:
        body = await read_body(scope, protocol, max_body)
    except ApiError as exc:
        respond_error(protocol, exc)
        return
    client_host, _, client_port = scope.client.rpartition(":")
    server_host, _, server_port = scope.server.rpartition(":")
    asgi_scope: dict[str, Any] = {
        "type": "http",
        "asgi": {"version": "3.0", "spec_version": "2.3"},
        "http_version": scope.http_version,
        "method": scope.method,
        "scheme": scope.scheme,
        "path": scope.path,
        "raw_path": scope.path.encode(),
        "query_string": scope.query_string.encode("latin-1"),
        "root_path": "",
        "headers": [(k.lower().encode("latin-1"), v.encode("latin-1")) for k, v in scope.headers.items()],
        "client": (client_host.strip("[]"), int(client_port or 0)),
        "server": (server_host.strip("[]"), int(server_port or 0)),
        "state": {},
    }
    sent = False

    async def receive() -> dict[str, Any]:
        nonlocal sent
        if not sent:
            sent = True
            return {"type": "http.request", "body": body, "more_body": False}
        await asyncio.Event().wait()  # nothing more will come; the app returns before this matters
        return {"type": "http.disconnect"}

    status = 500
    headers: list[tuple[str, str]] = []
    parts: list[bytes] = []

    async def send(message: MutableMapping[str, Any]) -> None:
        nonlocal status, headers
        if message["type"] == "http.response.start":
            status = message["status"]
            headers = [(k.decode("latin-1"), v.decode("latin-1")) for k, v in message.get("headers", [])]
        elif message["type"] == "http.response.body":
            parts.append(message.get("body", b""))

    await app(asgi_scope, receive, send)
    protocol.response_bytes(status, [h for h in headers if h[0].lower() != "content-length"], b"".join(parts))
