"""Serving the policy app under granian's RSGI interface (``Interfaces.RSGI``).

Decision requests are read and answered natively (``await protocol()``, ``response_bytes``);
every other request is handed to the Starlette app through a small ASGI shim, which buffers the
request body (bounded by the upload limit) and the response. Lifespan: granian calls
``__rsgi_init__(loop)`` before serving and ``__rsgi_del__(loop)`` after, with the loop not running,
so the Starlette lifespan is entered and left with ``run_until_complete``.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import MutableMapping
from typing import TYPE_CHECKING, Any

import msgspec

from meshauth.http import ApiError
from meshauth.policy.fast import JSON, check_length, route, too_large

if TYPE_CHECKING:
    from meshauth.policy.fast import DecisionFront

_LIFESPANS: dict[int, contextlib.AbstractAsyncContextManager[Any]] = {}
_JSON_HEADERS = [("content-type", JSON)]
_ERROR_HEADERS = [("content-type", JSON), ("cache-control", "no-store")]


def startup(front: DecisionFront, loop: asyncio.AbstractEventLoop) -> None:
    lifespan = front.app.router.lifespan_context(front.app)  # type: ignore[attr-defined]
    loop.run_until_complete(lifespan.__aenter__())
    _LIFESPANS[id(front)] = lifespan


def shutdown(front: DecisionFront, loop: asyncio.AbstractEventLoop) -> None:
    lifespan = _LIFESPANS.pop(id(front), None)
    if lifespan is not None:
        loop.run_until_complete(lifespan.__aexit__(None, None, None))


async def _body(scope: Any, protocol: Any, limit: int) -> bytes:
    declared = scope.headers.get("content-length")
    check_length(declared, limit)
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


async def handle(front: DecisionFront, scope: Any, protocol: Any) -> None:
    if scope.proto != "http":
        return  # no websockets here
    matched = route(scope.path) if scope.method == "POST" else None
    if matched is not None:
        try:
            body = await _body(scope, protocol, front.max_body)
        except ApiError as exc:
            payload = front_error(exc)
            protocol.response_bytes(exc.status, _ERROR_HEADERS, payload)
            return
        status, is_error, payload = await front.answer(*matched, body)
        protocol.response_bytes(status, _ERROR_HEADERS if is_error else _JSON_HEADERS, payload)
        return
    await _to_asgi(front, scope, protocol)


def front_error(exc: ApiError) -> bytes:
    encoded: bytes = msgspec.json.encode({"error": exc.error, "error_description": exc.description})
    return encoded


async def _to_asgi(front: DecisionFront, scope: Any, protocol: Any) -> None:
    """Run one request through the wrapped ASGI app, buffering both ways."""
    try:
        body = await _body(scope, protocol, front.max_upload)
    except ApiError as exc:
        protocol.response_bytes(exc.status, _ERROR_HEADERS, front_error(exc))
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
        "client": (client_host, int(client_port or 0)),
        "server": (server_host, int(server_port or 0)),
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

    await front.app(asgi_scope, receive, send)
    protocol.response_bytes(status, [h for h in headers if h[0].lower() != "content-length"], b"".join(parts))
