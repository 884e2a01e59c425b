"""The decision endpoints as a bare ASGI front, ahead of Starlette.

A decision is ~60 µs of engine time; Starlette's routing, request and response objects and
exception middleware cost about as much again (measured: 47 µs for a trivial route), so the two
decision paths are matched and answered here and everything else falls through to Starlette.
Behaviour is the same as any route's: bounded body reads (413), ``{"error", "error_description"}``
bodies for client errors, a generic 500 that leaks nothing.
"""

from __future__ import annotations

import logging
from collections.abc import Awaitable, Callable
from typing import Any

import msgspec
from starlette.types import ASGIApp, Receive, Scope, Send

from meshauth.http import ApiError

log = logging.getLogger(__name__)

Handler = Callable[[str, bytes], Awaitable[bytes]]

_encoder = msgspec.json.Encoder()
_JSON_HEADERS = [(b"content-type", b"application/json")]
_ERROR_HEADERS = [(b"content-type", b"application/json"), (b"cache-control", b"no-store")]
_SUFFIXES = {"/access/v1/evaluation": "evaluation", "/access/v1/evaluations": "evaluations"}
_STORE_PREFIX = "/stores/"


def route(path: str) -> tuple[str, str] | None:
    """``(kind, store)`` for a decision path, else None."""
    kind = _SUFFIXES.get(path)
    if kind is not None:
        return kind, "default"
    if path.startswith(_STORE_PREFIX):
        store, slash, rest = path[len(_STORE_PREFIX) :].partition("/")
        kind = _SUFFIXES.get(slash + rest)
        if kind is not None and store:
            return kind, store
    return None


class DecisionFront:
    def __init__(self, app: ASGIApp, *, evaluation: Handler, evaluations: Handler, max_body: int) -> None:
        self.app = app
        self.state: Any = getattr(app, "state", None)  # the wrapped app's state (tests, tooling)
        self._handlers = {"evaluation": evaluation, "evaluations": evaluations}
        self._max_body = max_body

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http" or scope["method"] != "POST":
            await self.app(scope, receive, send)
            return
        matched = route(scope["path"])
        if matched is None:
            await self.app(scope, receive, send)
            return
        kind, store = matched
        try:
            body = await self._read(scope, receive)
            payload = await self._handlers[kind](store, body)
            status, headers = 200, _JSON_HEADERS
        except ApiError as exc:
            error = {"error": exc.error, "error_description": exc.description, **exc.extra}
            payload, status, headers = _encoder.encode(error), exc.status, _ERROR_HEADERS
        except Exception:
            log.exception("decision request failed")
            error = {"error": "server_error", "error_description": "internal error; see the service log"}
            payload, status, headers = _encoder.encode(error), 500, _ERROR_HEADERS
        await send(
            {
                "type": "http.response.start",
                "status": status,
                "headers": [*headers, (b"content-length", str(len(payload)).encode())],
            }
        )
        await send({"type": "http.response.body", "body": payload})

    async def _read(self, scope: Scope, receive: Receive) -> bytes:
        limit = self._max_body
        for name, value in scope["headers"]:
            if name == b"content-length":
                if not value.isdigit():
                    raise ApiError(400, "invalid_request", "Content-Length is not a number")
                if int(value) > limit:
                    raise ApiError(413, "request_too_large", f"request body is over {limit} bytes")
        chunks: list[bytes] = []
        size = 0
        while True:
            message = await receive()
            if message["type"] == "http.disconnect":
                raise ApiError(400, "invalid_request", "client went away before sending the body")
            chunk = message.get("body", b"")
            size += len(chunk)
            if size > limit:
                raise ApiError(413, "request_too_large", f"request body is over {limit} bytes")
            chunks.append(chunk)
            if not message.get("more_body", False):
                return chunks[0] if len(chunks) == 1 else b"".join(chunks)
