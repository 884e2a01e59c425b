"""Envoy ext_authz, HTTP mode: any method on ``/ext_authz/<original path>``.

Served as raw ASGI in front of the router: this is the hot path, and it needs two headers, not a
framework. Allowed: 200 with the identity headers (list them in Istio's ``headersToUpstreamOnAllow``).
Refused: 401 with ``www-authenticate`` (also for two ``Authorization`` headers: the gate would
check one, and the upstream service might read the other); 503 when a session cannot be confirmed.
Several ``Cookie`` headers are read as one cookie string; two session cookies in it are refused like
two ``Authorization`` lines (see ``gate``).

Authz mode (``MESHAUTH_ROUTES_FILE``, ``authz``): an authenticated request is then matched on its method
and its path after ``/ext_authz`` as sent (``raw_path``, not the decoded ``path``: the route table
decides how spellings decode), and may be answered 403 or 503 with ``x-meshauth-reason``.
"""

from __future__ import annotations

import asyncio
from urllib.parse import quote

from starlette.types import Receive, Scope, Send

from meshauth.auth.authz import Authorizer
from meshauth.auth.gate import HEADERS_TO_REMOVE, Gate, Verdict, impostor, join_cookies
from meshauth.auth.metrics import count_gate_decision
from meshauth.routes import is_override, overrides_in_query

PREFIX = "/ext_authz"

_TEXT = [(b"content-type", b"text/plain; charset=utf-8")]
_BODIES = {200: b"", 401: b"unauthorized\n", 403: b"forbidden\n", 503: b"unavailable\n"}
_RAW_PREFIX = PREFIX.encode()


def is_ext_authz(path: str) -> bool:
    return path == PREFIX or path.startswith(PREFIX + "/")


def target(scope: Scope) -> str:
    """The checked request's path as sent, after ``/ext_authz`` (the query string takes no part).

    A ``raw_path`` that does not start with the prefix literally (``/ext%5Fauthz/…``) gives "" — no
    path, which the route table refuses."""
    raw = scope.get("raw_path")
    if raw is None:  # servers may omit it: re-encode the decoded path (its escapes stay escapes)
        raw = quote(scope["path"], safe="/!$&'()*+,;=:@~").encode()
    if raw[: len(_RAW_PREFIX)] != _RAW_PREFIX:
        return ""
    return raw[len(_RAW_PREFIX) :].decode("latin-1")


class ExtAuthzHttp:
    def __init__(self, gate: Gate, authorizer: Authorizer | None = None) -> None:
        self._gate = gate
        self._authz = authorizer

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if self._authz is not None:
            await self._authorize(self._authz, scope, send)
            return
        verdict, _, impostors = await self._authenticate(scope)
        await self._finish(verdict, scope, send, impostors)

    async def _authorize(self, authz: Authorizer, scope: Scope, send: Send) -> None:
        started = asyncio.get_running_loop().time()
        verdict, overridden, impostors = await self._authenticate(scope)
        query = scope.get("query_string")
        overridden = overridden or bool(query and overrides_in_query(query.decode("latin-1")))
        decided = await authz.decide(verdict, scope["method"], target(scope), started, overridden=overridden)
        await self._finish(decided, scope, send, impostors)

    async def _authenticate(self, scope: Scope) -> tuple[Verdict, bool, list[bytes] | None]:
        """The credential's verdict, whether the request carries an override header (authz mode
        refuses those: ``routes.OVERRIDE_HEADERS``) and the identity-header impostors it carries
        (``gate.impostor``; None when none) — all from one pass over the header lines."""
        authorizations: list[str] = []
        cookies: list[str] = []
        overridden = False
        impostors: list[bytes] | None = None
        for name, value in scope["headers"]:
            if name == b"authorization":
                authorizations.append(value.decode("latin-1"))
            elif name == b"cookie":
                cookies.append(value.decode("latin-1"))
            elif is_override(name):
                overridden = True
            elif impostor(name):
                impostors = [*(impostors or ()), name]
        # Warm bearer tokens are answered without awaiting anything but the response itself.
        verdict = self._gate.screen(authorizations)
        if verdict is None:
            verdict = await self._gate.check(authorizations[0] if authorizations else None, join_cookies(cookies))
        return verdict, overridden, impostors

    async def _finish(self, verdict: Verdict, scope: Scope, send: Send, impostors: list[bytes] | None = None) -> None:
        count_gate_decision("http", verdict.credential, verdict.status)
        headers = verdict.encoded()
        if impostors and verdict.allowed:
            headers.append((HEADERS_TO_REMOVE, b", ".join(dict.fromkeys(impostors))))
        try:
            await self._respond(send, verdict.status, headers)
        finally:
            # After the answer is handed to the server: the audit event is not the caller's wait.
            self._gate.audit.gate(
                verdict.status, verdict.headers, verdict.reason, "http", scope["path"], verdict.identity
            )

    @staticmethod
    async def _respond(send: Send, status: int, headers: list[tuple[bytes, bytes]]) -> None:
        body = _BODIES.get(status, b"")
        # An allow carries no body, so no content-type: Envoy reads only the status and headers.
        await send({"type": "http.response.start", "status": status, "headers": headers + _TEXT if body else headers})
        await send({"type": "http.response.body", "body": body})
