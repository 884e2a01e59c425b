"""Serving a Starlette app under granian's RSGI interface, beside a native fast path.

Only the policy service is served over RSGI (the auth service is ASGI only: ``cli/serve.py``). Its
app object answers the decision paths natively and hands every other request to its ASGI app
through ``forward``, which buffers the request body (bounded) and the response. Lifespan: granian
calls ``__rsgi_init__(loop)`` before serving and ``__rsgi_del__(loop)`` after, with the loop not
running, so the ASGI lifespan is entered and left with ``run_until_complete``.
"""

from __future__ import annotations

import asyncio
import contextlib
import urllib.parse
from collections.abc import AsyncIterator, MutableMapping
from typing import Any

from granian.rsgi import HTTPProtocol, ProtocolClosed, Scope
from starlette.applications import Starlette
from starlette.types import ASGIApp

from meshauth.http import ApiError, check_length, collect_bounded, reading_body, too_large

ERROR_HEADERS = [("content-type", "application/json"), ("cache-control", "no-store")]
# Characters a path keeps unescaped in ``raw_path`` (RFC 3986 pchar and "/").
_PATH_SAFE = "/:@!$&'()*+,;=-._~"


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


async def _chunks(protocol: HTTPProtocol) -> AsyncIterator[bytes]:
    async for chunk in protocol:
        yield chunk


async def read_body(scope: Scope, protocol: HTTPProtocol, limit: int) -> bytes:
    """The request body, or ApiError 400/413 once it is, or claims to be, over ``limit`` bytes; 408
    after the body timeout; 400 (counted, see ``meshauth.http``) when the client leaves mid-body."""
    declared = scope.headers.get("content-length")
    check_length(declared, limit)
    # granian raises ProtocolClosed when the client closed the connection before the body was complete.
    with reading_body(ProtocolClosed):
        if declared is not None:
            # Declared and within the limit: one native read (granian checks the length it reads).
            body = await protocol()
            if len(body) > limit:
                raise too_large(limit)
            return body
        return await collect_bounded(_chunks(protocol), limit)


def respond_error(protocol: HTTPProtocol, exc: ApiError) -> None:
    protocol.response_bytes(exc.status, [*ERROR_HEADERS, *exc.headers.items()], exc.body())


def raw_path(path: str) -> bytes:
    """ASGI's ``raw_path`` for granian's RSGI ``path``, which granian has already percent-decoded:
    re-encoded (UTF-8, percent-escaped), so it is the path as sent for every path that escaped only
    what it had to. (An escaped ``/`` — ``%2F`` — is decoded by granian and cannot be told apart.)"""
    return urllib.parse.quote(path, safe=_PATH_SAFE).encode("ascii")


def asgi_scope(scope: Scope) -> dict[str, Any]:
    """The ASGI HTTP scope for an RSGI one."""
    client_host, _, client_port = scope.client.rpartition(":")
    server_host, _, server_port = scope.server.rpartition(":")
    return {
        "type": "http",
        "asgi": {"version": "3.0", "spec_version": "2.3"},
        "http_version": scope.http_version,
        "method": scope.method,
        "scheme": scope.scheme,
        "path": scope.path,
        "raw_path": raw_path(scope.path),
        "query_string": scope.query_string.encode("latin-1"),
        "root_path": "",
        "headers": [(k.lower().encode("latin-1"), v.encode("latin-1")) for k, v in scope.headers.items()],
        "client": (client_host.strip("[]"), int(client_port or 0)),
        "server": (server_host.strip("[]"), int(server_port or 0)),
        "state": {},
    }


async def forward(app: ASGIApp, scope: Scope, protocol: HTTPProtocol, *, max_body: int) -> None:
    """Run one RSGI request through an ASGI app, buffering both ways."""
    if scope.proto != "http":
        return  # no websockets in meshauth
    try:
        body = await read_body(scope, protocol, max_body)
    except ApiError as exc:
        respond_error(protocol, exc)
        return
    sent = False

    async def receive() -> dict[str, Any]:
        nonlocal sent
        if not sent:
            sent = True
            return {"type": "http.request", "body": body, "more_body": False}
        # The body is all in; an app that asks again is waiting for the client to leave (ASGI: a
        # streaming response listens for it), and granian tells us when that happens.
        await protocol.client_disconnect()
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

    await app(asgi_scope(scope), receive, send)
    protocol.response_bytes(status, [h for h in headers if h[0].lower() != "content-length"], b"".join(parts))
