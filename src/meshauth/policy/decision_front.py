"""The decision endpoints answered ahead of Starlette, under ASGI or granian's RSGI.

A decision is ~50 µs of engine time; Starlette's routing, request and response objects and
exception middleware cost about as much again (measured: 47 µs for a trivial route), and under
granian, reading a request body through ASGI's ``receive`` costs more still (measured on the
trivial app: ~20,000 req/s without reading the body, ~7,500 with; ~14,000 reading it through RSGI).
So the two decision paths are matched and answered here, and everything else goes to Starlette.
Behaviour is the same as any route's: bounded body reads (413), ``{"error", "error_description"}``
bodies for client errors, a generic 500 that leaks nothing.

The same object serves ASGI (``__call__``) and granian's RSGI (``__rsgi__``, what ``meshauth serve
policy`` runs): under RSGI, decision requests are read and answered natively (``await protocol()``,
``response_bytes``) and every other request goes to the Starlette app through ``meshauth.rsgi_bridge.forward``.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Awaitable, Callable
from typing import Any

import msgspec
from starlette.types import ASGIApp, Receive, Scope, Send

from meshauth.deadlines import BodyDeadline
from meshauth.http import (
    INTERNAL_ERROR,
    ApiError,
    body_read_timeout,
    body_timed_out,
    check_length,
    client_went_away,
    error_body,
    too_large,
)
from meshauth.policy.coalescer import Activity
from meshauth.policy.guard import DecisionGuard
from meshauth.policy.metrics import DECISION_SECONDS
from meshauth.policy.stores import DEFAULT_STORE
from meshauth.rsgi_bridge import ERROR_HEADERS, Lifespan, forward, read_body, respond_error

log = logging.getLogger(__name__)

Handler = Callable[[str, bytes], Awaitable[bytes]]

_encoder = msgspec.json.Encoder()
JSON = "application/json"
_JSON_HEADERS = [("content-type", JSON)]
_SUFFIXES = {"/access/v1/evaluation": "evaluation", "/access/v1/evaluations": "evaluations"}
_STORE_PREFIX = "/stores/"


def route(path: str) -> tuple[str, str] | None:
    """``(kind, store)`` for a decision path, else None."""
    kind = _SUFFIXES.get(path)
    if kind is not None:
        return kind, DEFAULT_STORE
    if path.startswith(_STORE_PREFIX):
        store, slash, rest = path[len(_STORE_PREFIX) :].partition("/")
        kind = _SUFFIXES.get(slash + rest)
        if kind is not None and store:
            return kind, store
    return None


class DecisionFront:
    def __init__(
        self,
        app: ASGIApp,
        *,
        evaluation: Handler,
        evaluations: Handler,
        max_body: int,
        max_upload: int = 0,
        is_admin: Callable[[str | None], bool] | None = None,
        guard: DecisionGuard | None = None,
        activity: Activity | None = None,
    ) -> None:
        self.app = app
        # Single evaluations in progress, from before their body is read to their answer: tells the
        # coalescer whether a request is alone (``coalescer.Activity``). None: not counted.
        self.activity = activity
        # Who may ask (None: anyone, the default); checked on headers alone, before the body is read.
        self.guard = guard
        # The largest body any other route accepts (admin uploads): the RSGI shim buffers up to it,
        # but only for admin paths carrying the admin token (see ``body_limit``).
        self.max_upload = max(max_upload, max_body)
        self._is_admin = is_admin
        self.state: Any = getattr(app, "state", None)  # the wrapped app's state (tests, tooling)
        self._handlers = {"evaluation": evaluation, "evaluations": evaluations}
        self.max_body = max_body

    def body_limit(self, path: str, authorization: str | None) -> int:
        """How much of a non-decision request to buffer before the app sees it: the upload limit
        for ``/admin/`` with the admin token (checked in constant time), else the request limit —
        so nobody unauthenticated makes the server hold 64 MiB per request."""
        if path.startswith("/admin/") and self._is_admin is not None and self._is_admin(authorization):
            return self.max_upload
        return self.max_body

    async def answer(self, kind: str, store: str, body: bytes) -> tuple[int, bool, bytes]:
        """``(status, is_error, JSON payload)`` for one decision request. Raises only an ApiError that
        carries headers (``retry-after``), which the callers' error path sends with them."""
        start = time.perf_counter()
        try:
            return 200, False, await self._handlers[kind](store, body)
        except ApiError as exc:
            if exc.headers:
                raise
            return exc.status, True, exc.body()
        except Exception:
            log.exception("decision request failed")
            return 500, True, error_body(*INTERNAL_ERROR)
        finally:
            DECISION_SECONDS.observe(time.perf_counter() - start, kind)

    # --- ASGI ----------------------------------------------------------------------------------

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http" or scope["method"] != "POST":
            await self.app(scope, receive, send)
            return
        matched = route(scope["path"])
        if matched is None:
            await self.app(scope, receive, send)
            return
        refused = self.guard.check_asgi(scope["headers"]) if self.guard is not None else None
        if refused is not None:
            await _send_error(send, refused)
            return
        counted = self.activity if matched[0] == "evaluation" else None
        if counted is not None:
            counted.active += 1
        try:
            body = await self._read(scope, receive)
            status, is_error, payload = await self.answer(*matched, body)
        except ApiError as exc:
            await _send_error(send, exc)
            return
        finally:
            if counted is not None:
                counted.active -= 1
        headers = [(b"content-type", JSON.encode()), (b"content-length", str(len(payload)).encode())]
        if is_error:
            headers.append((b"cache-control", b"no-store"))
        await send({"type": "http.response.start", "status": status, "headers": headers})
        await send({"type": "http.response.body", "body": payload})

    async def _read(self, scope: Scope, receive: Receive) -> bytes:
        """The body, bounded like every reader's (``meshauth.http``): 413, 408, counted 400 on disconnect.
        Not ``http.collect_bounded``: this is the decision hot path, and a body that arrives in one
        message (nearly all of them) is returned without an async iterator or a join."""
        limit = self.max_body
        for name, value in scope["headers"]:
            if name == b"content-length":
                check_length(value, limit)
        chunks: list[bytes] = []
        size = 0
        try:
            with BodyDeadline(body_read_timeout()):
                while True:
                    message = await receive()
                    if message["type"] == "http.disconnect":
                        raise client_went_away()
                    chunk = message.get("body", b"")
                    size += len(chunk)
                    if size > limit:
                        raise too_large(limit)
                    chunks.append(chunk)
                    if not message.get("more_body", False):
                        return chunks[0] if len(chunks) == 1 else b"".join(chunks)
        except TimeoutError:
            raise body_timed_out() from None

    # --- RSGI (granian) ------------------------------------------------------------------------

    def __rsgi_init__(self, loop: Any) -> None:
        self._lifespan = Lifespan(self.app)  # type: ignore[arg-type]
        self._lifespan.start(loop)

    def __rsgi_del__(self, loop: Any) -> None:
        self._lifespan.stop(loop)

    async def __rsgi__(self, scope: Any, protocol: Any) -> None:
        if scope.proto != "http":
            return  # no websockets here
        matched = route(scope.path) if scope.method == "POST" else None
        if matched is None:
            limit = self.body_limit(scope.path, scope.headers.get("authorization"))
            await forward(self.app, scope, protocol, max_body=limit)
            return
        if self.guard is not None:
            refused = self.guard.check_rsgi(scope.headers)
            if refused is not None:
                respond_error(protocol, refused)
                return
        counted = self.activity if matched[0] == "evaluation" else None
        if counted is not None:
            counted.active += 1
        try:
            body = await read_body(scope, protocol, self.max_body)
            status, is_error, payload = await self.answer(*matched, body)
        except ApiError as exc:
            respond_error(protocol, exc)
            return
        finally:
            if counted is not None:
                counted.active -= 1
        protocol.response_bytes(status, ERROR_HEADERS if is_error else _JSON_HEADERS, payload)


async def _send_error(send: Send, exc: ApiError) -> None:
    """An ApiError with its own headers (``www-authenticate``), as an ASGI response."""
    payload = exc.body()
    headers = [(b"content-type", JSON.encode()), (b"content-length", str(len(payload)).encode())]
    headers.append((b"cache-control", b"no-store"))
    headers += [(k.encode("latin-1"), v.encode("latin-1")) for k, v in exc.headers.items()]
    await send({"type": "http.response.start", "status": exc.status, "headers": headers})
    await send({"type": "http.response.body", "body": payload})
